"""The durable engine's promises, on both stores: executions, retries, timeouts, stops, replay.

Time-dependent behaviour (Retry backoff, Wait, timeouts) runs under trio
with a mocked clock, so a 60-second Wait takes milliseconds and the
assertions can be exact about when things happened.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from trio.testing import MockClock

from activities import ActivityContext, ActivityError, Registry
from engine import Engine, LoopClock
from engine.errors import DefinitionError, ExecutionAlreadyExists, InvalidExecutionInput
from engine.store import Store
from engine.store.schema import journal


def run_mocked(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run `fn` on trio with a clock that jumps whenever everything waits."""
    return anyio.run(fn, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


CHAIN = {
    "StartAt": "Add",
    "States": {
        "Add": {"Type": "Task", "Resource": "add", "ResultPath": "$.sum", "Next": "Check"},
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.sum", "NumericGreaterThan": 10, "Next": "Big"}],
            "Default": "Small",
        },
        "Big": {"Type": "Pass", "Result": "big", "ResultPath": "$.size", "End": True},
        "Small": {"Type": "Pass", "Result": "small", "ResultPath": "$.size", "End": True},
    },
}


def adder() -> Registry:
    registry = Registry()
    registry.register("add", lambda value: value["a"] + value["b"])
    return registry


def test_run_every_step_on_both_stores(db_url: str) -> None:
    with Engine(db_url, registry=adder(), worker=False) as engine:
        record = engine.run_sync(CHAIN, {"a": 7, "b": 5})
        assert record.status == "SUCCEEDED"
        assert json.loads(record.output or "") == {"a": 7, "b": 5, "sum": 12, "size": "big"}
        events = engine.history_sync(record.execution_id)
    assert types(events) == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ChoiceStateEntered",
        "ChoiceStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]
    assert [e.event_id for e in events] == list(range(1, 12))
    assert events[0].previous_event_id == 0


def test_start_and_wait_with_in_process_worker(db_url: str) -> None:
    with Engine(db_url, registry=adder()) as engine:
        engine.create_state_machine_sync("chain", CHAIN)
        started = engine.start_sync("chain", {"a": 1, "b": 2}, name="first")
        done = engine.wait_sync(started, timeout=30)
    assert done.status == "SUCCEEDED"
    assert json.loads(done.output or "")["size"] == "small"


def test_same_name_same_input_is_idempotent_and_different_input_fails(db_url: str) -> None:
    registry = Registry()

    async def slow(value: Any) -> Any:
        await anyio.sleep(3600)
        return value

    registry.register("slow", slow)
    machine = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "slow", "End": True}}}
    with Engine(db_url, registry=registry, worker=False) as engine:
        engine.create_state_machine_sync("m", machine)
        first = engine.start_sync("m", {"x": 1}, name="order-1")
        again = engine.start_sync("m", {"x": 1}, name="order-1")
        assert again.execution_id == first.execution_id
        with pytest.raises(ExecutionAlreadyExists):
            engine.start_sync("m", {"x": 2}, name="order-1")


def test_machine_versions_pin_executions(db_url: str) -> None:
    with Engine(db_url, registry=adder(), worker=False) as engine:
        v1 = engine.create_state_machine_sync("m", CHAIN)
        same = engine.create_state_machine_sync("m", json.dumps(CHAIN, indent=2))
        changed = dict(CHAIN, Comment="second version")
        v2 = engine.create_state_machine_sync("m", changed)
        started = engine.start_sync("m", {"a": 1, "b": 1})
    assert (v1.version, same.version, v2.version) == (1, 1, 2)
    assert started.version == 2


def test_invalid_definition_is_rejected_with_every_problem(db_url: str) -> None:
    bad = {"StartAt": "Nowhere", "States": {"A": {"Type": "Pass", "Next": "Missing"}}}
    with Engine(db_url, worker=False) as engine, pytest.raises(DefinitionError) as raised:
        engine.create_state_machine_sync("bad", bad)
    codes = {(d.code, d.location) for d in raised.value.diagnostics}  # type: ignore[attr-defined]
    assert ("MISSING_TRANSITION_TARGET", "/States/A/Next") in codes
    assert any(location == "/StartAt" for _code, location in codes)


