"""Semantics audit, the context object: which fields `$$.State` has in which state.

AWS recorded `$$.State` as only `Name` and `EnteredTime` in a Pass state
(LocalStack's `base/test_base.py::test_query_context_object_values`, and the
express, outputdecl, assign and context_object snapshots), while a Task
state's `$$.State` also carries `RetryCount`
(`scenarios/test_base_scenarios.py` Lambda retry snapshots). Runs end to end
through `Engine` on a real SQLite file.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from trio.testing import MockClock

from activities import Registry
from engine import Engine, LoopClock

STATE = {"s.$": "$$.State"}


def run_output(url: str, definition: dict[str, Any], input: Any) -> Any:
    registry = Registry()
    registry.register("echo", lambda value: value)

    async def main() -> Any:
        async with Engine(
            url, registry=registry, clock=LoopClock(), worker=False, inline_store=True
        ) as engine:
            record = await engine.run(definition, input)
            assert record.status == "SUCCEEDED", (record.error, record.cause)
            return json.loads(record.output or "null")

    return anyio.run(
        main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )


def test_state_fields_by_state_type(sqlite_url: str) -> None:
    def inner(name: str) -> dict[str, Any]:
        return {"StartAt": name, "States": {name: {"Type": "Pass", "End": True}}}

    definition = {
        "StartAt": "P",
        "States": {
            "P": {"Type": "Pass", "Parameters": STATE, "ResultPath": "$.pass", "Next": "C"},
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x[0]", "NumericEquals": 1, "Next": "M"}],
                "Default": "M",
            },
            "M": {
                "Type": "Map",
                "ItemsPath": "$.x",
                "ItemSelector": STATE,
                "ItemProcessor": inner("I"),
                "ResultPath": "$.map",
                "Next": "Par",
            },
            "Par": {
                "Type": "Parallel",
                "Parameters": STATE,
                "Branches": [inner("B")],
                "ResultPath": "$.parallel",
                "Next": "T",
            },
            "T": {
                "Type": "Task",
                "Resource": "echo",
                "Parameters": STATE,
                "ResultPath": "$.task",
                "End": True,
            },
        },
    }
    output = run_output(sqlite_url, definition, {"x": [1]})
    assert set(output["pass"]["s"]) == {"Name", "EnteredTime"}
    assert output["pass"]["s"]["Name"] == "P"
    for field, name in (("map", "M"), ("parallel", "Par"), ("task", "T")):
        state = output[field][0]["s"] if field != "task" else output[field]["s"]
        assert set(state) == {"Name", "EnteredTime", "RetryCount"}, field
        assert (state["Name"], state["RetryCount"]) == (name, 0)


def test_jsonata_pass_state_context_has_no_retry_count(sqlite_url: str) -> None:
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Output": "{% $states.context.State %}", "End": True}},
    }
    assert set(run_output(sqlite_url, definition, {})) == {"Name", "EnteredTime"}
