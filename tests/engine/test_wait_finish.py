"""`Engine.wait` returns what a describe returns once the end is durable, however it learns of it.

When this Engine's own worker runs the execution, its finishing commit
answers the waiter with the record read back in the same store call (no
describe, no polling); when another Engine — another process's worker —
finishes it, the waiter describes as before. Either way the record is the
one a describe (here, and through a second Store opened on the same
database) gives after the end, including a stop requested by someone else
while the execution ran.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from activities import ActivityError
from activities.registry import Registry
from engine import Engine
from engine.store import ExecutionStatus, Store

TASK = {
    "StartAt": "Work",
    "States": {
        "Work": {"Type": "Task", "Resource": "gate", "Next": "Done"},
        "Done": {"Type": "Pass", "Result": {"done": True}, "End": True},
    },
}
FAILS = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Bad", "Cause": "no"}}}


def _gated() -> tuple[Registry, threading.Event, threading.Event]:
    """A registry whose `gate` activity blocks until released (and says when it started)."""
    started, release = threading.Event(), threading.Event()

    def gate(_input: Any) -> Any:
        started.set()
        assert release.wait(30)
        return {"ok": True}

    registry = Registry()
    registry.register("gate", gate)
    return registry, started, release


def _durable(url: str, execution_id: str) -> Any:
    """The record as a fresh Store on the same database reads it."""
    store = Store(url)
    try:
        return store.get_execution(execution_id)
    finally:
        store.close()


def test_a_wait_on_an_execution_running_here_gets_the_durable_final_record(
    db_url: str,
) -> None:
    registry, started, release = _gated()
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("Gated", TASK)
        engine.create_state_machine_sync("Fails", FAILS)
        record = engine.start_sync("Gated", {"v": 1})
        assert started.wait(30)

        def release_once_watched() -> None:
            # The end comes while the wait below is already watching for it.
            while record.execution_id not in engine.runtime.finished:
                threading.Event().wait(0.005)
            release.set()

        waiting = threading.Thread(target=release_once_watched)
        waiting.start()
        final = engine.wait_sync(record, timeout=30)
        waiting.join()
        assert final.status == ExecutionStatus.SUCCEEDED
        assert final.output == '{"done":true}'
        assert final == engine.describe_sync(record) == _durable(db_url, record.execution_id)
        assert final.stop_date is not None and final.last_event_id > record.last_event_id

        failed = engine.wait_sync(engine.start_sync("Fails"), timeout=30)
        assert failed.status == ExecutionStatus.FAILED and failed.error == "Bad"
        assert failed == _durable(db_url, failed.execution_id)
        # By name too, and again once ended.
        assert engine.wait_sync(final.name, timeout=30) == final
        assert engine.wait_sync(record, timeout=30) == final


def test_a_stop_requested_elsewhere_shows_in_the_record_wait_returns(db_url: str) -> None:
    registry, started, release = _gated()
    with (
        Engine(db_url, registry=registry) as engine,
        Engine(db_url, worker=False) as other,
    ):
        engine.create_state_machine_sync("Gated", TASK)
        record = engine.start_sync("Gated")
        assert started.wait(30)
        other.stop_sync(record, error="Halt", cause="from elsewhere")
        release.set()
        final = engine.wait_sync(record, timeout=30)
        assert final.status == ExecutionStatus.ABORTED
        assert final.stop_requested and final.stop_requested_error == "Halt"
        assert final == _durable(db_url, record.execution_id) == other.describe_sync(record)


def test_a_wait_on_an_execution_another_engine_runs_describes_it(db_url: str) -> None:
    registry, started, release = _gated()
    with Engine(db_url, worker=False) as watcher:
        watcher.create_state_machine_sync("Gated", TASK)
        record = watcher.start_sync("Gated", {"v": 2})
        with Engine(db_url, registry=registry) as runner:
            assert started.wait(30)
            assert watcher.describe_sync(record).status == ExecutionStatus.RUNNING
            release.set()
            final = watcher.wait_sync(record, timeout=30)
            assert final.status == ExecutionStatus.SUCCEEDED
            assert final == runner.describe_sync(record) == _durable(db_url, record.execution_id)


def test_a_wait_that_timed_out_leaves_nothing_that_answers_a_later_wait(db_url: str) -> None:
    """A wait given up (timed out) before the end must not answer a wait after a redrive.

    The first run fails while nobody waits any more; after the redrive the
    Task runs again, and a new wait must return that second end (SUCCEEDED),
    never the first run's FAILED record. No watch is left behind either.
    """
    runs: list[int] = []
    started = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]

    def gate(_input: Any) -> Any:
        run = len(runs)
        runs.append(run)
        started[run].set()
        assert release[run].wait(30)
        if run == 0:
            raise ActivityError("Broken", "the first run fails")
        return {"ok": True}

    registry = Registry()
    registry.register("gate", gate)
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("Gated", TASK)
        record = engine.start_sync("Gated", {})
        assert started[0].wait(30)
        with pytest.raises(TimeoutError):
            engine.wait_sync(record, timeout=0.2)
        assert record.execution_id not in engine.runtime.finished
        release[0].set()
        while engine.describe_sync(record).status == ExecutionStatus.RUNNING:
            threading.Event().wait(0.02)
        assert engine.describe_sync(record).status == ExecutionStatus.FAILED
        engine.redrive_sync(record)
        assert started[1].wait(30)

        def release_once_watched() -> None:
            while record.execution_id not in engine.runtime.finished:
                threading.Event().wait(0.005)
            release[1].set()

        releasing = threading.Thread(target=release_once_watched)
        releasing.start()
        final = engine.wait_sync(record, timeout=30)
        releasing.join()
        assert final.status == ExecutionStatus.SUCCEEDED
        assert final == _durable(db_url, record.execution_id)
        assert engine.runtime.finished == {}
