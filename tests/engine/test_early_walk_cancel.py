"""An early walk's start whose caller asyncio cancels: it runs once, or writes nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psycopg
import pytest

from engine import Engine
from engine.errors import StoreUnavailable
from engine.store import ExecutionRecord
from engine.worker import Worker
from tests.engine.test_refused_data import _HistoryLock, _refuse_zqfault
from tests.engine.test_start_early_walk import ECHO, _at_the_gate, _echo

# An hour's lease, a minute's poll: only the walk itself runs an execution promptly.
PATIENT: dict[str, Any] = {"lease_seconds": 3600, "poll_seconds": 60}


def _raw(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@asynccontextmanager
async def _echo_engine(
    url: str, calls: list[Any], **settings: Any
) -> AsyncIterator[tuple[Engine, Worker]]:
    """An Engine with its worker and machine "m" (`ECHO`, its calls kept in `calls`)."""
    async with Engine(url, registry=_echo(calls), **settings) as engine:
        await engine.create_state_machine("m", ECHO)
        worker = engine.worker
        assert worker is not None
        yield engine, worker


async def _start_at_the_gate(engine: Engine, input: Any) -> asyncio.Task[ExecutionRecord]:
    """A start of "m" in a task of its own, once its early walk waits at the gate."""
    caller = asyncio.ensure_future(engine.start("m", input))
    await _at_the_gate(engine)
    return caller


def _ids(url: str) -> list[str]:
    with psycopg.connect(_raw(url), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT execution_id FROM executions")]


def _lease(url: str, execution_id: str) -> Any:
    with psycopg.connect(_raw(url), autocommit=True) as conn:
        return conn.execute(
            "SELECT lease_owner, lease_expires_at FROM work_queue WHERE execution_id = %s",
            (execution_id,),
        ).fetchone()


async def _settled(engine: Engine) -> None:
    worker = engine.worker
    assert worker is not None
    with anyio.fail_after(30):
        while engine.runtime.early_gates or worker._promised:
            await anyio.sleep(0.01)


def test_cancelled_twice_in_flight_runs_once(postgres_url: str) -> None:
    calls: list[Any] = []

    async def scenario() -> None:
        async with _echo_engine(postgres_url, calls, **PATIENT) as (engine, worker):
            lock = _HistoryLock(postgres_url)
            try:
                caller = await _start_at_the_gate(engine, {"n": 1})
                caller.cancel()
                await asyncio.sleep(0.05)
                caller.cancel()
                await asyncio.sleep(0.05)
                lock.release()
                with pytest.raises(asyncio.CancelledError):
                    await caller
            finally:
                lock.release()
            ids = _ids(postgres_url)
            assert len(ids) == 1
            done = await engine.wait(ids[0], timeout=30)
            assert done.status == "SUCCEEDED"
            await _settled(engine)
            assert (worker.walked_early, worker.refused_early, worker.handed_off) == (1, 0, 1)
        assert calls == [{"n": 1}]

    anyio.run(scenario)


def test_cancelled_in_flight_and_refused_by_the_database_writes_nothing(postgres_url: str) -> None:
    calls: list[Any] = []

    async def scenario() -> None:
        async with _echo_engine(postgres_url, calls) as (engine, worker):
            _refuse_zqfault(postgres_url)
            lock = _HistoryLock(postgres_url)
            try:
                caller = await _start_at_the_gate(engine, {"n": "zqfault"})
                caller.cancel()
                await asyncio.sleep(0.05)
                lock.release()
                with pytest.raises(asyncio.CancelledError):
                    await caller
            finally:
                lock.release()
            await _settled(engine)
            assert _ids(postgres_url) == []
            assert (worker.walked_early, worker.refused_early, worker.handed_off) == (1, 1, 0)
            record = await engine.start("m", {"n": 2})
            assert (await engine.wait(record, timeout=60)).status == "SUCCEEDED"
        assert calls == [{"n": 2}]

    anyio.run(scenario)


def test_cancelled_in_flight_whose_answer_is_lost_is_claimed_promptly(postgres_url: str) -> None:
    calls: list[Any] = []

    async def scenario() -> None:
        async with _echo_engine(postgres_url, calls, lease_seconds=3600, poll_seconds=0.1) as (
            engine,
            worker,
        ):
            starts = engine._lifecycle._starts
            original = starts._recorded
            gate_seen = anyio.Event()

            async def lost(requests: Any) -> Any:
                await original(requests)
                gate_seen.set()
                await anyio.sleep(0.3)
                raise StoreUnavailable("connection lost under the write")

            starts._recorded = lost  # type: ignore[method-assign]
            caller: asyncio.Task[ExecutionRecord] = asyncio.ensure_future(
                engine.start("m", {"n": 1})
            )
            await gate_seen.wait()
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            starts._recorded = original  # type: ignore[method-assign]
            ids = _ids(postgres_url)
            assert len(ids) == 1
            done = await engine.wait(ids[0], timeout=30)  # an hour's lease: released
            assert done.status == "SUCCEEDED"
            await _settled(engine)
            assert worker.refused_early == 1
        assert calls == [{"n": 1}]

    anyio.run(scenario)


def test_cancelled_while_queued_behind_a_batch_frees_its_slot(postgres_url: str) -> None:
    calls: list[Any] = []

    async def scenario() -> None:
        async with _echo_engine(postgres_url, calls, **PATIENT) as (engine, worker):
            lock = _HistoryLock(postgres_url)
            try:
                first = await _start_at_the_gate(engine, {"n": 1})
                second: asyncio.Task[ExecutionRecord] = asyncio.ensure_future(
                    engine.start("m", {"n": 2})
                )
                await asyncio.sleep(0.1)
                assert engine._lifecycle._starts.queued == 1
                second.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await second
                lock.release()
                record = await first
            finally:
                lock.release()
            assert (await engine.wait(record, timeout=30)).status == "SUCCEEDED"
            await _settled(engine)
            assert _ids(postgres_url) == [record.execution_id]
            assert (worker.walked_early, worker.refused_early, worker.handed_off) == (1, 0, 1)
            assert worker._busy() == 0
        assert calls == [{"n": 1}]

    anyio.run(scenario)


def test_the_log_of_a_walk_refused_for_an_unknown_outcome(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The start created the execution but its answer was lost: no "did not create" line."""
    calls: list[Any] = []

    async def scenario() -> None:
        async with Engine(
            postgres_url, registry=_echo(calls), lease_seconds=3600, poll_seconds=0.1
        ) as engine:
            await engine.create_state_machine("m", ECHO)
            starts = engine._lifecycle._starts
            original = starts._recorded

            async def lost(requests: Any) -> Any:
                await original(requests)
                raise StoreUnavailable("connection lost under the write")

            starts._recorded = lost  # type: ignore[method-assign]
            with caplog.at_level(logging.INFO, logger="stepwise.worker"):
                with pytest.raises(StoreUnavailable):
                    await engine.start("m", {"n": 1})
                starts._recorded = original  # type: ignore[method-assign]
                ids = _ids(postgres_url)
                assert len(ids) == 1, "the start created the execution"
                assert (await engine.wait(ids[0], timeout=30)).status == "SUCCEEDED"
            said = [r.getMessage() for r in caplog.records if ids[0] in r.getMessage()]
            assert not [m for m in said if "did not create" in m], said

    anyio.run(scenario)


