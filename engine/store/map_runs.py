"""Distributed Map's Map Runs: creating one, loading its children, reading, updating, aborting.

A Map Run row (`schema.map_runs`) belongs to one attempt of one Map state
of a parent execution; its children (`schema.map_run_children`, one per
item or batch, in item order) wait PENDING with their input until released.
The parent creates the run (`create_map_run`, idempotent on its id, which
the parent derives from its own ARN and the state's journal key), streams
the children in chunks (`add_map_run_children`: each chunk one transaction
that also moves the counts, so a crash mid-load resumes after the last
chunk written), then `start_map_run` marks it loaded and releases the first
MaxConcurrency children. From then on `map_run_hook.children_finished`,
called by the commit path, keeps it going. `abort_map_runs` is the stop of
the parent; `update_map_run` is UpdateMapRun (a raised MaxConcurrency
releases more children at once); `redrive_map_run` reruns, when the parent
is redriven, only the children that did not succeed (redriven in place, as
AWS does: same executions, ``ExecutionRedriven``). Reads: `get_map_run`,
`list_map_runs`, `map_run_item_counts`, `map_run_redrive_counts`,
`children_as_shown` (``PENDING_REDRIVE`` for those waiting),
`map_run_children_page` (the children in item order with their
executions' outcomes, a page at a time, for the parent's output and result
files).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa

from engine.store.base import StoreBase
from engine.store.checkpoints import lock_work
from engine.store.codec import unescape_clear
from engine.store.errors import ResourceNotFound
from engine.store.map_run_hook import (
    end_run,
    release_children,
    running_children,
    stop_running_children,
    threshold_exceeded,
)
from engine.store.records import ExecutionRecord
from engine.store.redrive import redrive_status
from engine.store.rows import execution_record
from engine.store.schema import executions, map_run_children, map_runs
from statemachine.errors import StepwiseError

__all__ = [
    "PENDING_REDRIVE",
    "MapRunChild",
    "MapRunRecord",
    "MapRunRedriveCounts",
    "MapRunStore",
    "MapRunUpdateRefused",
]


# AWS's status of a Map Run child waiting for its redriven run to reopen it. Never
# stored: the child's row keeps the status it ended with until it is reopened.
PENDING_REDRIVE = "PENDING_REDRIVE"
_ENDED_UNSUCCESSFULLY = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})


class MapRunUpdateRefused(StepwiseError):
    """UpdateMapRun on a Map Run that has ended (AWS: CANNOT_UPDATE_COMPLETED_MAP_RUN)."""

    aws_code = "ValidationException"


class MapRunRecord(msgspec.Struct, frozen=True):
    """One Map Run as DescribeMapRun reports it (execution counts kept; item counts summed)."""

    map_run_id: str
    arn: str
    execution_id: str
    state_key: str
    attempt: int
    machine: str
    version: int
    queue: str
    status: str
    start_date: datetime
    stop_date: datetime | None
    max_concurrency: int
    tolerated_failure_percentage: float | None
    tolerated_failure_count: int | None
    loaded: bool
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    timed_out: int
    aborted: int
    results_written: int
    error: str | None
    cause: str | None
    redrive_count: int = 0
    redrive_date: datetime | None = None


class MapRunRedriveCounts(msgspec.Struct, frozen=True):
    """A run's redrive counts as DescribeMapRun has them: children, and the items they carry."""

    pending_redrive: int = 0
    pending_redrive_items: int = 0
    failures_not_redrivable: int = 0
    failures_not_redrivable_items: int = 0


class MapRunChild(msgspec.Struct, frozen=True):
    """One child of a Map Run in item order, with its execution's outcome (None: never started)."""

    index: int
    execution_id: str
    status: str
    item_count: int
    input: str
    start_date: datetime | None = None
    stop_date: datetime | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None


def _record(row: Any) -> MapRunRecord:
    values = {name: getattr(row, name) for name in MapRunRecord.__struct_fields__}
    values["loaded"] = bool(values["loaded"])
    return MapRunRecord(**values)


