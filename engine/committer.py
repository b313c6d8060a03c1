"""Group commit: one worker commits the checkpoints of many executions in one transaction.

Activations hand their checkpoints to the `Committer` and wait; a single
task drains everything queued, commits it with one `Store.commit` call (one
transaction, leases checked per checkpoint) and wakes each waiter with its
own result. Under load many executions share each commit; alone, an
execution pays for exactly one commit per checkpoint, and a checkpoint that
finds the committer idle (nothing queued, no commit under way) is committed
by its caller's own task, sparing the hand-over to the committer's task and
back. One commit at a time either way (`_turn`): what arrives meanwhile
queues for the committer's task, which commits it as one group; a plain
checkpoint (no finish, no release, no read-back) of an execution whose
plain checkpoint is still queued joins that one (`_enqueue`: its rows and
events appended, one waiter, one answer for both), so a Map's or a
Parallel's many children checkpointing at once make one checkpoint per
group, not one each. Nothing is ever
acknowledged before it is durable. A group the database refuses for one
execution's data (`UnstorableData`) is committed again in halves until
that execution stands alone: only its checkpoint fails (`_settle`). A checkpoint refused because its
worker no longer holds the lease is logged (a warning on the
``stepwise.committer`` logger naming the execution) and counted in
`leases_lost`, so a stale writer is visible, not silent.

Once the serving task has stopped (the engine is shutting down and its
task group was cancelled), what was queued is still flushed, and a
checkpoint handed over later is committed by its own caller: an
activation finishing during shutdown never waits for a committer that
will not come back. `commit_reading` also reads the execution back after
its commit, in the same store call: a finishing checkpoint someone in this
process waits on answers that waiter (`Engine.wait`) with no describe of its own.

A group is committed by a store call on a thread (`run_db`), except on
PostgreSQL on asyncio, where a group of up to `loop_group_max` checkpoints
is sent as the one-call commit from the event loop itself (`on_loop`,
engine/store/asynccommit.py): no thread hop; a larger group's encoding and
driver work run on the thread, off the busy loop. What that
call refuses (nothing written) is committed on the careful path, which
alone reports LEASE_LOST or CONFLICT; what it cannot send goes to the
thread as before. On SQLite a group handed to the store thread together with
a start batch shares that batch's store call and transaction
(`engine/writepairs.py`), answered as it would be alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from engine.clock import Clock
from engine.store import Checkpoint, CommitResult, ExecutionRecord, Store
from engine.store.boundary import fault_of
from engine.store.errors import UnstorableData
from engine.store.work import PartlyCommitted
from engine.writepairs import WritePairs, commit_and_read, read_committed

if TYPE_CHECKING:
    from engine.store.asynccommit import Handed, LoopCommit

__all__ = ["Committer", "committed_before"]

log = logging.getLogger("stepwise.committer")


class _Waiter:
    """One checkpoint handed to the committer, and its outcome once known.

    A plain slotted class, not a dataclass: one is made for nearly every
    step's commit, on the event loop.
    """

    __slots__ = ("checkpoint", "done", "error", "joined", "read_back", "record", "result")

    def __init__(
        self, checkpoint: Checkpoint, read_back: bool = False, done: anyio.Event | None = None
    ) -> None:
        self.checkpoint = checkpoint
        # Read the execution's record back right after the commit (`commit_reading`).
        self.read_back = read_back
        # What a queued checkpoint's caller waits on (`answered`): the event of
        # everything queued with it, set once per group; None when its caller
        # commits it itself and waits on nothing.
        self.done = done
        self.result: CommitResult | None = None
        self.record: ExecutionRecord | None = None
        self.error: BaseException | None = None
        # Plain checkpoints of the same execution that joined this one while it
        # was queued, in order (`Committer._enqueue`); merged into it when taken.
        self.joined: list[Checkpoint] = []

    async def answered(self) -> None:
        """Wait until the commit's outcome (result or error) is set.

        Woken again while unanswered when its group was taken without it
        (more than `max_batch` queued): it waits on the event it was moved to.
        """
        while self.result is None and self.error is None:
            assert self.done is not None
            await self.done.wait()


def _plain(checkpoint: Checkpoint, read_back: bool) -> bool:
    """Whether the checkpoint may join, or be joined by, another of its execution."""
    return checkpoint.finish is None and not checkpoint.release and not read_back


def _merged(first: Checkpoint, later: list[Checkpoint]) -> Checkpoint:
    """One checkpoint of `first` and the `later` ones of its execution, in order.

    The same transaction would have written them all, under the same lease check.
    """
    every = [first, *later]
    return msgspec.structs.replace(
        first,
        journal=[row for c in every for row in c.journal],
        events=[event for c in every for event in c.events],
        tokens=[token for c in every for token in c.tokens],
        last_event_id=max(c.last_event_id for c in every),
    )


_COMMITTED = "stepwise_checkpoint_committed"


def committed_before(ending: BaseException) -> bool:
    """Whether `ending` (a cancellation) left a commit whose checkpoint is known durable.

    asyncio's own Task.cancel of a caller whose checkpoint was queued: the
    committer waits for the answer, then passes the cancellation on. When
    the answer was OK, what the caller drained is durable: not to be sent
    again (it would collide with its own rows).
    """
    return getattr(ending, _COMMITTED, False) is True


def _not_data(error: BaseException | None) -> bool:
    """Whether a waiter's error is a failure other than its data's (an outage: every one's)."""
    return error is not None and fault_of(error) != "data"


def _answer(batch: list[_Waiter]) -> None:
    """Wake the callers waiting on `batch`'s outcomes: each group's event once."""
    woken: set[int] = set()
    for waiter in batch:
        done = waiter.done
        if done is not None and id(done) not in woken:
            woken.add(id(done))
            done.set()


async def _nothing() -> None:
    pass


class Committer:
    """Batches checkpoints into shared transactions."""

    # Whether a checkpoint that finds the committer idle is committed by its
    # caller's task; off only to measure the hand-over (benchmarks/).
    direct: bool = True
    # The largest group sent from the event loop (`on_loop`); a larger one
    # goes to a store thread. Under a full group the loop is the worker's
    # bottleneck, and there the thread's encoding and the sync driver's wait
    # (in C, the GIL released) leave the loop free for the walks, while the
    # hop costs one hand-off per group; small groups (one execution walking
    # alone: W1) keep the loop's saving of a hop per commit.
    loop_group_max: int = 8
    # Never split a group below this many (`_group_size`).
    balance_floor: int = 8

    def __init__(
        self,
        store: Store,
        *,
        worker_id: str,
        clock: Clock,
        run_db: Callable[..., Awaitable[Any]],
        max_batch: int = 256,
        on_loop: LoopCommit | None = None,
    ) -> None:
        self._store = store
        # PostgreSQL on asyncio: the one-call commit sent from this event
        # loop, no store thread (engine/store/asynccommit.py).
        self._on_loop = on_loop
        self._careful: Handed | None = None
        # Groups balanced against the walks they overlap (`_group_size`): on
        # PostgreSQL on asyncio (`send_from_loop`; a group above
        # `loop_group_max` still goes through a store thread).
        self.balanced = on_loop is not None
        if on_loop is not None:
            # Here, not at the top: that module loads psycopg (SQLite never does).
            from engine.store.asynccommit import Handed

            self._careful = Handed.CAREFUL
        self._worker_id = worker_id
        self._clock = clock
        self._run_db = run_db
        # SQLite: a group goes with a start batch waiting beside it (engine/writepairs.py).
        self._pairs = WritePairs.of(store, run_db, "commit")
        self._max_batch = max_batch
        self._queue: list[_Waiter] = []
        # Execution id → its plain checkpoint's waiter still in `_queue`, if any.
        self._joinable: dict[str, _Waiter] = {}
        # The event every checkpoint queued since the last group was taken waits on.
        self._queued_done: anyio.Event | None = None
        self._wakeup = anyio.Event()
        self._stopped = False
        # Whether a task is committing (one commit at a time: `_take_turn`),
        # and what a task waiting for the turn waits on meanwhile. A flag, not
        # an anyio Lock: the direct path takes and gives it every commit, and
        # the Lock's owner checks cost the loop two `current_task` a commit.
        self._committing = False
        self._turn_free: anyio.Event | None = None
        # Checkpoints of the group answered last: their activations walk on now.
        self._answered = 0
        self.commits = 0
        self.checkpoints = 0
        self.leases_lost = 0

    def send_from_loop(self) -> Callable[[], Awaitable[None]]:
        """Send groups from the running event loop from now on, where the store can (PostgreSQL).

        Returns what closes its connection: the Engine calls it at exit,
        once the committer and the activations have stopped.
        """
        on_loop = self._store.loop_commit()
        if on_loop is None:
            return _nothing
        from engine.store.asynccommit import Handed  # loads psycopg: PostgreSQL only

        self._on_loop, self._careful = on_loop, Handed.CAREFUL
        self.balanced = True
        return on_loop.aclose

    async def connect(self) -> None:
        """Open the event loop's commit connection now (an Engine's start), if it has one."""
        if self._on_loop is not None:
            await self._on_loop.connect(self._worker_id, self._clock.now())

    @property
    def on_loop(self) -> LoopCommit | None:
        """The one-call commit sent from the event loop, if this committer has one.

        Its `commits` counts the groups it committed; its `backend_pid` is
        its connection's server process.
        """
        return self._on_loop

    @property
    def queued(self) -> int:
        """How many checkpoints are handed over and wait for a group (none taken into one yet).

        A checkpoint joined to its execution's queued one counts too; one
        committed by its caller (the committer idle) never queues. An
        observable for tests and metrics: the next groups carry these.
        """
        return sum(1 + len(waiter.joined) for waiter in self._queue)

    async def commit(self, checkpoint: Checkpoint) -> CommitResult:
        """Make `checkpoint` durable; returns OK, LEASE_LOST or CONFLICT."""
        return (await self._submit(checkpoint)).result  # type: ignore[return-value]

    async def commit_reading(
        self, checkpoint: Checkpoint
    ) -> tuple[CommitResult, ExecutionRecord | None]:
        """`commit`, and the execution's record as a describe reads it once the commit is durable.

        The read shares the commit's store call (no second thread hop);
        the record is None when the commit was not OK or the read failed.
        """
        waiter = await self._submit(checkpoint, read_back=True)
        assert waiter.result is not None
        return waiter.result, waiter.record

    async def _submit(self, checkpoint: Checkpoint, read_back: bool = False) -> _Waiter:
        # Once handed over, a checkpoint's outcome must be known before its
        # activation moves on, even if that activation is being cancelled.
        # Committed here, it is handed over with no await before `_flush`,
        # whose store call is shielded; queued, a cancellation of its wait
        # waits again, shielded, and is then left to land at the next await.
        if self._stopped:
            waiter = _Waiter(checkpoint, read_back)
            await self._flush([waiter])
        elif self.direct and not self._queue and not self._committing:
            waiter = _Waiter(checkpoint, read_back)
            self._committing = True  # free: nothing awaited since it was read
            try:
                await self._flush([waiter])
            finally:
                self._give_turn()
        else:
            waiter = self._enqueue(checkpoint, read_back)
            try:
                await waiter.answered()
            except anyio.get_cancelled_exc_class() as cancelled:
                # Cancelled while queued: the outcome first, waited for shielded
                # (no shielded scope per checkpoint when nothing cancels).
                with anyio.CancelScope(shield=True):
                    await waiter.answered()
                if anyio.current_effective_deadline() != -math.inf:
                    # Not a cancel scope's (asyncio's own Task.cancel): passed
                    # on, saying whether the checkpoint is known durable.
                    if waiter.error is None and waiter.result is CommitResult.OK:
                        setattr(cancelled, _COMMITTED, True)
                    raise
                # A cancel scope's: it is still cancelled and cancels the
                # caller's next await, as when the whole wait was shielded.
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter

    def _group_done(self) -> anyio.Event:
        """The event the queued checkpoints' callers wait on, set when their group commits."""
        if self._queued_done is None:
            self._queued_done = anyio.Event()
        return self._queued_done

    def _enqueue(self, checkpoint: Checkpoint, read_back: bool) -> _Waiter:
        """Queue `checkpoint`, or join it to its execution's queued one; the waiter to await."""
        execution_id = checkpoint.execution_id
        if _plain(checkpoint, read_back):
            queued = self._joinable.get(execution_id)
            if queued is not None:
                queued.joined.append(checkpoint)
                return queued
            waiter = _Waiter(checkpoint, read_back, done=self._group_done())
            self._joinable[execution_id] = waiter
        else:
            waiter = _Waiter(checkpoint, read_back, done=self._group_done())
            # Nothing queued before it may take what comes after it.
            self._joinable.pop(execution_id, None)
        self._queue.append(waiter)
        self._wakeup.set()
        return waiter

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
            await self._take_turn()
            try:
                # Taken after the turn, so what queued while waiting joins the group.
                take = self._group_size()
                batch, self._queue = self._queue[:take], self._queue[take:]
                # What queues from now on waits on an event of its own; so does
                # what is left queued (woken by this group's, it waits again).
                self._queued_done = None
                if self._queue:
                    left = self._group_done()
                    for waiter in self._queue:
                        waiter.done = left
                for waiter in batch:  # taken: nothing joins them any more
                    if self._joinable.get(waiter.checkpoint.execution_id) is waiter:
                        del self._joinable[waiter.checkpoint.execution_id]
                    if waiter.joined:
                        waiter.checkpoint = _merged(waiter.checkpoint, waiter.joined)
                await self._flush(batch)
            finally:
                self._give_turn()

    async def _take_turn(self) -> None:
        """Wait until no task commits, then commit: as an anyio Lock's `acquire` did.

        Taken at once when free, then one shielded yield (as the Lock's), so
        what other tasks queue in this loop iteration joins the group.
        """
        await checkpoint_if_cancelled()
        if not self._committing:
            self._committing = True
            try:
                await cancel_shielded_checkpoint()
            except BaseException:  # asyncio's own Task.cancel: the turn given back, as the Lock's
                self._give_turn()
                raise
            return
        while self._committing:
            if self._turn_free is None:
                self._turn_free = anyio.Event()
            await self._turn_free.wait()
        self._committing = True

    def _give_turn(self) -> None:
        self._committing = False
        free, self._turn_free = self._turn_free, None
        if free is not None:
            free.set()

    def _group_size(self) -> int:
        """How many queued checkpoints the next group takes: at most `max_batch`, balanced.

        While a group commits, the loop walks the activations the last one
        answered; their checkpoints make the next group. Taking every queued
        one lets that alternate between one large group and a few stragglers
        (W1c: 63 and 1 of 64 activations), the loop idle through the large
        one's commit. A group of about half of what is in play — queued plus
        just answered and walking — lets the two halves take turns, each
        walked while the other commits. Its cost: a burst queued behind a
        lone commit goes in two round trips, not one. Neither part is ever
        below `balance_floor`: a smaller rest goes with the group. Only
        where `balanced`: PostgreSQL on asyncio (`send_from_loop`; the halves,
        above `loop_group_max`, go through a store thread), whose server
        commits on a core of its own while the loop walks; SQLite's
        writer is a thread of this process, its commits sharing the
        interpreter with the walks.
        """
        queued = len(self._queue)
        answered = self._answered
        floor = self.balance_floor
        if not self.balanced or not answered:
            return self._max_batch
        take = max(-(-(queued + answered) // 2), floor)
        if queued - take < floor:  # what would be left is too few for a round trip of its own
            return self._max_batch
        return min(self._max_batch, take)

    async def _flush(self, batch: list[_Waiter]) -> None:
        await self._settle(batch, {})
        self._answered = len(batch)
        _answer(batch)

    async def _settle(self, batch: list[_Waiter], refused: dict[str, BaseException]) -> None:
        """Commit `batch` and set each waiter's outcome; isolate an execution whose data is refused.

        A group the database refused for one execution's data (`UnstorableData`:
        nothing of the group written) is committed again in halves, down to
        that execution alone, so only it gets the error; a later checkpoint of
        an execution already refused (`refused`) gets the same error unsent.
        Any other failure is every waiter's.
        """
        if refused:
            for waiter in batch:
                error = refused.get(waiter.checkpoint.execution_id)
                if error is not None:
                    waiter.error = error
            batch = [w for w in batch if w.error is None]
            if not batch:
                return
        checkpoints = [w.checkpoint for w in batch]
        read_back = [w.checkpoint.execution_id for w in batch if w.read_back]
        records: dict[str, ExecutionRecord] = {}
        try:
            with anyio.CancelScope(shield=True):
                results, records = await self._commit(checkpoints, read_back)
        except PartlyCommitted as partly:
            # Committed one by one: the settled ones must not be sent again.
            for waiter, outcome in zip(batch, partly.outcomes, strict=True):
                if isinstance(outcome, UnstorableData):
                    refused[waiter.checkpoint.execution_id] = waiter.error = outcome
            pairs = zip(batch, partly.outcomes, strict=True)
            settled = [(w, o) for w, o in pairs if w.error is None]
            self._settled([w for w, _ in settled], [o for _, o in settled], {})
            return
        except Exception as failure:
            if fault_of(failure) == "data":
                if len(batch) > 1:
                    middle = len(batch) // 2
                    await self._settle(batch[:middle], refused)
                    # Not the data's fault (an outage): the rest would meet it too.
                    outage = next((w.error for w in batch[:middle] if _not_data(w.error)), None)
                    if outage is None:
                        await self._settle(batch[middle:], refused)
                    else:
                        for waiter in batch[middle:]:
                            waiter.error = outage
                    return
                refused[batch[0].checkpoint.execution_id] = failure
            for waiter in batch:
                waiter.error = failure
            return
        self._settled(batch, results, records)

    def _settled(
        self,
        batch: list[_Waiter],
        results: Sequence[CommitResult | UnstorableData],
        records: dict[str, ExecutionRecord],
    ) -> None:
        """Set each committed waiter's result (and record, if it asked to read it back)."""
        self.commits += 1
        self.checkpoints += len(batch)
        for waiter, result in zip(batch, results, strict=True):
            assert isinstance(result, CommitResult)
            if result is CommitResult.LEASE_LOST:
                self.leases_lost += 1
                log.warning(
                    "checkpoint of %s refused: lease lost (worker %s)",
                    waiter.checkpoint.execution_id,
                    self._worker_id,
                )
            waiter.result = result
            if waiter.read_back:
                waiter.record = records.get(waiter.checkpoint.execution_id)

    async def _commit(
        self, checkpoints: list[Checkpoint], read_back: list[str]
    ) -> tuple[list[CommitResult], dict[str, ExecutionRecord]]:
        """Commit the group (called shielded): on the loop's connection if it can, else a thread."""
        now = self._clock.now()
        carefully = False
        on_loop = self._on_loop
        if (
            on_loop is not None
            and self._store.raw_commit_writes
            and len(checkpoints) <= self.loop_group_max
        ):
            done = await on_loop.commit(checkpoints, read_back, worker_id=self._worker_id, now=now)
            if isinstance(done, tuple):
                results, read = done
                if all(eid in read for eid in read_back):
                    return results, read
                return results, await self._run_db(
                    read_committed, self._store, checkpoints, results, read, read_back
                )
            carefully = done is self._careful
        pairs = self._pairs
        if pairs is not None and not carefully and pairs.takes_commit(checkpoints):
            return await pairs.commit(checkpoints, read_back, worker_id=self._worker_id, now=now)
        if read_back or carefully:
            answer: tuple[list[CommitResult], dict[str, ExecutionRecord]] = await self._run_db(
                commit_and_read,
                self._store,
                checkpoints,
                read_back,
                worker_id=self._worker_id,
                now=now,
                carefully=carefully,
            )
            return answer
        results = await self._run_db(
            self._store.commit, checkpoints, worker_id=self._worker_id, now=now
        )
        return results, {}
