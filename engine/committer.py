"""Group commit: one worker commits the checkpoints of many executions in one transaction.

Activations hand their checkpoints to the `Committer` and wait; a single
task drains everything queued, commits it with one `Store.commit` call (one
transaction, leases checked per checkpoint) and wakes each waiter with its
own result. Under load many executions share each commit; alone, an
execution pays for exactly one commit per checkpoint, and a checkpoint that
finds the committer idle (nothing queued, no commit under way) is committed
by its caller's own task, sparing the hand-over to the committer's task and
back. One commit at a time either way (`_turn`): what arrives meanwhile
queues for the committer's task, which commits it as one group. Nothing is ever
acknowledged before it is durable. A checkpoint refused because its
worker no longer holds the lease is logged (a warning on the
``stepwise.committer`` logger naming the execution) and counted in
`leases_lost`, so a stale writer is visible, not silent.

Once the serving task has stopped (the engine is shutting down and its
task group was cancelled), what was queued is still flushed, and a
checkpoint handed over later is committed by its own caller: an
activation finishing during shutdown never waits for a committer that
will not come back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from engine.clock import Clock
from engine.store import Checkpoint, CommitResult, Store

__all__ = ["Committer"]

log = logging.getLogger("stepwise.committer")


@dataclass
class _Waiter:
    checkpoint: Checkpoint
    done: anyio.Event = field(default_factory=anyio.Event)
    result: CommitResult | None = None
    error: BaseException | None = None


class Committer:
    """Batches checkpoints into shared transactions."""

    # Whether a checkpoint that finds the committer idle is committed by its
    # caller's task; off only to measure the hand-over (benchmarks/).
    direct: bool = True

    def __init__(
        self,
        store: Store,
        *,
        worker_id: str,
        clock: Clock,
        run_db: Callable[..., Awaitable[Any]],
        max_batch: int = 256,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._clock = clock
        self._run_db = run_db
        self._max_batch = max_batch
        self._queue: list[_Waiter] = []
        self._wakeup = anyio.Event()
        self._stopped = False
        # Held by whichever task is committing: one commit at a time.
        self._turn = anyio.Lock()
        self.commits = 0
        self.checkpoints = 0
        self.leases_lost = 0

    async def commit(self, checkpoint: Checkpoint) -> CommitResult:
        """Make `checkpoint` durable; returns OK, LEASE_LOST or CONFLICT."""
        waiter = _Waiter(checkpoint)
        with anyio.CancelScope(shield=True):
            # Once handed over, a checkpoint's outcome must be known before
            # its activation moves on, even if that activation is being
            # cancelled.
            if self._stopped:
                await self._flush([waiter])
            elif self.direct and not self._queue and not self._turn.locked():
                async with self._turn:
                    await self._flush([waiter])
            else:
                self._queue.append(waiter)
                self._wakeup.set()
                await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    async def run(self) -> None:
        """Serve commits until cancelled; then flush what is queued and let callers commit."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                await self._drain()
        finally:
            self._stopped = True
            with anyio.CancelScope(shield=True):
                await self._drain()

    async def _drain(self) -> None:
        while self._queue:
            async with self._turn:
                # Taken after the turn, so what queued while waiting joins the group.
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                await self._flush(batch)

    async def _flush(self, batch: list[_Waiter]) -> None:
        checkpoints = [w.checkpoint for w in batch]
        try:
            with anyio.CancelScope(shield=True):
                results = await self._run_db(
                    self._store.commit,
                    checkpoints,
                    worker_id=self._worker_id,
                    now=self._clock.now(),
                )
        except Exception as failure:
            for waiter in batch:
                waiter.error = failure
                waiter.done.set()
            return
        self.commits += 1
        self.checkpoints += len(batch)
        for waiter, result in zip(batch, results, strict=True):
            if result is CommitResult.LEASE_LOST:
                self.leases_lost += 1
                log.warning(
                    "checkpoint of %s refused: lease lost (worker %s)",
                    waiter.checkpoint.execution_id,
                    self._worker_id,
                )
            waiter.result = result
            waiter.done.set()
