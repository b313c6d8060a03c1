"""Triggers chained across machines: each upstream execution starts its downstream once."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.errors import AlertDoesNotExist, InvalidAlert
from engine.triggers import FolderWatcher, triggered_name

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


def test_a_file_dropped_twice_starts_one_execution(db_url: str, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    async def main() -> None:
        async with Engine(db_url, worker=False) as engine:
            await engine.create_state_machine("ingest", REPORT)
            await engine.triggers.create_watch(
                "on-csv", machine="ingest", directory=str(inbox), pattern="*.csv"
            )
            workers = [
                FolderWatcher(
                    store=engine.store,
                    lifecycle=engine.lifecycle,
                    clock=engine.clock,
                    run_db=engine._run_db,
                )
                for _ in range(2)
            ]
            (inbox / "orders.csv").write_text("a,b\n1,2\n")
            first = (inbox / "orders.csv").stat()
            (inbox / "notes.txt").write_text("not for us")
            for watcher in workers * 2:  # two workers, each scanning twice
                await watcher.run_once()
            (run,) = await engine.list_executions(machine="ingest")
            assert json.loads(run.input)["path"] == str(inbox / "orders.csv")
            assert json.loads(run.input)["size"] == 8
            # The same file dropped again as it was (cp -p, rsync): still one execution.
            (inbox / "orders.csv").write_text("a,b\n1,2\n")
            os.utime(inbox / "orders.csv", ns=(first.st_atime_ns, first.st_mtime_ns))
            for watcher in workers:
                await watcher.run_once()
            assert len(await engine.list_executions(machine="ingest")) == 1
            # A new version (new content and time) is a new file version: one more.
            (inbox / "orders.csv").write_text("a,b\n1,2\n3,4\n")
            os.utime(inbox / "orders.csv", ns=(first.st_atime_ns, first.st_mtime_ns + 10**9))
            for watcher in workers:
                await watcher.run_once()
            assert len(await engine.list_executions(machine="ingest")) == 2
            await engine.triggers.pause("on-csv")
            (inbox / "later.csv").write_text("x")
            await workers[0].run_once()
            assert len(await engine.list_executions(machine="ingest")) == 2

    anyio.run(main)
