"""Replays agree with what was recorded, or say plainly that they cannot.

A crash mid-way through a JSONata execution that used $uuid/$random resumes
with the same values: they are journaled when first drawn and committed
before the Task's effect leaves the process; the worker is SIGKILLed while
the handler runs, and the successor's rerun of the same attempt gets the
same arguments. And every record names the state it belongs to, so a walk
that reaches a recorded step from another state (the definition changed
under a running execution) fails with States.Runtime, not only at a
state's entry.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import sqlalchemy as sa

from engine import Engine
from engine.store import Store
from engine.store.schema import journal
from tests.engine.processes import spawn_worker, wait_until

MACHINE = {
    "QueryLanguage": "JSONata",
    "StartAt": "Draw",
    "States": {
        "Draw": {
            "Type": "Task",
            "Resource": "capture",
            "Arguments": {"id": "{% $uuid() %}", "dice": "{% $floor($random() * 1000000) %}"},
            "Assign": {"drawn": "{% $states.result %}"},
            "Next": "Echo",
        },
        "Echo": {"Type": "Pass", "Output": "{% {'again': $drawn, 'next': $uuid()} %}", "End": True},
    },
}


def test_uuid_and_random_survive_a_sigkill(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    with Engine(db_url, worker=False, lease_seconds=2) as engine:
        engine.create_state_machine_sync("draw", MACHINE)
        started = engine.start_sync("draw", {})
        first = spawn_worker(db_url, log)
        wait_until(lambda: log.exists() and log.read_text().strip())
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = spawn_worker(db_url, log)
        try:
            done = engine.wait_sync(started, timeout=60)
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2 and calls[0]["pid"] != calls[1]["pid"]
    assert calls[0]["input"] == calls[1]["input"]
    assert calls[0]["key"] == calls[1]["key"]
    assert done.status == "SUCCEEDED"
    output = json.loads(done.output or "")
    assert output["again"] == calls[0]["input"]
    assert output["next"] != calls[0]["input"]["id"]


WAITING = {
    "StartAt": "W",
    "States": {
        "W": {"Type": "Wait", "Seconds": 3600, "Next": "A"},
        "A": {"Type": "Pass", "End": True},
    },
}


def _suspended_in_wait(url: str) -> str:
    with Engine(url, worker=False, hold_seconds=1) as engine:
        engine.create_state_machine_sync("m", WAITING)
        started = engine.start_sync("m", {})
        engine._call(engine._drive, started.execution_id, hold_seconds=1, until_stable=True)
    return started.execution_id


def _rewrite(url: str, key: str, old: str, new: str) -> None:
    store = Store(url)
    try:
        with store._engine.begin() as conn:  # reaching into the store on purpose
            row = conn.execute(sa.select(journal.c.value).where(journal.c.key == key)).scalar_one()
            assert old in row
            conn.execute(
                sa.update(journal).where(journal.c.key == key).values(value=row.replace(old, new))
            )
    finally:
        store.close()


def test_a_changed_walk_is_caught_at_any_record_not_only_entry(sqlite_url: str) -> None:
    """The Wait's due time claims another state: the replay fails instead of using it."""
    execution_id = _suspended_in_wait(sqlite_url)
    _rewrite(sqlite_url, "0:wait", '"s":"W"', '"s":"Elsewhere"')

    # One activation, until it ends or suspends: without the check the replay
    # would trust the hour-long due time and suspend in the Wait (RUNNING),
    # so nothing here waits for the hour or for a deadline.
    with Engine(sqlite_url, worker=False, hold_seconds=1) as engine:
        finished = engine._call(engine._drive, execution_id, hold_seconds=1, until_stable=True)
    assert finished.status == "FAILED"
    assert finished.error == "States.Runtime"
    cause = finished.cause or ""
    assert "0:wait" in cause and "Elsewhere" in cause and "'W'" in cause


def test_records_without_a_state_name_still_replay(sqlite_url: str) -> None:
    """Rows recorded before records named their state are accepted as they are."""
    execution_id = _suspended_in_wait(sqlite_url)
    # The row as an older Stepwise wrote it, due in the past so the replay goes on.
    store = Store(sqlite_url)
    try:
        with store._engine.begin() as conn:
            row = conn.execute(sa.select(journal.c.value).where(journal.c.key == "0:wait"))
            assert '"s":"W"' in row.scalar_one()  # new rows name their state
            conn.execute(
                sa.update(journal)
                .where(journal.c.key == "0:wait")
                .values(value='{"v":"2000-01-01T00:00:00+00:00","e":0}')
            )
    finally:
        store.close()
    with Engine(sqlite_url, worker=False, hold_seconds=1) as engine:
        finished = engine._call(engine._drive, execution_id, hold_seconds=1e9)
    assert finished.status == "SUCCEEDED"
