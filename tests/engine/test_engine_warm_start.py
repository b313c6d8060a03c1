"""An engine that runs work does its one-time set-up at start; a client engine does none of it.

`Engine.__aenter__` with an in-process worker (on asyncio) waits for its
background loops' first store calls, asks for the sync handlers' first
thread and prepares the start path, so its first execution does not pay
for them. That wait never holds the start up behind a backlog of due work
(only the calls made while it waits are waited for): the backlog runs on
after the start returns. An engine with ``worker=False`` (a client that
only starts and inspects executions) starts no handler thread.
"""

from __future__ import annotations

import json
import threading

import anyio

from activities.handler_threads import LoopThreads
from activities.registry import Registry
from engine import Engine

NAME = "stepwise handler (warmtest)"

ONE_TASK = {
    "StartAt": "Work",
    "States": {"Work": {"Type": "Task", "Resource": "work", "End": True}},
}


def _handler_threads() -> list[threading.Thread]:
    """The sync handlers' threads (the store's own are named ``… (store) …``)."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("stepwise handler") and "(store)" not in t.name and t.is_alive()
    ]


def _registry() -> Registry:
    registry = Registry()
    registry.register("work", lambda value: {"v": value["v"] + 1})
    return registry


def test_a_prestarted_pool_has_its_first_thread_without_a_call_and_serves_calls() -> None:
    pool = LoopThreads(4, name=NAME, what="test threads")
    try:
        pool.prestart()
        pool.prestart()  # a second ask adds nothing
        started = threading.Event()
        for _ in range(1000):  # the spawner starts it off the caller's thread
            if pool.threads == 1:
                started.set()
                break
            threading.Event().wait(0.01)
        assert started.is_set()

        async def main() -> list[int]:
            calls = [pool.submit(lambda index=index: index) for index in range(10)]  # type: ignore[misc]
            return [await call.future for call in calls]

        assert anyio.run(main) == list(range(10))
        assert 1 <= pool.threads <= 4
    finally:
        pool.close()
    for thread in [t for t in threading.enumerate() if t.name.startswith(NAME)]:
        thread.join(timeout=10)
    assert [t for t in threading.enumerate() if t.name.startswith(NAME)] == []


def test_a_closed_pool_is_not_prestarted() -> None:
    pool = LoopThreads(4, name=NAME, what="test threads")
    pool.close()
    pool.prestart()
    assert pool.threads == 0
    assert [t for t in threading.enumerate() if t.name.startswith(NAME)] == []


def test_an_engine_with_a_worker_has_its_handler_thread_asked_for_at_start(db_url: str) -> None:
    async def main() -> None:
        async with Engine(db_url, registry=_registry()) as engine:
            assert _handler_threads()  # the spawner, at least, before any execution
            await engine.create_state_machine("one", ONE_TASK)
            done = await engine.wait(await engine.start("one", {"v": 1}))
            assert done.status == "SUCCEEDED"

    anyio.run(main)


def test_a_client_engine_starts_no_handler_thread(db_url: str) -> None:
    for thread in _handler_threads():  # an earlier test's run, still stopping
        thread.join(timeout=10)

    async def main() -> None:
        async with Engine(db_url, registry=_registry(), worker=False) as engine:
            await engine.create_state_machine("one", ONE_TASK)
            record = await engine.start("one", {"v": 1})
            assert (await engine.describe(record)).status == "RUNNING"
            assert _handler_threads() == []

    anyio.run(main)
    for thread in _handler_threads():
        thread.join(timeout=10)


def test_a_backlog_of_due_executions_runs_to_the_end_after_the_start(db_url: str) -> None:
    async def main() -> None:
        async with Engine(db_url, registry=_registry(), worker=False) as client:
            await client.create_state_machine("one", ONE_TASK)
            records = [await client.start("one", {"v": index}) for index in range(40)]
        async with Engine(db_url, registry=_registry(), concurrency=4) as engine:
            outputs = [(await engine.wait(record)).output or "null" for record in records]
        assert [json.loads(output) for output in outputs] == [{"v": i + 1} for i in range(40)]

    anyio.run(main)