def test_handler_signatures_and_failures(sqlite_url: str) -> None:
    seen: list[ActivityContext] = []
    registry = Registry()
    registry.register("one", lambda value: {"got": value})

    def two(value: Any, context: ActivityContext) -> Any:
        seen.append(context)
        return context.attempt

    async def boom(value: Any) -> Any:
        raise ValueError("no such customer")

    def explicit(value: Any) -> Any:
        raise ActivityError("Billing.Declined", "card declined")

    registry.register("two", two)
    registry.register("boom", boom)
    registry.register("explicit", explicit)
    machine = {
        "StartAt": "One",
        "States": {
            "One": {"Type": "Task", "Resource": "one", "ResultPath": "$.one", "Next": "Two"},
            "Two": {"Type": "Task", "Resource": "two", "ResultPath": "$.two", "Next": "Boom"},
            "Boom": {
                "Type": "Task",
                "Resource": "boom",
                "Catch": [{"ErrorEquals": ["ValueError"], "ResultPath": "$.err", "Next": "X"}],
                "Next": "X",
            },
            "X": {"Type": "Task", "Resource": "explicit", "End": True},
        },
    }
    with Engine(sqlite_url, registry=registry, worker=False) as engine:
        record = engine.run_sync(machine, {"k": 1})
    assert record.status == "FAILED"
    assert (record.error, record.cause) == ("Billing.Declined", "card declined")
    assert seen[0].state_name == "Two" and seen[0].attempt == 0
    assert seen[0].idempotency_key.startswith(record.execution_id)


def test_retry_backoff_is_a_durable_timer(sqlite_url: str) -> None:
    calls: list[float] = []
    registry = Registry()

    async def flaky(value: Any) -> Any:
        calls.append(anyio.current_time())
        if len(calls) < 4:
            raise ConnectionError("try again")
        return "ok"

    registry.register("flaky", flaky)
    machine = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "flaky",
                "Retry": [
                    {
                        "ErrorEquals": ["ConnectionError"],
                        "IntervalSeconds": 2,
                        "BackoffRate": 3,
                        "MaxAttempts": 3,
                    }
                ],
                "End": True,
            }
        },
    }

    async def main() -> Any:
        async with Engine(
            sqlite_url, registry=registry, clock=LoopClock(), worker=False, inline_store=True
        ) as e:
            record = await e.run(machine)
            return record, await e.history(record)

    record, events = run_mocked(main)
    assert record.status == "SUCCEEDED" and json.loads(record.output) == "ok"
    assert len(calls) == 4
    # The events' own timestamps: each retry is scheduled exactly its backoff
    # after the failure (2, 2*3, 2*3*3 seconds).
    failed = [e.timestamp for e in events if e.type == "TaskFailed"]
    scheduled = [e.timestamp for e in events if e.type == "TaskScheduled"][1:]
    gaps = [(s - f).total_seconds() for f, s in zip(failed, scheduled, strict=True)]
    assert gaps == [2, 6, 18]
    assert types(events).count("TaskScheduled") == 4
    assert types(events).count("TaskStateEntered") == 1


def test_task_timeout_and_execution_timeout(sqlite_url: str) -> None:
    registry = Registry()

    async def hang(value: Any) -> Any:
        await anyio.sleep(10_000)

    registry.register("hang", hang)
    task_timeout = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "hang",
                "TimeoutSeconds": 5,
                "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    execution_timeout = {
        "TimeoutSeconds": 30,
        "StartAt": "W",
        "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}},
    }

    async def main() -> Any:
        async with Engine(
            sqlite_url, registry=registry, clock=LoopClock(), worker=False, inline_store=True
        ) as e:
            first = await e.run(task_timeout)
            second = await e.run(execution_timeout)
            return first, await e.history(first), second

    first, events, second = run_mocked(main)
    assert first.status == "SUCCEEDED"
    assert json.loads(first.output) == {"Error": "States.Timeout", "Cause": ""}
    timed_out = next(e for e in events if e.type == "TaskTimedOut")
    assert timed_out.details["error"] == "States.Timeout"
    assert second.status == "TIMED_OUT" and second.error == "States.Timeout"
    assert (second.stop_date - second.start_date) == timedelta(seconds=30)


