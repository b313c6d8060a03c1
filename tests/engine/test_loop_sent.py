"""A call sent on the event loop's connection is carried to its end when its caller is cancelled.

`asynccommit._sent` steps the call in the caller's own task; a cancellation
of the caller — asyncio's own `Task.cancel` or an anyio cancel scope — must
not cut the call off mid-protocol: the statement sent completes (its
outcome is known: written), the caller gets its cancellation after that,
and the same connection serves the next call. Real PostgreSQL; a second
session holds a lock so the call is in flight when the caller is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import psycopg
import psycopg.waiting
import pytest

from engine.store import Store
from engine.store.asynccommit import LoopCommit, _sent
from tests.engine.test_loop_commit import _plain

pytestmark = pytest.mark.timeout(120)  # a hang guard only


async def _insert(connection: psycopg.AsyncConnection[Any]) -> None:
    await connection.execute("INSERT INTO marks VALUES (1)")


async def _marks(connection: psycopg.AsyncConnection[Any]) -> int:
    cursor = await connection.execute("SELECT count(*) FROM marks")
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _blocked_then_released(
    url: str, call: Callable[[], Any], cancel: Callable[[], Awaitable[Any]]
) -> None:
    """`call` the insert while another session holds the table; `cancel` the caller meanwhile."""
    locker = await psycopg.AsyncConnection.connect(_plain(url))
    await locker.execute("LOCK TABLE marks IN EXCLUSIVE MODE")
    call()
    while True:  # the insert is in flight, waiting on the lock
        cursor = await locker.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        row = await cursor.fetchone()
        if row and row[0]:
            break
        await asyncio.sleep(0.01)
    await cancel()
    await locker.rollback()
    await locker.close()


def _scenario(url: str, body: Callable[[LoopCommit], Awaitable[None]]) -> None:
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE marks (n int)")

    async def run() -> None:
        with contextlib.closing(Store(url)) as store:
            on_loop = store.loop_commit()
            assert on_loop is not None
            assert await on_loop.run(_marks) == 0  # connected
            pid = on_loop.backend_pid
            await body(on_loop)
            # The same session, usable, and the insert was written.
            assert await on_loop.run(_marks) == 1
            assert on_loop.backend_pid == pid
            await on_loop.aclose()

    asyncio.run(run())


def test_asyncios_own_cancel_waits_for_the_call_and_keeps_the_connection(
    postgres_url: str,
) -> None:
    async def body(on_loop: LoopCommit) -> None:
        calls: list[asyncio.Task[Any]] = []

        async def cancel() -> None:
            calls[0].cancel()
            await asyncio.sleep(0.05)
            assert not calls[0].done()  # still waiting for the insert's answer (the lock is held)

        await _blocked_then_released(
            postgres_url, lambda: calls.append(asyncio.create_task(on_loop.run(_insert))), cancel
        )
        with pytest.raises(asyncio.CancelledError):
            await calls[0]

    _scenario(postgres_url, body)


def test_an_anyio_scopes_cancel_waits_for_the_call_and_keeps_the_connection(
    postgres_url: str,
) -> None:
    async def body(on_loop: LoopCommit) -> None:
        scope = anyio.CancelScope()
        finished = anyio.Event()

        async def call() -> None:
            with scope:
                await on_loop.run(_insert)
            finished.set()

        async def cancel() -> None:
            scope.cancel()
            await asyncio.sleep(0.05)
            assert not finished.is_set()

        async with anyio.create_task_group() as group:
            await _blocked_then_released(postgres_url, lambda: group.start_soon(call), cancel)
        assert scope.cancelled_caught

    _scenario(postgres_url, body)


def test_a_keyboard_interrupt_in_the_call_after_a_cancel_is_raised_as_itself() -> None:
    async def interrupted() -> None:
        answer = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.05, answer.set_result, None)
        await answer
        raise KeyboardInterrupt

    async def run() -> None:
        task = asyncio.ensure_future(_sent(interrupted()))
        await asyncio.sleep(0)  # the call is waiting on its answer
        task.cancel()
        await asyncio.wait([task])

    # A KeyboardInterrupt leaves the event loop (not a CancelledError kept in the task).
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(run())


@pytest.mark.parametrize("wait", [psycopg.waiting.wait_async, psycopg.waiting.wait_conn_async])
def test_psycopgs_async_waits_never_cancel_their_own_task(wait: Callable[..., Any]) -> None:
    # `_sent` steps the call in its caller's task: a wait that bounds itself
    # with asyncio.timeout (or wait_for on Python 3.12+) cancels that task,
    # which `_sent` takes for its caller's cancellation (the answer lost).
    # psycopg >= 3.3.9 (pyproject's floor) waits on a future and a timer.
    codes, called = [wait.__code__], set[str]()
    while codes:  # its names, and its nested functions' (no parse: its compiled code)
        code = codes.pop()
        called.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    assert {"create_future", "call_later"} <= called  # what it waits with: a future, a timer
    assert not called & {"timeout", "timeout_at", "wait_for", "ensure_future", "create_task"}
