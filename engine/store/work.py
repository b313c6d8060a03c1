"""Work and leases: claiming due executions, renewing and releasing leases, group commit.

An execution's work row says when it is next due and which worker holds it,
until when. Workers claim due rows under a lease (`FOR UPDATE SKIP LOCKED`
on PostgreSQL), renew the leases they hold, and commit many executions'
checkpoints in one transaction, each only while its lease is held (the
lease check of `checkpoints.py`, under a row lock). A collision with a
recorded row rolls the group back and retries it one checkpoint at a time,
so the colliding one is reported CONFLICT and the others still commit; a
checkpoint whose data is refused there (`UnstorableData`) is rolled back
alone, and the group's outcomes leave in `PartlyCommitted`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from engine.store.base import StoreBase
from engine.store.boundary import mapped_errors
from engine.store.checkpoints import release_work, write_checkpoints
from engine.store.errors import UnstorableData
from engine.store.loading import load_executions
from engine.store.records import (
    DEFAULT_QUEUE,
    Checkpoint,
    CommitResult,
    ExecutionRecord,
    LoadedExecution,
)
from engine.store.schema import work_queue

__all__ = ["PartlyCommitted", "WorkStore"]


class PartlyCommitted(UnstorableData):
    """A group committed one checkpoint at a time in which some checkpoint's data was refused.

    The others are settled: `outcomes` holds each checkpoint's, in order —
    its CommitResult (committed, or refused for its lease or a collision)
    or the `UnstorableData` its own data got (that one rolled back alone).
    Sending the settled ones again would collide with their own rows.
    """

    def __init__(self, outcomes: list[CommitResult | UnstorableData]) -> None:
        refusal = next(o for o in outcomes if isinstance(o, UnstorableData))
        super().__init__(str(refusal))
        self.outcomes = outcomes


class WorkStore(StoreBase):
    """The store's calls for work, leases and group commit (a part of `Store`)."""

    # Whether a group commit first tries the backend's fast path (SQLite's raw
    # driver, PostgreSQL's pipeline); off only to compare it with the careful path.
    raw_commit_writes: bool = True

    def claim_due(
        self,
        worker_id: str,
        *,
        limit: int,
        lease_seconds: float,
        now: datetime,
        queue: str = DEFAULT_QUEUE,
    ) -> list[tuple[str, datetime]]:
        """Lease up to `limit` executions of `queue` whose work is due, oldest due first.

        Returns (execution id, when its work fell due) pairs: the due time is
        what queue-lag metrics measure. Only rows that are due (`due_at <=
        now`) and unleased or whose lease expired are taken; on PostgreSQL
        rows another claimer has locked are skipped, so two claimers never
        get the same execution.
        """
        if limit <= 0:
            return []
        with self._write() as conn:
            return self._claim(conn, worker_id, limit, lease_seconds, now, queue)

    def _claim(
        self,
        conn: Connection,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        now: datetime,
        queue: str,
    ) -> list[tuple[str, datetime]]:
        """Lease up to `limit` due rows of `queue` on `conn`: (id, due time) pairs, oldest first."""
        self._backend.claiming(conn)
        expires = now + timedelta(seconds=lease_seconds)
        free = sa.or_(work_queue.c.lease_expires_at.is_(None), work_queue.c.lease_expires_at <= now)
        due = (
            sa.select(work_queue.c.execution_id)
            .where(work_queue.c.queue == queue, work_queue.c.due_at <= now, free)
            .order_by(work_queue.c.due_at, work_queue.c.execution_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # One statement picks the due rows (skipping those another claimer
        # locked) and leases them: no round trip between the pick and the lease.
        claim = (
            sa.update(work_queue)
            .where(work_queue.c.execution_id.in_(due.scalar_subquery()))
            .values(
                lease_owner=worker_id, lease_expires_at=expires, wakeups_seen=work_queue.c.wakeups
            )
            .returning(work_queue.c.execution_id, work_queue.c.due_at)
        )
        return sorted(
            ((row.execution_id, row.due_at) for row in conn.execute(claim)),
            key=lambda pair: (pair[1], pair[0]),
        )

    def claim_due_loaded(
        self,
        worker_id: str,
        *,
        limit: int,
        lease_seconds: float,
        now: datetime,
        queue: str = DEFAULT_QUEUE,
    ) -> list[tuple[str, datetime, LoadedExecution | None]]:
        """`claim_due`, and what `Store.load` returns for each execution claimed.

        The loads are read in the claiming transaction, after the claim
        locked and leased the rows: nothing is read outside the lease, and
        an activation need not call `load` again. The lease is still checked
        at each commit, as for any claim. The loaded part is None when the
        execution cannot be loaded (no row, or its machine version is gone):
        the activation's own `load` then raises the error that says why.
        """
        if limit <= 0:
            return []
        with mapped_errors(self._display):
            fast = self._backend.fast_claim(
                self._engine,
                worker_id,
                limit=limit,
                lease_seconds=lease_seconds,
                now=now,
                queue=queue,
                codec=self._codec,
            )
        if fast is not None:
            return fast
        with self._write() as conn:
            claimed = self._claim(conn, worker_id, limit, lease_seconds, now, queue)
            loaded = load_executions(
                conn, self._backend, self._codec, [execution_id for execution_id, _ in claimed]
            )
        return [
            (execution_id, due_at, loaded.get(execution_id)) for execution_id, due_at in claimed
        ]

    def claim_execution(
        self, execution_id: str, worker_id: str, *, lease_seconds: float, now: datetime
    ) -> bool:
        """Lease one execution whether or not it is due, if its lease is free, expired or ours.

        Its queue does not matter: this is how `Engine.run` (and ``run
        --resume``) take the one execution they drive.

        Returns False when another worker holds the lease or the execution
        has no work row (it finished).
        """
        with self._write() as conn:
            row = conn.execute(
                sa.select(work_queue.c.lease_owner, work_queue.c.lease_expires_at)
                .where(work_queue.c.execution_id == execution_id)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return False
            held = row.lease_expires_at is not None and row.lease_expires_at > now
            if held and row.lease_owner != worker_id:
                return False
            conn.execute(
                sa.update(work_queue)
                .where(work_queue.c.execution_id == execution_id)
                .values(
                    lease_owner=worker_id,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    wakeups_seen=work_queue.c.wakeups,
                )
            )
        return True

    def renew(
        self, worker_id: str, execution_ids: Sequence[str], *, lease_seconds: float, now: datetime
    ) -> set[str]:
        """Extend the worker's unexpired leases; return the ids it still holds.

        An id missing from the result was lost (expired, taken over, or the
        execution finished): the worker must stop working on it. A row that
        a commit holds locked at this moment is not waited for: it counts as
        held if its last committed state says so, and is renewed next time.
        """
        if not execution_ids:
            return set()
        mine = sa.and_(
            work_queue.c.execution_id.in_(list(execution_ids)),
            work_queue.c.lease_owner == worker_id,
            work_queue.c.lease_expires_at > now,
        )
        with self._write() as conn:
            self._backend.claiming(conn)
            # A row another transaction holds (a commit, which locks its
            # group's rows and then, ending a Map parent, its children's) is
            # skipped, not waited for: waiting could close a cycle with that
            # commit, and PostgreSQL would abort one ("deadlock detected").
            held = {
                row.execution_id
                for row in conn.execute(
                    sa.select(work_queue.c.execution_id)
                    .where(mine)
                    .order_by(work_queue.c.execution_id)
                    .with_for_update(skip_locked=True)
                )
            }
            if held:
                conn.execute(
                    sa.update(work_queue)
                    .where(work_queue.c.execution_id.in_(held))
                    .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
                )
            busy = set(execution_ids) - held
            if busy:
                # Skipped rows that are still this worker's by their last
                # committed state stay held; they are renewed next time.
                held |= {
                    row.execution_id
                    for row in conn.execute(
                        sa.select(work_queue.c.execution_id).where(
                            mine, work_queue.c.execution_id.in_(busy)
                        )
                    )
                }
        return held

    def release(
        self,
        execution_id: str,
        worker_id: str,
        *,
        due_at: datetime | None,
        now: datetime | None = None,
        leased_until: datetime | None = None,
    ) -> None:
        """Give back the worker's lease; the work is next due at `due_at` (None: on a signal).

        A callback or stop that arrived while the lease was held makes the
        work due at `now` instead (the caller's clock; the wall clock when
        omitted). Does nothing if the worker no longer holds the lease, nor,
        given `leased_until`, if its lease is not the one that ends then
        (one the worker took since: a claim, not the caller's start).
        """
        now = now or datetime.now(UTC)
        with self._write() as conn:
            row = conn.execute(
                sa.select(work_queue)
                .where(work_queue.c.execution_id == execution_id)
                .with_for_update()
            ).first()
            if row is None or row.lease_owner != worker_id:
                return
            if leased_until is not None and row.lease_expires_at != leased_until:
                return
            due = release_work(conn, row, due_at, now)
            wake = due is not None and due <= now
            if wake:
                self._backend.notify_in(conn)
        if wake:
            self._waker.wake_local()

    # -- group commit -----------------------------------------------------

    def commit(
        self, checkpoints: Sequence[Checkpoint], *, worker_id: str, now: datetime
    ) -> list[CommitResult]:
        """Write many executions' checkpoints in one transaction; one result per checkpoint.

        Each checkpoint is written only if `worker_id` still holds that
        execution's unexpired lease (checked under a row lock), else it is
        LEASE_LOST and nothing of it is written. If any row collides with one
        already recorded (same event id or journal key: another worker got
        there first), the group is rolled back and retried one checkpoint per
        transaction, so the others still commit and the colliding one is
        reported CONFLICT, never recorded twice. Raises StoreUnavailable when
        the database fails.
        """
        if not checkpoints:
            return []
        fast = None
        if self.raw_commit_writes:
            with mapped_errors(self._display):
                fast = self._backend.fast_commit(
                    self._engine, checkpoints, worker_id, now, self._codec
                )
        if fast is not None:
            results, wake = fast
            if wake:
                self._waker.wake_local()
            return results
        return self._careful_commit(checkpoints, worker_id, now)

    def commit_reading(
        self,
        checkpoints: Sequence[Checkpoint],
        read_back: Sequence[str],
        *,
        worker_id: str,
        now: datetime,
    ) -> tuple[list[CommitResult], dict[str, ExecutionRecord]]:
        """`commit`, and the records of `read_back`'s executions if read with it.

        Where the backend's fast commit can (PostgreSQL's one call), the
        records are read in the commit's own round trip, after it is
        durable: what `get_execution` would return then. Records come only
        for executions whose checkpoint is OK, and maybe not for all of
        them (never on the careful path): the caller reads the rest itself.
        Raises StoreUnavailable when the database fails.
        """
        if not read_back or not checkpoints:
            return self.commit(checkpoints, worker_id=worker_id, now=now), {}
        fast = None
        if self.raw_commit_writes:
            with mapped_errors(self._display):
                fast = self._backend.fast_commit_reading(
                    self._engine, checkpoints, read_back, worker_id, now, self._codec
                )
        if fast is None:
            return self._careful_commit(checkpoints, worker_id, now), {}
        results, wake, records = fast
        if wake:
            self._waker.wake_local()
        return results, records

    def _careful_commit(
        self, checkpoints: Sequence[Checkpoint], worker_id: str, now: datetime
    ) -> list[CommitResult]:
        """The group in one transaction under the lease checks of `write_checkpoints`."""
        try:
            with self._write() as conn:
                results, wake = write_checkpoints(
                    conn,
                    checkpoints,
                    worker_id,
                    now,
                    self._codec,
                    blocks=self._backend.block_writes,
                )
                if wake:
                    self._backend.notify_in(conn)
        except sa_exc.IntegrityError:
            results, wake = self._commit_one_by_one(checkpoints, worker_id, now)
        if wake:
            self._waker.wake_local()
        return results

    def _commit_one_by_one(
        self, checkpoints: Sequence[Checkpoint], worker_id: str, now: datetime
    ) -> tuple[list[CommitResult], bool]:
        """Each checkpoint in a transaction of its own; PartlyCommitted if data was refused."""
        results: list[CommitResult] = []
        refused: dict[int, UnstorableData] = {}
        wake = False
        for index, checkpoint in enumerate(checkpoints):
            try:
                with self._write() as conn:
                    (result,), woke = write_checkpoints(
                        conn,
                        [checkpoint],
                        worker_id,
                        now,
                        self._codec,
                        blocks=self._backend.block_writes,
                    )
                    if woke:
                        self._backend.notify_in(conn)
            except sa_exc.IntegrityError:
                result, woke = CommitResult.CONFLICT, False
            except UnstorableData as refusal:  # this one's transaction rolled back, no other's
                refused[index] = refusal
                result, woke = CommitResult.CONFLICT, False  # a placeholder, replaced below
            results.append(result)
            wake = wake or woke
        if refused:
            if wake:
                self._waker.wake_local()
            raise PartlyCommitted(
                [refused.get(index, result) for index, result in enumerate(results)]
            )
        return results, wake

    def work_due_at(self, execution_id: str) -> tuple[bool, datetime | None]:
        """(queued, due_at) of one execution's work row; queued False when it has none."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(work_queue.c.due_at).where(work_queue.c.execution_id == execution_id)
            ).first()
        if row is None:
            return False, None
        return True, row.due_at