def test_long_wait_suspends_and_fires_once_on_time_across_a_restart(db_url: str) -> None:
    machine = {
        "StartAt": "W",
        "States": {
            "W": {"Type": "Wait", "Seconds": 60, "Next": "Done"},
            "Done": {"Type": "Pass", "End": True},
        },
    }

    async def main() -> Any:
        clock = LoopClock()
        # hold_seconds=5: a 60 s Wait suspends instead of holding a worker.
        async with Engine(
            db_url, clock=clock, worker=True, hold_seconds=5, poll_seconds=1, inline_store=True
        ) as e:
            await e.create_state_machine("waits", machine)
            started = await e.start("waits", {"n": 1})
            await anyio.sleep(10)
            midway = await e.describe(started)
        # The first engine is gone; a new one (another "process") picks it up.
        async with Engine(
            db_url, clock=clock, worker=True, hold_seconds=5, poll_seconds=1, inline_store=True
        ) as e:
            done = await e.wait(started, timeout=600)
            return midway, done, await e.history(done)

    midway, done, events = run_mocked(main)
    assert midway.status == "RUNNING"
    assert done.status == "SUCCEEDED"
    assert types(events).count("WaitStateEntered") == 1
    assert types(events).count("WaitStateExited") == 1
    entered = next(e for e in events if e.type == "WaitStateEntered").timestamp
    exited = next(e for e in events if e.type == "WaitStateExited").timestamp
    assert timedelta(seconds=60) <= exited - entered < timedelta(seconds=62)


def test_stop_aborts_and_cancels_the_running_task(db_url: str) -> None:
    cancelled = anyio.Event()
    started_task = anyio.Event()
    registry = Registry()

    async def forever(value: Any) -> Any:
        started_task.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    registry.register("forever", forever)
    machine = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "forever", "End": True}},
    }

    async def main() -> Any:
        async with Engine(
            db_url, registry=registry, clock=LoopClock(), poll_seconds=0.5, inline_store=True
        ) as e:
            await e.create_state_machine("m", machine)
            started = await e.start("m", {})
            await started_task.wait()
            await e.stop(started, error="Operator", cause="changed my mind")
            done = await e.wait(started, timeout=60)
            await cancelled.wait()
            return done, await e.history(done)

    done, events = run_mocked(main)
    assert done.status == "ABORTED"
    assert (done.error, done.cause) == ("Operator", "changed my mind")
    assert types(events)[-1] == "ExecutionAborted"
    assert "TaskSucceeded" not in types(events)


def test_stop_of_a_suspended_execution_needs_no_worker(sqlite_url: str) -> None:
    machine = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 86400, "End": True}}}
    with Engine(sqlite_url, worker=False, hold_seconds=1) as engine:
        engine.create_state_machine_sync("m", machine)
        started = engine.start_sync("m", {})
        stopped = engine.stop_sync(started)
    assert stopped.status == "ABORTED"


