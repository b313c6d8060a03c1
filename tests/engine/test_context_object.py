"""The context object `$$` as each state sees it, on both stores.

The walk formats `$$`'s timestamps once per execution and once per state
visit instead of on every evaluation; these tests pin what a definition
reads: each state its own EnteredTime (the time of its ...StateEntered
event, to the millisecond), the same EnteredTime and a growing RetryCount
across a Task's retries, the execution's StartTime everywhere, and a fresh
object per evaluation (a handler that mutates its input cannot change what
later states read).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from trio.testing import MockClock

from activities import ActivityError, Registry
from engine import Engine, LoopClock
from statemachine.timestamps import format_timestamp

MACHINE = {
    "StartAt": "First",
    "States": {
        "First": {
            "Type": "Pass",
            "Parameters": {
                "entered.$": "$$.State.EnteredTime",
                "start.$": "$$.Execution.StartTime",
                "name.$": "$$.State.Name",
            },
            "ResultPath": "$.first",
            "Next": "Pause",
        },
        "Pause": {"Type": "Wait", "Seconds": 2, "Next": "Work"},
        "Work": {
            "Type": "Task",
            "Resource": "flaky",
            "Parameters": {
                "entered.$": "$$.State.EnteredTime",
                "retry.$": "$$.State.RetryCount",
                "context.$": "$$",
            },
            "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 3, "MaxAttempts": 1}],
            "ResultPath": "$.work",
            "Next": "Check",
        },
        "Check": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$$.State.Name", "StringEquals": "Check", "Next": "Last"},
            ],
            "Default": "Wrong",
        },
        "Last": {
            "Type": "Pass",
            "Parameters": {"entered.$": "$$.State.EnteredTime", "state.$": "$$.State"},
            "ResultPath": "$.last",
            "End": True,
        },
        "Wrong": {"Type": "Fail", "Error": "Wrong"},
    },
}


def flaky_registry(seen: list[dict[str, Any]]) -> Registry:
    registry = Registry()

    def flaky(value: dict[str, Any]) -> dict[str, Any]:
        seen.append({"entered": value["entered"], "retry": value["retry"]})
        # A handler may scribble on its input; `$$` must not change for anyone after.
        value["context"]["State"]["Name"] = "Scribbled"
        value["context"]["Execution"]["StartTime"] = "scribbled"
        if len(seen) == 1:
            raise ActivityError("Flaky", "first attempt fails")
        return {"retry": value["retry"]}

    registry.register("flaky", flaky)
    return registry


def test_each_state_reads_its_own_entered_time_and_the_execution_start(db_url: str) -> None:
    seen: list[dict[str, Any]] = []

    async def main() -> Any:
        async with Engine(
            db_url,
            registry=flaky_registry(seen),
            clock=LoopClock(),
            worker=False,
            inline_store=True,
        ) as engine:
            record = await engine.run(MACHINE, {})
            return record, await engine.history(record)

    record, events = anyio.run(
        main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )
    assert record.status == "SUCCEEDED", record.cause
    output = json.loads(record.output)
    entered = {
        e.details["name"]: format_timestamp(e.timestamp)
        for e in events
        if e.type.endswith("Entered")
    }
    start = format_timestamp(record.start_date)

    assert output["first"] == {"entered": entered["First"], "start": start, "name": "First"}
    # Both attempts of the Task see the state's one entry and their own retry count.
    assert seen == [
        {"entered": entered["Work"], "retry": 0},
        {"entered": entered["Work"], "retry": 1},
    ]
    assert output["work"] == {"retry": 1}
    # The Wait (2 s) and the retry (3 s) moved the clock: every state has its own time.
    assert entered["First"] < entered["Work"] < entered["Last"]
    assert output["last"]["entered"] == entered["Last"]
    # A Pass state's $$.State has no RetryCount: AWS gives it only to Task, Parallel and Map.
    assert output["last"]["state"] == {"Name": "Last", "EnteredTime": entered["Last"]}
