"""The payloads history events carry, on both stores.

The walk encodes each state's output once and hands the same text to the
next state's Entered event; these tests pin what a reader of the history
relies on: every `...StateEntered` input is exactly the previous state's
`...StateExited` output (unicode, floats and nesting included), and both
decode to the values the states passed along.
"""

from __future__ import annotations

import json
from typing import Any

from activities import Registry
from engine import Engine

PAYLOAD = {"name": "Zoë ✓", "ratio": 0.1, "big": 12345678901234567, "nested": [{"a": [1, 2]}]}

MACHINE = {
    "StartAt": "Shape",
    "States": {
        "Shape": {"Type": "Pass", "Parameters": {"p.$": "$.p", "n": 1}, "Next": "Route"},
        "Route": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "Work"}],
            "Default": "Done",
        },
        "Work": {"Type": "Task", "Resource": "echo", "ResultPath": "$.echoed", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 0, "Next": "Done"},
        "Done": {"Type": "Pass", "End": True},
    },
}


def echo_registry() -> Registry:
    registry = Registry()

    def echo(value: dict[str, Any]) -> dict[str, Any]:
        return {"seen": value["p"]["name"]}

    registry.register("echo", echo)
    return registry


def test_each_entered_input_is_the_previous_exited_output(db_url: str) -> None:
    with Engine(db_url, registry=echo_registry(), worker=False) as engine:
        record = engine.run_sync(MACHINE, {"p": PAYLOAD})
        events = engine.history_sync(record)
    assert record.status == "SUCCEEDED", record.cause
    states = [e for e in events if e.type.endswith(("StateEntered", "StateExited"))]
    names = [(e.type, e.details["name"]) for e in states]
    assert names == [
        (kind, name)
        for name, state in (
            ("Shape", "Pass"),
            ("Route", "Choice"),
            ("Work", "Task"),
            ("Pause", "Wait"),
            ("Done", "Pass"),
        )
        for kind in (f"{state}StateEntered", f"{state}StateExited")
    ]
    assert json.loads(states[0].details["input"]) == {"p": PAYLOAD}
    for exited, entered in zip(states[1::2], states[2::2], strict=False):
        assert entered.details["input"] == exited.details["output"]
    expected = {"p": PAYLOAD, "n": 1, "echoed": {"seen": "Zoë ✓"}}
    assert json.loads(states[-1].details["output"]) == expected
    assert json.loads(record.output or "") == expected


SHAPED = {
    "StartAt": "Raw",
    "States": {
        "Raw": {"Type": "Task", "Resource": "wrap", "Next": "Selected"},
        "Selected": {
            "Type": "Task",
            "Resource": "wrap",
            "ResultSelector": {"picked.$": "$.wrapped"},
            "Next": "Placed",
        },
        "Placed": {
            "Type": "Task",
            "Resource": "wrap",
            "ResultPath": "$.placed",
            "Next": "Narrowed",
        },
        "Narrowed": {"Type": "Task", "Resource": "wrap", "OutputPath": "$.wrapped", "End": True},
    },
}


def test_a_task_exit_carries_its_output_whether_or_not_the_result_was_reshaped(
    db_url: str,
) -> None:
    """A Task's exit reuses its result's text only when the result is its output as is."""
    registry = Registry()
    registry.register("wrap", lambda value: {"wrapped": value})
    with Engine(db_url, registry=registry, worker=False) as engine:
        record = engine.run_sync(SHAPED, {"v": 1})
        events = engine.history_sync(record)
    assert record.status == "SUCCEEDED", record.cause
    succeeded = [json.loads(e.details["output"]) for e in events if e.type == "TaskSucceeded"]
    exited = [json.loads(e.details["output"]) for e in events if e.type == "TaskStateExited"]
    raw = {"wrapped": {"v": 1}}
    selected = {"picked": raw}
    placed = {**selected, "placed": {"wrapped": selected}}
    assert succeeded == [raw, {"wrapped": raw}, {"wrapped": selected}, {"wrapped": placed}]
    assert exited == [raw, selected, placed, placed]
    assert json.loads(record.output or "") == placed
