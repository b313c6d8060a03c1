"""Telemetry tests; the shared helpers run real executions on a real Engine (SQLite)."""

from __future__ import annotations

from typing import Any

from activities.registry import ActivityError, Registry
from engine import Engine, Event, ExecutionRecord

SECRET = "hunter2-do-not-trace"

RICH = {
    "StartAt": "Prep",
    "States": {
        "Prep": {"Type": "Pass", "Result": [1, 2], "ResultPath": "$.items", "Next": "Fan"},
        "Fan": {
            "Type": "Parallel",
            "Next": "Each",
            "ResultPath": "$.par",
            "Branches": [
                {
                    "StartAt": "A1",
                    "States": {
                        "A1": {
                            "Type": "Task",
                            "Resource": "flaky",
                            "Retry": [
                                {
                                    "ErrorEquals": ["Custom.Flaky"],
                                    "IntervalSeconds": 1,
                                    "MaxAttempts": 2,
                                    "BackoffRate": 1,
                                }
                            ],
                            "Next": "A2",
                        },
                        "A2": {"Type": "Pass", "End": True},
                    },
                },
                {
                    "StartAt": "B1",
                    "States": {
                        "B1": {
                            "Type": "Task",
                            "Resource": "boom",
                            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "B2"}],
                            "End": True,
                        },
                        "B2": {"Type": "Pass", "End": True},
                    },
                },
            ],
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ResultPath": "$.mapped",
            "ItemProcessor": {
                "StartAt": "E",
                "States": {"E": {"Type": "Task", "Resource": "echo", "End": True}},
            },
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}

FAILING = {
    "StartAt": "Work",
    "States": {
        "Work": {"Type": "Task", "Resource": "boom", "Next": "Never"},
        "Never": {"Type": "Pass", "End": True},
    },
}

FAIL_STATE = {
    "StartAt": "Check",
    "States": {
        "Check": {"Type": "Pass", "Next": "Stop"},
        "Stop": {"Type": "Fail", "Error": "Custom.Rejected", "Cause": "rejected"},
    },
}


def registry() -> Registry:
    calls = {"flaky": 0}
    reg = Registry()

    def flaky(value: Any) -> Any:
        calls["flaky"] += 1
        if calls["flaky"] < 2:
            raise ActivityError("Custom.Flaky", "try again")
        return {"ok": True}

    def boom(value: Any) -> Any:
        raise ActivityError("Custom.Boom", "nope: bad input")

    reg.register("flaky", flaky)
    reg.register("boom", boom)
    reg.register("echo", lambda value: value)
    return reg


def run(
    url: str, definition: dict[str, Any], data: Any = None
) -> tuple[ExecutionRecord, list[Event]]:
    """Run `definition` to its end on a real engine; its final record and full history."""
    with Engine(url, registry=registry()) as engine:
        record = engine.run_sync(definition, {"password": SECRET, "a": 1} if data is None else data)
        return record, engine.history_sync(record.execution_id)