def test_a_follower_cancelled_while_its_shared_batch_is_in_flight_runs_once(
    postgres_url: str,
) -> None:
    calls: list[Any] = []

    async def scenario() -> None:
        async with _echo_engine(postgres_url, calls, **PATIENT) as (engine, worker):
            starts = engine._lifecycle._starts
            original = starts._recorded
            sizes: list[int] = []
            committed = anyio.Event()

            async def slow(requests: Any) -> Any:
                sizes.append(len(requests))
                answer = await original(requests)
                committed.set()
                await anyio.sleep(0.3)  # committed; the answers not back yet
                return answer

            starts._recorded = slow  # type: ignore[method-assign]
            leader = asyncio.ensure_future(engine.start("m", {"n": 1}))
            follower = asyncio.ensure_future(engine.start("m", {"n": 2}))
            await committed.wait()
            follower.cancel()
            await asyncio.sleep(0.05)
            follower.cancel()
            with pytest.raises(asyncio.CancelledError):
                await follower
            record = await leader
            starts._recorded = original  # type: ignore[method-assign]
            assert sizes == [2], "one shared batch"
            ids = _ids(postgres_url)
            assert len(ids) == 2
            for execution_id in ids:
                assert (await engine.wait(execution_id, timeout=30)).status == "SUCCEEDED"
            await _settled(engine)
            assert record.execution_id in ids
            assert (worker.walked_early, worker.refused_early, worker.handed_off) == (2, 0, 2)
        assert sorted(c["n"] for c in calls) == [1, 2]

    anyio.run(scenario)


@pytest.mark.parametrize("cancel", [False, True], ids=["plain", "cancelled"])
def test_the_start_connection_killed_in_flight_leaves_no_walk_waiting(
    postgres_url: str, cancel: bool
) -> None:
    calls: list[Any] = []

    async def scenario() -> None:
        async with _echo_engine(postgres_url, calls) as (engine, worker):
            on_loop = engine._lifecycle._starts.on_loop
            assert on_loop is not None
            lock = _HistoryLock(postgres_url)
            try:
                caller = await _start_at_the_gate(engine, {"n": 1})
                if cancel:
                    caller.cancel()
                with psycopg.connect(_raw(postgres_url), autocommit=True) as conn:
                    conn.execute("SELECT pg_terminate_backend(%s)", (on_loop.backend_pid,))
                with pytest.raises((StoreUnavailable, asyncio.CancelledError)):
                    await caller
            finally:
                lock.release()
            await _settled(engine)
            assert _ids(postgres_url) == []
            assert (worker.walked_early, worker.refused_early, worker.handed_off) == (1, 1, 0)
            assert worker._busy() == 0
            record = await engine.start("m", {"n": 2})
            assert (await engine.wait(record, timeout=60)).status == "SUCCEEDED"
        assert calls == [{"n": 2}]

    anyio.run(scenario)