class MapRunStore(StoreBase):
    """The store's Map Run calls (a part of `Store`)."""

    def create_map_run(
        self,
        *,
        map_run_id: str,
        arn: str,
        execution_id: str,
        state_key: str,
        attempt: int,
        machine: str,
        version: int,
        queue: str,
        now: datetime,
        max_concurrency: int,
        tolerated_failure_percentage: float | None,
        tolerated_failure_count: int | None,
    ) -> MapRunRecord:
        """Record a new Map Run (RUNNING, not loaded, no children), or return the existing one."""
        values = {
            "map_run_id": map_run_id,
            "arn": arn,
            "execution_id": execution_id,
            "state_key": state_key,
            "attempt": attempt,
            "machine": machine,
            "version": version,
            "queue": queue,
            "status": "RUNNING",
            "start_date": now,
            "max_concurrency": max_concurrency,
            "tolerated_failure_percentage": tolerated_failure_percentage,
            "tolerated_failure_count": tolerated_failure_count,
            "loaded": False,
            "total": 0,
            "pending": 0,
            "running": 0,
            "succeeded": 0,
            "failed": 0,
            "timed_out": 0,
            "aborted": 0,
            "results_written": 0,
            "redrive_count": 0,
        }
        with self._write() as conn:
            conn.execute(
                self._backend.insert_ignoring_duplicates(map_runs, values, key=["map_run_id"])
            )
            row = conn.execute(sa.select(map_runs).where(map_runs.c.map_run_id == map_run_id)).one()
        return _record(row)

    def add_map_run_children(
        self, map_run_id: str, children: Sequence[tuple[int, str, str, int]]
    ) -> None:
        """Add PENDING children (index, execution id, input JSON, item count) in one transaction.

        The caller adds them in index order, after the run's `total`; the
        counts move with them, so a crash leaves a prefix to resume after.
        """
        if not children:
            return
        rows = [
            {
                "map_run_id": map_run_id,
                "item_index": index,
                "execution_id": execution_id,
                "status": "PENDING",
                "item_count": item_count,
                "input": self._codec.seal(text),
            }
            for index, execution_id, text, item_count in children
        ]
        with self._write() as conn:
            conn.execute(
                sa.select(map_runs.c.map_run_id)
                .where(map_runs.c.map_run_id == map_run_id)
                .with_for_update()
            ).one()
            conn.execute(sa.insert(map_run_children), rows)
            conn.execute(
                sa.update(map_runs)
                .where(map_runs.c.map_run_id == map_run_id)
                .values(total=map_runs.c.total + len(rows), pending=map_runs.c.pending + len(rows))
            )

    def start_map_run(self, map_run_id: str, *, now: datetime) -> MapRunRecord:
        """Mark the run loaded and release its first children (an empty run succeeds at once)."""
        with self._write() as conn:
            run = self._locked(conn, map_run_id)
            wake = False
            if not run.loaded and run.status == "RUNNING":
                conn.execute(
                    sa.update(map_runs)
                    .where(map_runs.c.map_run_id == map_run_id)
                    .values(loaded=True)
                )
                if run.total == 0:
                    end_run(conn, run, "SUCCEEDED", now)
                else:
                    release_children(conn, run, now, self._codec)
                wake = True
            if wake:
                self._backend.notify_in(conn)
            row = self._locked(conn, map_run_id)
        if wake:
            self._waker.wake_local()
        return _record(row)

    @staticmethod
    def _locked(conn: Any, map_run_id: str) -> Any:
        row = conn.execute(
            sa.select(map_runs).where(map_runs.c.map_run_id == map_run_id).with_for_update()
        ).first()
        if row is None:
            raise ResourceNotFound(f"Map Run Does Not Exist: '{map_run_id}'")
        return row

    def get_map_run(self, ref: str) -> MapRunRecord:
        """The Map Run by its ARN or id; raises ResourceNotFound."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(map_runs).where(
                    sa.or_(map_runs.c.arn == ref, map_runs.c.map_run_id == ref)
                )
            ).first()
        if row is None:
            raise ResourceNotFound(f"Map Run Does Not Exist: '{ref}'")
        return _record(row)

    def list_map_runs(self, execution_id: str) -> list[MapRunRecord]:
        """The Map Runs of a parent execution, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(map_runs)
                .where(map_runs.c.execution_id == execution_id)
                .order_by(map_runs.c.start_date.desc(), map_runs.c.map_run_id.desc())
            )
            return [_record(row) for row in rows]

    def map_run_item_counts(self, map_run_id: str) -> dict[str, int]:
        """Items (not children) by child status: batches count every item they carry."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(map_run_children.c.status, sa.func.sum(map_run_children.c.item_count))
                .where(map_run_children.c.map_run_id == map_run_id)
                .group_by(map_run_children.c.status)
            )
            return {status: int(total or 0) for status, total in rows}

    def map_run_redrive_counts(self, map_run_id: str, *, now: datetime) -> MapRunRedriveCounts:
        """AWS's ``pendingRedrive`` and ``failuresNotRedrivable`` of the run, children and items.

        Pending redrive: children of a redriven run that ran before (they
        have an execution) waiting for room under MaxConcurrency. Failures
        not redrivable: children that failed, timed out or were aborted and
        that `redrive_status` refuses now (a redrive would leave them as
        they are).
        """
        query = (
            sa.select(
                map_run_children.c.status.label("child_status"),
                map_run_children.c.item_count,
                executions,
            )
            .select_from(
                map_run_children.join(
                    executions, executions.c.execution_id == map_run_children.c.execution_id
                )
            )
            .where(
                map_run_children.c.map_run_id == map_run_id,
                map_run_children.c.status.in_(["PENDING", "FAILED", "TIMED_OUT", "ABORTED"]),
            )
        )
        pending = [0, 0]
        refused = [0, 0]
        with self._read() as conn:
            for row in conn.execute(query):
                if row.child_status == "PENDING":
                    counts = pending
                elif redrive_status(execution_record(row, self._codec), now)[1] is not None:
                    counts = refused
                else:
                    continue
                counts[0] += 1
                counts[1] += int(row.item_count)
        return MapRunRedriveCounts(
            pending_redrive=pending[0],
            pending_redrive_items=pending[1],
            failures_not_redrivable=refused[0],
            failures_not_redrivable_items=refused[1],
        )

    def children_as_shown(self, execution_ids: Sequence[str]) -> dict[str, ExecutionRecord]:
        """The Map Run children among `execution_ids`, read afresh, as AWS shows them.

        A child that ran and did not succeed goes back to PENDING in its run
        when the run is redriven, and keeps the status it ended with until
        the run has room for it under MaxConcurrency: AWS shows it
        ``PENDING_REDRIVE``. The execution and its place in the run are read
        in one statement, so a child reopened meanwhile is never shown with
        the status it had before. Ids of no child are left out.
        """
        if not execution_ids:
            return {}
        query = (
            sa.select(map_run_children.c.status.label("child_status"), executions)
            .select_from(
                map_run_children.join(
                    executions, executions.c.execution_id == map_run_children.c.execution_id
                )
            )
            .where(map_run_children.c.execution_id.in_(list(execution_ids)))
        )
        shown: dict[str, ExecutionRecord] = {}
        with self._read() as conn:
            for row in conn.execute(query):
                record = execution_record(row, self._codec)
                if row.child_status == "PENDING" and record.status in _ENDED_UNSUCCESSFULLY:
                    record = msgspec.structs.replace(record, status=PENDING_REDRIVE)
                shown[record.execution_id] = record
        return shown

    def map_run_children_page(
        self, map_run_id: str, *, after: int = -1, limit: int = 1000
    ) -> list[MapRunChild]:
        """Up to `limit` children with index above `after`, in item order, with their outcomes."""
        query = (
            sa.select(
                map_run_children.c.item_index,
                map_run_children.c.execution_id,
                map_run_children.c.status,
                map_run_children.c.item_count,
                map_run_children.c.input,
                executions.c.start_date,
                executions.c.stop_date,
                executions.c.output,
                executions.c.error,
                executions.c.cause,
            )
            .select_from(
                map_run_children.outerjoin(
                    executions, executions.c.execution_id == map_run_children.c.execution_id
                )
            )
            .where(
                map_run_children.c.map_run_id == map_run_id,
                map_run_children.c.item_index > after,
            )
            .order_by(map_run_children.c.item_index)
            .limit(limit)
        )
        codec = self._codec
        with self._read() as conn:
            return [
                MapRunChild(
                    index=row.item_index,
                    execution_id=row.execution_id,
                    status=row.status,
                    item_count=row.item_count,
                    input=codec.open(row.input),
                    start_date=row.start_date,
                    stop_date=row.stop_date,
                    output=codec.open_optional(row.output),
                    error=unescape_clear(row.error),
                    cause=codec.open_optional(row.cause),
                )
                for row in conn.execute(query)
            ]

    def map_run_results_written(self, map_run_id: str, count: int) -> None:
        """Record how many children's results the ResultWriter wrote."""
        with self._write() as conn:
            conn.execute(
                sa.update(map_runs)
                .where(map_runs.c.map_run_id == map_run_id)
                .values(results_written=count)
            )

    def abort_map_runs(self, execution_id: str, *, now: datetime) -> list[str]:
        """End the parent's RUNNING Map Runs as ABORTED (the parent is being stopped).

        Pending children never start; running ones are asked to stop.
        Returns the ARNs of the runs aborted.
        """
        aborted: list[str] = []
        with self._write() as conn:
            ids = [
                row.map_run_id
                for row in conn.execute(
                    sa.select(map_runs.c.map_run_id).where(
                        map_runs.c.execution_id == execution_id, map_runs.c.status == "RUNNING"
                    )
                )
            ]
            if not ids:
                return []
            # The parent's work row first: its terminal commit holds it while it
            # aborts these same runs (map_run_hook.parents_ended), so waiting
            # for it here, holding nothing, keeps the two from deadlocking.
            lock_work(conn, [execution_id])
            running = [
                row.execution_id
                for row in conn.execute(
                    sa.select(map_run_children.c.execution_id).where(
                        map_run_children.c.map_run_id.in_(ids),
                        map_run_children.c.status == "RUNNING",
                    )
                )
            ]
            lock_work(conn, running)  # work rows first, as the commit path locks them
            for map_run_id in sorted(ids):
                run = self._locked(conn, map_run_id)
                if run.status == "RUNNING":
                    end_run(conn, run, "ABORTED", now, stop_running=True)
                    aborted.append(run.arn)
            self._backend.notify_in(conn)
        self._waker.wake_local()
        return aborted

    def stop_map_run_children(self, map_run_id: str, *, now: datetime) -> int:
        """Ask the RUNNING children of an ended run to stop (the parent does, once woken)."""
        with self._write() as conn:
            lock_work(conn, running_children(conn, map_run_id))  # work rows first
            stopped = stop_running_children(conn, map_run_id, now)
            if stopped:
                self._backend.notify_in(conn)
        if stopped:
            self._waker.wake_local()
        return stopped

    def update_map_run(
        self,
        ref: str,
        *,
        now: datetime,
        max_concurrency: int | None = None,
        tolerated_failure_percentage: float | None = None,
        tolerated_failure_count: int | None = None,
    ) -> MapRunRecord:
        """UpdateMapRun: change a RUNNING run's limits; more concurrency starts children now.

        A lowered tolerance that the failures already exceed fails the run.
        Raises ResourceNotFound and MapRunUpdateRefused (the run has ended).
        """
        map_run_id = self.get_map_run(ref).map_run_id
        changes: dict[str, Any] = {}
        if max_concurrency is not None:
            changes["max_concurrency"] = max_concurrency
        if tolerated_failure_percentage is not None:
            changes["tolerated_failure_percentage"] = tolerated_failure_percentage
        if tolerated_failure_count is not None:
            changes["tolerated_failure_count"] = tolerated_failure_count
        with self._write() as conn:
            run = self._locked(conn, map_run_id)
            if run.status != "RUNNING":
                raise MapRunUpdateRefused(
                    f"Map Run '{run.arn}' is {run.status}: CANNOT_UPDATE_COMPLETED_MAP_RUN"
                )
            if changes:
                conn.execute(
                    sa.update(map_runs).where(map_runs.c.map_run_id == map_run_id).values(changes)
                )
                run = self._locked(conn, map_run_id)
                if threshold_exceeded(run):
                    end_run(
                        conn,
                        run,
                        "FAILED",
                        now,
                        error="States.ExceedToleratedFailureThreshold",
                        cause="The specified tolerated failure threshold was exceeded",
                    )
                elif run.loaded:
                    release_children(conn, run, now, self._codec)
                self._backend.notify_in(conn)
            row = self._locked(conn, map_run_id)
        self._waker.wake_local()
        return _record(row)

    def redrive_map_run(self, map_run_id: str, *, now: datetime) -> MapRunRecord:
        """Rerun what did not succeed in an ended Map Run (its parent is being redriven).

        As AWS does: children that failed, timed out or were aborted are
        redriven in place — the same executions, same ARNs, each with
        ``ExecutionRedriven`` and its redrive count bumped, from the step
        that did not succeed — when each is itself redrivable (a child past
        its history limit or redrive window stays as it ended); children that
        never started start. They go back to PENDING, and the run releases
        them up to its MaxConcurrency (`map_run_hook.release_children`
        reopens those that ran before), all in this transaction. Those that
        succeeded stay done. The run is RUNNING again with its redrive count
        and date set. A run still RUNNING, or one that SUCCEEDED, is returned
        as it is (a repeated call changes nothing).
        """
        with self._write() as conn:
            run = self._locked(conn, map_run_id)
            if run.status in ("RUNNING", "SUCCEEDED"):
                return _record(run)
            unfinished = sa.select(
                map_run_children.c.item_index,
                map_run_children.c.status.label("child_status"),
                executions,
            ).select_from(
                map_run_children.outerjoin(
                    executions, executions.c.execution_id == map_run_children.c.execution_id
                )
            )
            kept: dict[str, int] = {"FAILED": 0, "TIMED_OUT": 0, "ABORTED": 0}
            not_redrivable: list[tuple[int, str]] = []
            for row in conn.execute(
                unfinished.where(
                    map_run_children.c.map_run_id == map_run_id,
                    map_run_children.c.status.in_(list(kept)),
                    executions.c.execution_id.is_not(None),
                )
            ):
                # EXPRESS children are redriven by their Map Run too (AWS).
                _status, reason = redrive_status(execution_record(row, self._codec), now)
                if reason is not None:
                    kept[row.child_status] += 1
                    not_redrivable.append((row.item_index, row.child_status))
            redone = conn.execute(
                sa.update(map_run_children)
                .where(
                    map_run_children.c.map_run_id == map_run_id,
                    map_run_children.c.status.in_(list(kept)),
                )
                .values(status="PENDING")
            ).rowcount
            for index, status in not_redrivable:  # usually none: back as they ended
                conn.execute(
                    sa.update(map_run_children)
                    .where(
                        map_run_children.c.map_run_id == map_run_id,
                        map_run_children.c.item_index == index,
                    )
                    .values(status=status)
                )
            conn.execute(
                sa.update(map_runs)
                .where(map_runs.c.map_run_id == map_run_id)
                .values(
                    status="RUNNING",
                    stop_date=None,
                    error=None,
                    cause=None,
                    pending=run.pending + redone - len(not_redrivable),
                    failed=kept["FAILED"],
                    timed_out=kept["TIMED_OUT"],
                    aborted=kept["ABORTED"],
                    redrive_count=run.redrive_count + 1,
                    redrive_date=now,
                )
            )
            run = self._locked(conn, map_run_id)
            if threshold_exceeded(run):
                end_run(
                    conn,
                    run,
                    "FAILED",
                    now,
                    error="States.ExceedToleratedFailureThreshold",
                    cause="The specified tolerated failure threshold was exceeded",
                )
            elif run.pending == 0 and run.running == 0:
                end_run(conn, run, "SUCCEEDED", now)
            else:
                release_children(conn, run, now, self._codec)
            self._backend.notify_in(conn)
            row = self._locked(conn, map_run_id)
        self._waker.wake_local()
        return _record(row)

    def map_run_of_child(self, execution_id: str) -> str | None:
        """The ARN of the Map Run whose child `execution_id` is (None: not a child)."""
        with self._read() as conn:
            arn = conn.execute(
                sa.select(map_runs.c.arn)
                .select_from(
                    map_run_children.join(
                        map_runs, map_runs.c.map_run_id == map_run_children.c.map_run_id
                    )
                )
                .where(map_run_children.c.execution_id == execution_id)
            ).scalar()
        return None if arn is None else str(arn)

    def list_map_run_children(self, ref: str) -> list[str]:
        """The execution ids of a Map Run's started children, in item order."""
        map_run_id = self.get_map_run(ref).map_run_id
        with self._read() as conn:
            return [
                row.execution_id
                for row in conn.execute(
                    sa.select(map_run_children.c.execution_id)
                    .select_from(
                        map_run_children.join(
                            executions,
                            executions.c.execution_id == map_run_children.c.execution_id,
                        )
                    )
                    .where(map_run_children.c.map_run_id == map_run_id)
                    .order_by(map_run_children.c.item_index)
                )
            ]
