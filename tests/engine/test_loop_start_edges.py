"""The event loop's start connection at its edges (engine/store/asyncstart.py), real PostgreSQL.

The Engine's exit waits for a start still being written on it (a start
during shutdown still completes, as on the threads); a batch too large to
encode on the loop goes to a store thread with the same answers; and a
connection opened for a caller cancelled during the connect is kept, not
left unclosed for the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from engine import Engine
from engine.store import Store
from tests.engine.test_loop_commit import _plain

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
pytestmark = pytest.mark.timeout(120)  # a hang guard only


async def _until(condition: Callable[[], Any]) -> None:
    while not await condition():
        await asyncio.sleep(0.01)


async def _lock_work_queue(url: str) -> psycopg.AsyncConnection[Any]:
    """A session holding work_queue so no start's write can go through until it rolls back."""
    locker = await psycopg.AsyncConnection.connect(_plain(url))
    await locker.execute("LOCK TABLE work_queue IN EXCLUSIVE MODE")
    return locker


def _waiting_on_the_lock(locker: psycopg.AsyncConnection[Any]) -> Callable[[], Any]:
    async def waiting() -> bool:
        cursor = await locker.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        row = await cursor.fetchone()
        return bool(row and row[0])

    return waiting


def _names(url: str, name: str) -> int:
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM executions WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def test_the_engines_exit_lets_a_start_in_flight_on_the_loop_finish(postgres_url: str) -> None:
    async def scenario() -> None:
        async with Engine(postgres_url, worker=False) as engine:
            await engine.create_state_machine("Machine", PASS)
            await engine.start("Machine", {}, name="warm")  # the loop's connection open
            starts = engine.lifecycle.starts
            on_loop = starts.on_loop
            assert on_loop is not None and starts.batches_on_loop == 1
            locker = await _lock_work_queue(postgres_url)
            # A start from outside the Engine's task group (a web handler's).
            start = asyncio.create_task(engine.start("Machine", {}, name="in-flight"))
            await _until(_waiting_on_the_lock(locker))  # its write sent on the loop's connection

            async def closing() -> bool:
                return on_loop._closed

            async def release_once_closing() -> None:
                await _until(closing)
                await locker.rollback()
                await locker.close()

            release = asyncio.create_task(release_once_closing())
        await release
        # Answered (it raised StoreUnavailable: its connection closed under it).
        record = await start
        assert record.name == "in-flight"
        assert starts.batches_on_loop == 2

    asyncio.run(scenario())
    assert _names(postgres_url, "in-flight") == 1


def test_a_large_start_batch_is_sent_from_a_store_thread(postgres_url: str) -> None:
    names = [f"queued-{n}" for n in range(12)]

    async def scenario() -> None:
        async with Engine(postgres_url, worker=False) as engine:
            await engine.create_state_machine("Machine", PASS)
            await engine.start("Machine", {}, name="warm")
            starts = engine.lifecycle.starts
            locker = await _lock_work_queue(postgres_url)
            first = asyncio.create_task(engine.start("Machine", {"n": -1}, name="first"))
            await _until(_waiting_on_the_lock(locker))
            queued = [
                asyncio.create_task(engine.start("Machine", {"n": n}, name=name))
                for n, name in enumerate(names)
            ]

            async def all_queued() -> bool:
                return starts.queued == len(names)

            await _until(all_queued)
            await locker.rollback()
            await locker.close()
            on_loop = await first
            by_thread = await asyncio.gather(*queued)
            # 12 starts in one batch: encoded and sent on a store thread.
            assert (starts.batches_on_loop, starts.transactions) == (2, 3)
            assert [r.name for r in by_thread] == names
            assert [json.loads(r.input) for r in by_thread] == [{"n": n} for n in range(12)]
            # One start of a large input goes to the threads too.
            big = {"blob": "x" * (100 * 1024)}
            large = await engine.start("Machine", big, name="large")
            assert (starts.batches_on_loop, starts.transactions) == (2, 4)
            # The same records and histories as the loop's.
            for record in (*by_thread, large):
                described = await engine.describe(record.execution_id)
                assert (described.status, described.name) == ("RUNNING", record.name)
                assert [e.type for e in await engine.history(record)] == [
                    e.type for e in await engine.history(on_loop)
                ]
            assert json.loads((await engine.describe(large.execution_id)).input) == big

    asyncio.run(scenario())


def test_a_connection_opened_for_a_cancelled_caller_is_kept(postgres_url: str) -> None:
    async def scenario() -> None:
        with contextlib.closing(Store(postgres_url)) as store:
            on_loop = store.loop_commit()
            assert on_loop is not None

            async def work(connection: psycopg.AsyncConnection[Any]) -> None:
                await connection.execute("SELECT 1")

            call = asyncio.create_task(on_loop.run(work))
            await asyncio.sleep(0)  # the call is connecting (no connection yet)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            # Kept for the next call (it was dropped without a close()).
            pid = on_loop.backend_pid
            assert pid is not None
            await on_loop.run(work)
            assert on_loop.backend_pid == pid
            await on_loop.aclose()
            assert on_loop.backend_pid is None

    asyncio.run(scenario())
