"""Triggers chained across machines: each upstream execution starts its downstream once."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.errors import AlertDoesNotExist, InvalidAlert
from engine.triggers import triggered_name

EXTRACT = {"StartAt": "E", "States": {"E": {"Type": "Pass", "Result": {"rows": 3}, "End": True}}}
LOAD = {
    "StartAt": "Check",
    "States": {
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.rows", "NumericGreaterThan": 2, "Next": "TooMany"}],
            "Default": "Done",
        },
        "TooMany": {"Type": "Fail", "Error": "TooMany", "Cause": "too many rows"},
        "Done": {"Type": "Succeed"},
    },
}
REPORT = {"StartAt": "R", "States": {"R": {"Type": "Pass", "End": True}}}


async def until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not await predicate():
        assert time.monotonic() < deadline, what
        await anyio.sleep(0.05)


def test_triggers_chain_machines_once_per_execution(db_url: str) -> None:
    async def main() -> None:
        async with Engine(db_url) as engine:
            assert engine.alert_deliverer is not None
            engine.alert_deliverer.poll_seconds = 0.05
            for name, definition in (("extract", EXTRACT), ("load", LOAD), ("report", REPORT)):
                await engine.create_state_machine(name, definition)
            await engine.triggers.create(
                "then-load", machine="load", on_execution_of="extract", statuses=["SUCCEEDED"]
            )
            await engine.triggers.create(
                "on-load-failure",
                machine="report",
                on_execution_of="load",
                statuses=["FAILED", "TIMED_OUT"],
                input_from="input",
            )
            first = await engine.start("extract", {}, name="e1")
            load_name = triggered_name("then-load", first.execution_id)

            async def chained() -> bool:
                reports = await engine.list_executions(machine="report")
                return len(reports) == 1 and reports[0].status == "SUCCEEDED"

            await until(chained, "extract -> load -> report")
            load = await engine.describe(load_name)
            assert load.status == "FAILED"
            assert json.loads(load.input) == {"rows": 3}  # extract's output
            (report,) = await engine.list_executions(machine="report")
            assert report.name == triggered_name("on-load-failure", load.execution_id)
            assert json.loads(report.input) == {"rows": 3}  # load's input

            # A replayed delivery starts nothing new: one load per extract execution.
            deliveries = await engine.alerts.deliveries()
            for delivery in deliveries:
                await engine.alerts.replay(delivery.delivery_id)

            async def settled() -> bool:
                return all(d.state == "DELIVERED" for d in await engine.alerts.deliveries())

            await until(settled, "replays delivered")
            assert len(await engine.list_executions(machine="load")) == 1
            assert len(await engine.list_executions(machine="report")) == 1

            # Paused: executions closing meanwhile start nothing downstream.
            await engine.triggers.pause("then-load")
            second = await engine.start("extract", {}, name="e2")
            await engine.wait(second, timeout=60)
            await anyio.sleep(0.5)
            assert len(await engine.list_executions(machine="load")) == 1
            await engine.triggers.resume("then-load")
            assert [t.name for t in await engine.triggers.list_all()] == [
                "on-load-failure",
                "then-load",
            ]
            assert await engine.alerts.list_all() == []  # triggers are not alerts
            with pytest.raises(InvalidAlert):
                await engine.triggers.create(
                    "bad", machine="load", on_execution_of="extract", statuses=["RUNNING"]
                )
            await engine.triggers.delete("then-load")
            with pytest.raises(AlertDoesNotExist):
                await engine.triggers.describe("then-load")

    anyio.run(main)
