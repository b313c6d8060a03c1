"""The store's threads keep anyio's rules: order, one call per slot, and what cancelling means.

`Engine._run_db` hands store calls to `StoreThreads` on asyncio. A store
with one slot (SQLite) runs its calls one at a time in the order they came;
a call whose outcome must be known (a commit, a claim) is waited for by a
cancelled caller once it has started, and never runs if the caller was
cancelled before a thread took it; a cancellable call (the idle poll) is
simply abandoned. An Engine's store threads answer its loop through an
eventfd (`LoopAnswers`), closed with them, and an Engine leaves no store
thread behind when it closes.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from engine import Engine
from engine.storethreads import StoreThreads
from tests.activities.test_loop_answers import _eventfds

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def _store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "(store)" in t.name and t.is_alive()]


def test_one_slot_runs_calls_one_at_a_time_in_order() -> None:
    threads = StoreThreads(1)
    log: list[tuple[str, int]] = []
    running = 0
    most = 0
    lock = threading.Lock()

    def call(index: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        log.append(("run", index))
        time.sleep(0.001)
        with lock:
            running -= 1
        return index * 2

    async def main() -> list[int]:
        results: list[int] = []

        async def one(index: int) -> None:
            results.append(await threads.call(lambda: call(index)))

        async with anyio.create_task_group() as group:
            for index in range(20):
                group.start_soon(one, index)
                await anyio.lowlevel.checkpoint()
        return results

    try:
        results = anyio.run(main)
    finally:
        threads.close()
    assert most == 1
    assert [index for _, index in log] == list(range(20))
    assert sorted(results) == [index * 2 for index in range(20)]


def test_errors_come_back_to_the_caller() -> None:
    threads = StoreThreads(2)

    def fails() -> None:
        raise LookupError("no such row")

    async def main() -> None:
        with pytest.raises(LookupError, match="no such row"):
            await threads.call(fails)

    try:
        anyio.run(main)
    finally:
        threads.close()


def test_a_started_call_is_waited_for_and_a_queued_one_never_runs() -> None:
    threads = StoreThreads(1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def first() -> str:
        started.set()
        assert release.wait(10)
        ran.append("first")
        return "first"

    def second() -> str:
        ran.append("second")
        return "second"

    async def main() -> None:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(threads.call, first)
                await anyio.to_thread.run_sync(started.wait)
                group.start_soon(threads.call, second)  # queued behind the first
                await anyio.lowlevel.checkpoint()
                scope.cancel()
                threading.Timer(0.05, release.set).start()
        # Leaving the cancelled scope waited for the started call, not the queued one.
        assert ran == ["first"]
        assert await threads.call(lambda: "after") == "after"
        assert ran == ["first"]

    try:
        anyio.run(main)
    finally:
        threads.close()


def test_a_caller_already_cancelled_never_starts_its_call() -> None:
    threads = StoreThreads(1)
    ran: list[str] = []

    async def main() -> None:
        for cancellable in (False, True):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await threads.call(lambda: ran.append("effect"), cancellable=cancellable)
            assert scope.cancelled_caught
        # The thread is idle and would have taken it at once.
        assert await threads.call(lambda: "next") == "next"
        assert ran == []

    try:
        anyio.run(main)
    finally:
        threads.close()


def test_a_shielded_caller_inside_a_cancelled_scope_still_runs_its_call() -> None:
    threads = StoreThreads(1)

    async def main() -> object:
        with anyio.CancelScope() as outer:
            outer.cancel()
            with anyio.CancelScope(shield=True):
                return await threads.call(lambda: "ran")
        return None

    try:
        assert anyio.run(main) == "ran"
    finally:
        threads.close()


def test_a_cancellable_call_is_abandoned() -> None:
    threads = StoreThreads(1)
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        assert release.wait(10)
        return "slow"

    async def main() -> None:
        with anyio.move_on_after(0.05) as scope:
            await threads.call(slow, cancellable=True)
        assert scope.cancelled_caught and started.is_set()
        release.set()
        assert await threads.call(lambda: "next") == "next"

    try:
        anyio.run(main)
    finally:
        threads.close()


def test_an_engine_leaves_no_store_thread_behind(sqlite_url: str) -> None:
    async def main() -> Any:
        async with Engine(sqlite_url) as engine:
            await engine.create_state_machine("Pass", PASS)
            record = await engine.wait(await engine.start("Pass", {"v": 1}))
            assert _store_threads()
            return record

    assert anyio.run(main).status == "SUCCEEDED"
    for thread in _store_threads():
        thread.join(timeout=10)
    assert _store_threads() == []


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="eventfd is Linux's")
def test_an_engines_store_calls_are_answered_through_an_eventfd_closed_with_it(
    sqlite_url: str,
) -> None:
    before = _eventfds()
    by_store_threads: list[str] = []

    async def main() -> set[int]:
        loop = asyncio.get_running_loop()
        threadsafe = loop.call_soon_threadsafe

        def recorded(*args: Any, **kwargs: Any) -> Any:
            if "(store)" in threading.current_thread().name:
                by_store_threads.append(repr(args[0]))
            return threadsafe(*args, **kwargs)

        loop.call_soon_threadsafe = recorded  # type: ignore[method-assign]
        async with Engine(sqlite_url, worker=False) as engine:
            for _ in range(5):  # store calls, each answered by a store thread
                await engine.create_state_machine("Pass", PASS)
                assert (await engine.describe_state_machine("Pass")).version == 1
            opened = _eventfds() - before
        assert not (_eventfds() - before) & opened
        return opened

    assert anyio.run(main)  # the Engine's store threads had an eventfd of their own
    assert by_store_threads == []  # none answered through the loop's self-pipe