def test_replay_detects_a_changed_walk(sqlite_url: str) -> None:
    """A journaled step whose state differs from what the walk reaches is a nondeterminism error."""
    machine = {
        "StartAt": "W",
        "States": {
            "W": {"Type": "Wait", "Seconds": 3600, "Next": "A"},
            "A": {"Type": "Pass", "End": True},
        },
    }
    with Engine(sqlite_url, worker=False, hold_seconds=1) as engine:
        engine.create_state_machine_sync("m", machine)
        started = engine.start_sync("m", {})
        # Run it until it suspends in the Wait.
        engine._call(engine._drive, started.execution_id, hold_seconds=1, until_stable=True)
    # Simulate a definition changed under a running execution: rewrite the
    # journaled entry of step 0 to claim another state ran there.
    store = Store(sqlite_url)
    with store._engine.begin() as conn:  # reaching into the store on purpose
        row = conn.execute(sa.select(journal.c.value).where(journal.c.key == "0:in")).scalar_one()
        conn.execute(
            sa.update(journal)
            .where(journal.c.key == "0:in")
            .values(value=row.replace('"s":"W"', '"s":"Elsewhere"'))
        )
    store.close()
    with Engine(sqlite_url, worker=False, hold_seconds=1) as engine:
        finished = engine._call(engine._drive, started.execution_id, hold_seconds=1e9)
    assert finished.status == "FAILED"
    assert finished.error == "States.Runtime"
    assert "Elsewhere" in (finished.cause or "") and "'W'" in (finished.cause or "")


def test_payload_limits(sqlite_url: str) -> None:
    big = {
        "StartAt": "Grow",
        "States": {
            "Grow": {
                "Type": "Pass",
                "Parameters": {"blob.$": "States.ArrayRange(1, 1000, 1)"},
                "Next": "Bigger",
            },
            "Bigger": {
                "Type": "Map",
                "ItemsPath": "$.blob",
                "ItemSelector": {"pad.$": "States.Format('{}{}{}', $.blob, $.blob, $.blob)"},
                "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(big)
        engine.create_state_machine_sync("m", CHAIN)
        with pytest.raises(InvalidExecutionInput):
            engine.start_sync("m", {"blob": "x" * 300_000})
    # State output over 256 KiB is terminal: not caught even by States.ALL.
    assert record.status == "FAILED"
    assert record.error == "States.DataLimitExceeded"
    assert "Bigger" in (record.cause or "")


def test_stop_and_sibling_failure_record_aborted_states(db_url: str) -> None:
    registry = Registry()

    async def hang(value: Any) -> Any:
        await anyio.sleep(10_000)

    async def boom(value: Any) -> Any:
        await anyio.sleep(1)
        raise RuntimeError("branch failed")

    registry.register("hang", hang)
    registry.register("boom", boom)
    fan = {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "Hang",
                        "States": {"Hang": {"Type": "Task", "Resource": "hang", "End": True}},
                    },
                    {
                        "StartAt": "Pause",
                        "States": {"Pause": {"Type": "Wait", "Seconds": 600, "End": True}},
                    },
                    {
                        "StartAt": "Boom",
                        "States": {"Boom": {"Type": "Task", "Resource": "boom", "End": True}},
                    },
                ],
                "End": True,
            }
        },
    }
    stoppable = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "hang", "End": True}}}

    async def main() -> Any:
        async with Engine(
            db_url,
            registry=registry,
            clock=LoopClock(),
            worker=True,
            inline_store=True,
            poll_seconds=0.5,
        ) as e:
            failed = await e.run(fan)
            await e.create_state_machine("s", stoppable)
            started = await e.start("s", {})
            await anyio.sleep(2)
            await e.stop(started, error="Ops")
            stopped = await e.wait(started, timeout=60)
            return failed, await e.history(failed), stopped, await e.history(stopped)

    failed, fan_events, stopped, stop_events = run_mocked(main)
    assert failed.status == "FAILED" and failed.error == "RuntimeError"
    fan_types = types(fan_events)
    # Hang, and Boom itself: AWS records a Task failing in a branch as aborted too.
    assert fan_types.count("TaskStateAborted") == 2
    assert fan_types.count("WaitStateAborted") == 1  # Pause
    assert fan_types[-2:] == ["ParallelStateFailed", "ExecutionFailed"]
    assert stopped.status == "ABORTED"
    assert types(stop_events)[-2:] == ["TaskStateAborted", "ExecutionAborted"]
