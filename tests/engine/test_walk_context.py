"""JSONPath reads `$$` wherever a definition writes it, however its JSON text spells it.

A machine whose definition never mentions ``$$`` gets no context object
built for its JSONPath evaluation (`Frame.path_context`); every other one
gets the real one: in Parameters, a Choice rule, an InputPath, ItemSelector
— also when the stored JSON text escapes the dollar signs (``\\u0024``).
"""

from __future__ import annotations

import json
from typing import Any

from activities import Registry
from engine import Engine
from engine.walk import mentions_context

READS = {
    "StartAt": "Check",
    "States": {
        "Check": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$$.Execution.Input.go", "BooleanEquals": True, "Next": "Show"}
            ],
            "Default": "Show",
        },
        "Show": {
            "Type": "Pass",
            "Parameters": {
                "name.$": "$$.Execution.Name",
                "state.$": "$$.State.Name",
                "upper.$": "States.Format('{}!', $$.StateMachine.Name)",
            },
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$$.Execution.Input.items",
            "ItemSelector": {"at.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value"},
            "ItemProcessor": {
                "StartAt": "Keep",
                "States": {"Keep": {"Type": "Pass", "End": True}},
            },
            "ResultPath": "$.items",
            "End": True,
        },
    },
}
PLAIN = {
    "StartAt": "Add",
    "States": {
        "Add": {
            "Type": "Pass",
            "Parameters": {"v.$": "States.MathAdd($.v, 1)"},
            "OutputPath": "$",
            "End": True,
        }
    },
}


def test_paths_read_the_context_object(sqlite_url: str) -> None:
    with Engine(sqlite_url) as engine:
        engine.create_state_machine_sync("Reads", READS)
        record = engine.start_sync("Reads", {"go": True, "items": ["a", "b"]}, name="run-1")
        final = engine.wait_sync(record, timeout=30)
        assert final.status == "SUCCEEDED", final.cause
        assert json.loads(final.output or "null") == {
            "name": "run-1",
            "state": "Show",
            "upper": "Reads!",
            "items": [{"at": 0, "v": "a"}, {"at": 1, "v": "b"}],
        }


def test_escaped_dollars_in_the_stored_text_still_read_the_context(sqlite_url: str) -> None:
    text = json.dumps(READS).replace("$$", "\\u0024\\u0024")
    assert "$$" not in text
    with Engine(sqlite_url) as engine:
        engine.store.put_state_machine("Escaped", text)
        record = engine.start_sync("Escaped", {"go": False, "items": [1]}, name="run-2")
        final = engine.wait_sync(record, timeout=30)
        assert final.status == "SUCCEEDED", final.cause
        output = json.loads(final.output or "null")
        assert output["name"] == "run-2" and output["items"] == [{"at": 0, "v": 1}]


def test_a_machine_without_context_paths_runs_as_before(sqlite_url: str) -> None:
    with Engine(sqlite_url) as engine:
        engine.create_state_machine_sync("Plain", PLAIN)
        final = engine.wait_sync(engine.start_sync("Plain", {"v": 41}), timeout=30)
        assert final.status == "SUCCEEDED"
        assert json.loads(final.output or "null") == {"v": 42}


def test_mentions_context_is_conservative() -> None:
    assert mentions_context(json.dumps(READS))
    assert mentions_context(json.dumps(READS).replace("$$", "\\u0024\\u0024"))
    assert mentions_context('{"Comment": "costs $$$"}')
    assert not mentions_context(json.dumps(PLAIN))


WHOLE_CONTEXT = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemSelector": {"ctx.$": "$$", "at.$": "$$.Map.Item.Index"},
            "ItemProcessor": {
                "StartAt": "Keep",
                "States": {"Keep": {"Type": "Pass", "End": True}},
            },
            "End": True,
        }
    },
}


def test_each_item_selector_gets_the_whole_context_with_its_own_item(sqlite_url: str) -> None:
    # The Map's `$$` is built once and each item's Map.Item put on a copy of it
    # (`engine/states/map.py`): every item must still see its own item, with
    # the context's keys in AWS's order.
    with Engine(sqlite_url) as engine:
        engine.create_state_machine_sync("Whole", WHOLE_CONTEXT)
        record = engine.start_sync("Whole", ["a", "b", "c"], name="run-3")
        final = engine.wait_sync(record, timeout=30)
        assert final.status == "SUCCEEDED", final.cause
        outputs = json.loads(final.output or "null")
    assert [output["at"] for output in outputs] == [0, 1, 2]
    for index, (output, value) in enumerate(zip(outputs, "abc", strict=True)):
        context = output["ctx"]
        assert list(context) == ["Execution", "StateMachine", "State", "Map"]
        assert context["Map"] == {"Item": {"Index": index, "Value": value}}
        assert context["Execution"]["Name"] == "run-3"
        assert context["Execution"]["Input"] == ["a", "b", "c"]
        assert context["State"]["Name"] == "Each"
        assert context["State"]["RetryCount"] == 0
        assert {k: v for k, v in context.items() if k != "Map"} == {
            k: v for k, v in outputs[0]["ctx"].items() if k != "Map"
        }


SCRIBBLE = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "MaxConcurrency": 1,
            "ItemSelector": {"ctx.$": "$$"},
            "ItemProcessor": {
                "StartAt": "Work",
                "States": {"Work": {"Type": "Task", "Resource": "scribble", "End": True}},
            },
            "End": True,
        }
    },
}


def test_a_handler_changing_its_items_context_does_not_reach_the_next_items(
    sqlite_url: str,
) -> None:
    """`$$` is built once per Map, but each item gets its own Execution, StateMachine and State."""
    registry = Registry()

    def scribble(value: dict[str, Any]) -> dict[str, Any]:
        context = value["ctx"]
        seen = {
            "state": context["State"]["Name"],
            "start": context["Execution"]["StartTime"],
            "machine": context["StateMachine"]["Name"],
        }
        context["State"]["Name"] = "Scribbled"
        context["Execution"]["StartTime"] = "scribbled"
        context["StateMachine"]["Name"] = "scribbled"
        return seen

    registry.register("scribble", scribble)
    with Engine(sqlite_url, registry=registry) as engine:
        engine.create_state_machine_sync("Scribble", SCRIBBLE)
        record = engine.start_sync("Scribble", ["a", "b", "c"], name="run-1")
        final = engine.wait_sync(record, timeout=30)
        assert final.status == "SUCCEEDED", final.cause
        outputs = json.loads(final.output or "null")
    assert [o["state"] for o in outputs] == ["Each"] * 3
    assert [o["machine"] for o in outputs] == ["Scribble"] * 3
    assert "scribbled" not in {o["start"] for o in outputs}
