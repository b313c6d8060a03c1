"""A start whose caller asyncio cancels itself never wedges the start batcher or loses an answer.

anyio's shield does not block asyncio's own cancellation (`task.cancel()`,
`asyncio.wait_for`, `asyncio.timeout`). A start so cancelled while it still
queues leaves the queue (nothing of it written) and the next start leads;
a cancelled batch leader still commits its batch, and the other callers
of that batch get their own answers, only the leader its cancellation.
The store calls run on the engine's `StoreThreads` (not cancellable once
started, as `Engine._run_db` runs them on asyncio), held at a gate so the
order of events is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.clock import SystemClock
from engine.lifecycle import Lifecycle
from engine.start_batcher import StartBatcher
from engine.store import Store
from engine.store.starts import StartRequest
from engine.storethreads import StoreThreads

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}

pytestmark = pytest.mark.timeout(120)  # a hang guard only: the wedged batcher waited forever


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with contextlib.closing(Store(sqlite_url)) as opened:
        opened.put_state_machine("Machine", json.dumps(PASS), "STANDARD")
        yield opened


class _Gated:
    """Runs store calls on StoreThreads; the n-th batch waits in its thread until let through."""

    def __init__(self, threads: StoreThreads) -> None:
        self._threads = threads
        self.entered: list[threading.Event] = [threading.Event() for _ in range(8)]
        self.gates: list[threading.Event] = [threading.Event() for _ in range(8)]
        self.calls = 0

    async def run_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        index = self.calls
        self.calls += 1

        def gated() -> Any:
            self.entered[index].set()
            self.gates[index].wait()
            return fn(*args)

        return await self._threads.call(gated)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def _names(store: Store) -> list[str]:
    return sorted(r.name for r in store.list_executions(machine="Machine"))


async def _request(life: Lifecycle, name: str) -> StartRequest:
    """The request `Lifecycle.start` hands its batcher for a start of Machine named `name`."""
    captured: list[StartRequest] = []
    batcher = life.starts

    async def capture(request: StartRequest) -> Any:
        captured.append(request)
        raise _Captured

    batcher.start = capture  # type: ignore[method-assign]
    try:
        await life.start("Machine", {"n": name}, name=name)
    except _Captured:
        pass
    finally:
        del batcher.start
    return captured[0]


class _Captured(Exception):
    pass


def _setup(store: Store) -> tuple[Lifecycle, StartBatcher, _Gated]:
    gated = _Gated(StoreThreads.for_this_run(2))
    life = Lifecycle(store=store, clock=SystemClock(), run_db=gated.run_db)
    return life, life.starts, gated


def test_a_start_cancelled_while_queued_leaves_the_queue_and_the_next_leads(store: Store) -> None:
    async def scenario() -> None:
        life, batcher, gated = _setup(store)
        requests = [await _request(life, name) for name in ("a", "b", "c")]
        a = asyncio.create_task(batcher.start(requests[0]))
        await _until(gated.entered[0].is_set)  # a's batch in flight
        b = asyncio.create_task(batcher.start(requests[1]))
        c = asyncio.create_task(batcher.start(requests[2]))
        await _until(lambda: batcher.queued == 2)  # b first in the queue, then c
        b.cancel()
        with pytest.raises(asyncio.CancelledError):
            await b
        gated.gates[0].set()
        gated.gates[1].set()
        assert (await a).created
        assert (await c).created  # c led the next batch (it hung: the lead went to b)
        assert _names(store) == ["a", "c"]  # b left the queue unwritten
        assert not batcher.leading and not batcher.queued

    asyncio.run(scenario())


async def _b_leads_bcd(
    store: Store,
) -> tuple[Lifecycle, StartBatcher, _Gated, asyncio.Task[Any], list[asyncio.Task[Any]]]:
    """a's batch committed; b leads the batch [b, c, d], held in flight at its gate."""
    life, batcher, gated = _setup(store)
    requests = [await _request(life, name) for name in "abcd"]
    a = asyncio.create_task(batcher.start(requests[0]))
    await _until(gated.entered[0].is_set)
    rest = [asyncio.create_task(batcher.start(r)) for r in requests[1:]]
    await _until(lambda: batcher.queued == 3)
    gated.gates[0].set()
    await _until(gated.entered[1].is_set)
    return life, batcher, gated, a, rest


def test_a_leader_cancelled_mid_batch_commits_and_its_batch_mates_get_their_answers(
    store: Store,
) -> None:
    async def scenario() -> None:
        life, batcher, gated, a, rest = await _b_leads_bcd(store)
        rest[0].cancel()
        gated.gates[1].set()
        assert (await a).created
        with pytest.raises(asyncio.CancelledError):
            await rest[0]
        # c and d were never cancelled: their answers, not b's cancellation.
        assert [(await task).created for task in rest[1:]] == [True, True]
        assert _names(store) == ["a", "b", "c", "d"]
        assert not batcher.leading and not batcher.queued
        gated.gates[2].set()
        assert (await batcher.start(await _request(life, "e"))).created

    asyncio.run(scenario())


def test_a_batch_mate_cancelled_twice_still_waits_for_its_batch(store: Store) -> None:
    """A second cancellation (an outer timeout, then a TaskGroup's abort) is no way out either."""

    async def scenario() -> None:
        _, _, gated, a, rest = await _b_leads_bcd(store)
        c = rest[1]
        c.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        c.cancel()
        for _ in range(20):
            await asyncio.sleep(0)
        assert not c.done(), f"c gave up before its batch committed (rows: {_names(store)})"
        gated.gates[1].set()
        assert (await a).created
        with pytest.raises(asyncio.CancelledError):
            await c
        assert _names(store) == ["a", "b", "c", "d"]
        assert [(await task).created for task in (rest[0], rest[2])] == [True, True]

    asyncio.run(scenario())
