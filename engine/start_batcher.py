"""Concurrent starts share one transaction: the start batcher of a `Lifecycle`.

Starts handed to a `StartBatcher` while a batch is being committed wait,
and go together in the next batch: one `Store.start_executions` call, one
transaction, one commit. Each caller gets its own answer — its record, or
its own error (a name already taken, or data the database refused, fails
only that start). Alone, a start costs exactly one transaction. There is
no serving task to start or stop: the first caller to find no batch in
flight commits the queue (the *leader*); when its batch is done it hands
the lead to the first start that queued meanwhile, so no caller commits
more than its own batch. Every step of that runs shielded from
cancellation (on asyncio, whose own cancellation anyio's shield does not
block, a batch runs as a task of its own and a start cancelled while it
queues leaves the queue), and every batch's waiters are woken in a
``finally``: a start handed over is always carried through or failed with
the store's error, even while the engine shuts down, and a cancelled
leader never leaves the others waiting (see `engine/committer.py` for the
hang this guards against). On SQLite a batch handed to the store thread
together with a commit group shares that group's store call and
transaction (`engine/writepairs.py`), each start answered as it would be alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import sniffio

from engine.store import Store
from engine.store.starts import StartRequest, StartResult
from engine.writepairs import WritePairs

if TYPE_CHECKING:
    from engine.store.asynccommit import LoopCommit
    from engine.store.asyncstart import LoopHeads

__all__ = ["StartBatcher", "answered_before"]

_ANSWERED = "stepwise_start_answered"


def answered_before(ending: BaseException) -> StartResult | None:
    """The answer of a start whose caller asyncio cancelled after its batch was carried through.

    `StartBatcher.start` raises such a cancellation once the batch is
    committed (asyncio's own `Task.cancel`, which anyio's shield does not
    block); the start's answer rides on it, so its caller knows what was
    written (an execution created is durable and must run). None for any
    other ending: the outcome is unknown, or nothing was written.
    """
    answer = getattr(ending, _ANSWERED, None)
    return answer if isinstance(answer, StartResult) else None


@dataclass
class _Waiter:
    request: StartRequest
    # Made only for a start that queues behind a batch in flight: a leader
    # (every start of a lone caller) never waits to be woken.
    wake: anyio.Event | None = None
    result: StartResult | None = None
    error: BaseException | None = None
    lead: bool = False  # woken to commit the next batch, not with an answer


class StartBatcher:
    """Groups concurrent starts into shared transactions (see the module docstring)."""

    def __init__(
        self, store: Store, run_db: Callable[..., Awaitable[Any]], *, max_batch: int = 256
    ) -> None:
        self._store = store
        self._run_db = run_db
        # SQLite: a batch goes with a commit group waiting beside it (engine/writepairs.py).
        self._pairs = WritePairs.of(store, run_db, "start")
        self._max_batch = max_batch
        # A larger batch is encoded and sent on a store thread, not on the
        # event loop (as the committer's `loop_group_max`): the inputs'
        # encoding would stall the loop (measured: 256 starts of 256 KB,
        # 373 ms).
        self.loop_batch_max = 8
        self.loop_input_max = 64 * 1024  # characters of input, summed over the batch
        # PostgreSQL on asyncio: batches sent from the event loop where they
        # can be (`send_from`, engine/store/asyncstart.py).
        self._on_loop: LoopCommit | None = None
        # The machines' rows its starts were last planned with (`asyncstart.LoopHeads`).
        self.heads: LoopHeads | None = None
        self._queue: list[_Waiter] = []
        self._leading = False
        self.transactions = 0
        self.starts = 0
        # Batches recorded from the event loop (an observable for tests).
        self.batches_on_loop = 0

    def send_from_loop(self) -> Callable[[], Awaitable[None]]:
        """Send batches from the running event loop from now on, where the store can (PostgreSQL).

        On a connection of the starts' own (`Store.loop_commit`'s). Returns
        what closes it.
        """
        on_loop = self._store.loop_commit()
        if on_loop is None:
            return _nothing
        from engine.store.asyncstart import LoopHeads  # loads psycopg: PostgreSQL only

        self._on_loop = on_loop
        self.heads = LoopHeads()
        return on_loop.aclose

    @property
    def queued(self) -> int:
        """How many starts are handed over and wait for a batch (none taken into one yet)."""
        return len(self._queue)

    @property
    def leading(self) -> bool:
        """Whether a caller holds the lead: a batch is being recorded, or about to be."""
        return self._leading

    @property
    def on_loop(self) -> LoopCommit | None:
        """The start connection of the event loop, if batches are sent from it (`backend_pid`)."""
        return self._on_loop

    async def connect(self) -> None:
        """Open the event loop's connection now (an Engine's start), if there is one.

        And read a machine once (none: the name is empty), so the server
        has planned the lookup before the first start. Failures are left for
        the first start to meet (it goes to the threads if it cannot connect).
        """
        on_loop = self._on_loop
        if on_loop is not None:
            from engine.store.asyncstart import warm_starts  # loads psycopg: PostgreSQL only

            # Shielded: a connection opened must be kept (and closed at exit).
            with anyio.CancelScope(shield=True):
                await warm_starts(on_loop, self._store)

    async def start(self, request: StartRequest) -> StartResult:
        """Record `request` (in a batch with any starts queued beside it) and return its answer.

        Raises what the store raises for the whole batch (StoreUnavailable).
        A caller cancelled while its start still queues leaves the queue
        (nothing of it written); once its start is in a batch, or the lead
        handed to it, the batch is carried through first (its start
        written, others answered), then the cancellation raised, carrying
        this start's answer when there is one (`answered_before`).
        """
        waiter = _Waiter(request)
        cancelled: BaseException | None = None
        with anyio.CancelScope(shield=True):
            # Once handed over, a start's outcome must be known before its
            # caller moves on, even if that caller is being cancelled.
            self._queue.append(waiter)
            if self._leading:
                wake = waiter.wake = anyio.Event()
                cancelled = await _woken(wake)
                if cancelled is not None and not waiter.lead and waiter in self._queue:
                    # Cancelled by asyncio itself (anyio's shield does not
                    # block it) while still queued: not in a batch, no lead.
                    self._queue.remove(waiter)
                    raise cancelled
                while not wake.is_set():
                    # In a batch in flight: its outcome first, however often cancelled.
                    late = await _woken(wake)
                    cancelled = cancelled or late
            else:
                self._leading = True
                waiter.lead = True
            if waiter.lead:
                # A leader is first in the queue, so its own start is in the batch it commits.
                late = await _carried(self._commit_next())
                cancelled = cancelled or late
        if cancelled is not None:
            if waiter.result is not None:
                # Carried through: its caller may still act on what was written.
                setattr(cancelled, _ANSWERED, waiter.result)
            raise cancelled
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    async def _commit_next(self) -> None:
        """Commit the next batch; then hand the lead on, or give it up when nothing waits."""
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        try:
            results = await self._recorded([w.request for w in batch])
        except BaseException as failure:
            for waiter in batch:
                waiter.error = failure
            if not isinstance(failure, Exception):
                raise
        else:
            self.transactions += 1
            self.starts += len(batch)
            for waiter, result in zip(batch, results, strict=True):
                waiter.result = result
        finally:
            for waiter in batch:
                if waiter.wake is not None:
                    waiter.wake.set()
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                assert successor.wake is not None  # it queued while this batch was in flight
                successor.wake.set()
            else:
                self._leading = False

    async def _recorded(self, requests: list[StartRequest]) -> list[StartResult]:
        """The store's answers for a batch: from the event loop where it can, else a thread."""
        on_loop = self._on_loop
        heads = self.heads
        if (
            on_loop is not None
            and heads is not None
            and len(requests) <= self.loop_batch_max
            and sum(len(request.input) for request in requests) <= self.loop_input_max
        ):
            # Here, not at the top: it loads psycopg (SQLite never does).
            from engine.store.asyncstart import start_on_loop

            done = await start_on_loop(on_loop, self._store, requests, heads)
            if isinstance(done, list):
                self.batches_on_loop += 1
                return done
        pairs = self._pairs
        if pairs is not None and pairs.takes_start(requests):
            return await pairs.start(requests)
        results: list[StartResult] = await self._run_db(self._store.start_executions, requests)
        return results


async def _nothing() -> None:
    return None


async def _woken(wake: anyio.Event) -> BaseException | None:
    """Wait (shielded) for `wake`: None, or asyncio's own cancellation met on the way.

    anyio's shield does not block asyncio's cancellation (`task.cancel()`,
    `asyncio.wait_for`, `asyncio.timeout`): it is returned, for the caller
    to act on and raise.
    """
    try:
        await wake.wait()
    except asyncio.CancelledError as cancelled:
        return cancelled
    return None


async def _carried(work: Coroutine[Any, Any, None]) -> BaseException | None:
    """Await `work` to its end; return asyncio's own cancellation of the caller met meanwhile.

    On asyncio `work` runs as a task of its own, so cancelling the caller
    (which anyio's shield does not block) cannot cut it short: a batch is
    committed and all its waiters answered, the lead handed on. On trio the
    caller's shield holds.
    """
    if sniffio.current_async_library() != "asyncio":
        await work
        return None
    task = asyncio.ensure_future(work)
    cancelled: BaseException | None = None
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError as failure:
            cancelled = failure
    task.result()  # raises what the batch raised beyond the store's errors
    return cancelled
