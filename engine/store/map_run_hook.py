"""Map Runs inside an open transaction: releasing children, counting their ends, ending the run.

Kept apart from `map_runs.py` (the store's Map Run calls) because the commit
path (`checkpoints.py`) calls `children_finished` in the same transaction as
the child's ``Execution<Status>`` event, as `outbox_hook.py` is called for
alerts: a child that ends is counted, the next pending child is started
(its execution row, ``ExecutionStarted`` and work row), and when the run is
over — every child done, or the tolerated failures exceeded (the pending
children are then ABORTED; the woken parent asks the running ones to stop)
— the parent's work is made due, so it wakes on any worker. A child is known by
its ARN alone (`is_child`): its machine is the hidden ``<machine>/<label>``,
and ``/`` is never in a user's machine name, so the commit path pays
nothing for executions that are not children. The same call ends the Map
Runs of a parent that ends FAILED, TIMED_OUT or ABORTED (`parents_ended`),
in the commit that records the parent's end: no crash can leave a run
RUNNING, or its children running, under an ended parent. A parent that
SUCCEEDED has no run still going. `takes_hook` tells a faster commit path
which ends it must leave to this one. Lock order is the commit path's: work
rows first (the committing executions', then the stopped children's, each
in id order), then the Map Run rows in id order, then the parent's work row.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store.codec import PayloadCodec
from engine.store.reopen import reopen
from engine.store.rows import execution_record
from engine.store.schema import (
    executions,
    history_events,
    map_run_children,
    map_runs,
    work_queue,
)

__all__ = [
    "AWS_MAX_CONCURRENCY",
    "children_finished",
    "end_run",
    "is_child",
    "parents_ended",
    "release_children",
    "running_children",
    "stop_running_children",
    "takes_hook",
    "threshold_exceeded",
]

# AWS runs at most 10,000 children of one Map Run at once (MaxConcurrency 0 or absent).
AWS_MAX_CONCURRENCY = 10_000
_COUNT_OF = {
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "TIMED_OUT": "timed_out",
    "ABORTED": "aborted",
}
# A parent ending with one of these takes its running Map Runs down with it.
_ENDS_RUNS = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
_THRESHOLD_ERROR = "States.ExceedToleratedFailureThreshold"
_THRESHOLD_CAUSE = "The specified tolerated failure threshold was exceeded"
_ROLE_ARN = "arn:aws:iam::000000000000:role/stepwise"


def is_child(execution_id: str) -> bool:
    """Whether `execution_id` is a Map Run's child: its machine is ``<machine>/<label>``."""
    _, found, rest = execution_id.partition(":execution:")
    return bool(found) and "/" in rest.rsplit(":", 1)[0]


def takes_hook(execution_id: str, status: str) -> bool:
    """Whether an execution ending with `status` needs `children_finished` in its commit.

    A child's end is always counted; an unsuccessful end may be a parent's
    whose Map Runs must end with it (one indexed read finds out).
    """
    return status in _ENDS_RUNS or is_child(execution_id)


def threshold_exceeded(run: Any) -> bool:
    """Whether the run's failures (failed, timed out, aborted) exceed what it tolerates.

    Neither tolerance set: one failure is too many (AWS's defaults are 0).
    """
    failures = int(run.failed + run.timed_out + run.aborted)
    count, percentage = run.tolerated_failure_count, run.tolerated_failure_percentage
    if count is None and percentage is None:
        return failures > 0
    if count is not None and failures > count:
        return True
    return bool(
        percentage is not None and run.total > 0 and failures * 100.0 / run.total > percentage
    )


def _limit(run: Any) -> int:
    return int(run.max_concurrency) or AWS_MAX_CONCURRENCY


def release_children(conn: Connection, run: Any, now: datetime, codec: PayloadCodec) -> int:
    """Start pending children of the locked Map Run `run` up to its MaxConcurrency.

    Each becomes an execution (RUNNING, ``ExecutionStarted``, a work row due
    now on the run's queue) — or, a child of a redriven run that ran before,
    is redriven in place (`reopen.reopen`: same ARN, ``ExecutionRedriven``,
    its redrive count bumped). Returns how many were started.
    """
    room = min(_limit(run) - run.running, run.pending)
    if room <= 0:
        return 0
    rows = list(
        conn.execute(
            sa.select(map_run_children)
            .where(
                map_run_children.c.map_run_id == run.map_run_id,
                map_run_children.c.status == "PENDING",
            )
            .order_by(map_run_children.c.item_index)
            .limit(room)
        )
    )
    if not rows:
        return 0
    # Children of a redriven run that ran before are redriven in place (same ARN);
    # a run never redriven has none, and its commits pay no read for them.
    redriven = (
        {
            row.execution_id: execution_record(row, codec)
            for row in conn.execute(
                sa.select(executions).where(
                    executions.c.execution_id.in_([row.execution_id for row in rows])
                )
            )
        }
        if run.redrive_count
        else {}
    )
    version_arn = f"{run.arn.split(':mapRun:', 1)[0]}:stateMachine:{run.machine}:{run.version}"
    execution_rows, event_rows, work_rows = [], [], []
    for row in rows:
        if row.execution_id in redriven:
            reopen(conn, redriven[row.execution_id], now, codec)
            continue
        name = row.execution_id.rsplit(":", 1)[1]
        details = {
            "input": codec.open(row.input),
            "inputDetails": {"truncated": False},
            "roleArn": _ROLE_ARN,
            "stateMachineVersionArn": version_arn,
        }
        execution_rows.append(
            {
                "execution_id": row.execution_id,
                "name": name,
                "machine": run.machine,
                "version": run.version,
                "status": "RUNNING",
                "input": row.input,
                "start_date": now,
                "trace_id": secrets.token_hex(16),
                "stop_requested": False,
                "last_event_id": 1,
                "queue": run.queue,
                "redrive_count": 0,
            }
        )
        event_rows.append(
            {
                "execution_id": row.execution_id,
                "event_id": 1,
                "previous_event_id": 0,
                "type": "ExecutionStarted",
                "timestamp": now,
                "details": codec.seal(msgspec.json.encode(details).decode()),
            }
        )
        work_rows.append(
            {
                "execution_id": row.execution_id,
                "queue": run.queue,
                "due_at": now,
                "wakeups": 0,
                "wakeups_seen": 0,
            }
        )
    if execution_rows:
        conn.execute(sa.insert(executions), execution_rows)
        conn.execute(sa.insert(history_events), event_rows)
        conn.execute(sa.insert(work_queue), work_rows)
    conn.execute(
        sa.update(map_run_children)
        .where(
            map_run_children.c.map_run_id == run.map_run_id,
            map_run_children.c.item_index.in_([row.item_index for row in rows]),
        )
        .values(status="RUNNING")
    )
    started = len(rows)
    conn.execute(
        sa.update(map_runs)
        .where(map_runs.c.map_run_id == run.map_run_id)
        .values(pending=map_runs.c.pending - started, running=map_runs.c.running + started)
    )
    return started


def _signal(conn: Connection, execution_id: str, now: datetime) -> None:
    conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.execution_id == execution_id)
        .values(due_at=now, wakeups=work_queue.c.wakeups + 1)
    )


def end_run(
    conn: Connection,
    run: Any,
    status: str,
    now: datetime,
    *,
    error: str | None = None,
    cause: str | None = None,
    stop_running: bool = False,
) -> None:
    """End the locked Map Run `run` with `status`, abort what has not finished, wake the parent.

    Pending children become ABORTED (they never start). With `stop_running`
    the running ones get a stop request their workers carry out (their ends
    are counted then) — only for a caller that locked their work rows before
    the run's, as the commit path locks them; otherwise the woken parent
    stops them (`stop_running_children`), so no two transactions wait on
    each other's rows.
    """
    aborted = conn.execute(
        sa.update(map_run_children)
        .where(
            map_run_children.c.map_run_id == run.map_run_id,
            map_run_children.c.status == "PENDING",
        )
        .values(status="ABORTED")
    ).rowcount
    if stop_running:
        stop_running_children(conn, run.map_run_id, now)
    conn.execute(
        sa.update(map_runs)
        .where(map_runs.c.map_run_id == run.map_run_id)
        .values(
            status=status,
            stop_date=now,
            error=error,
            cause=cause,
            pending=map_runs.c.pending - aborted,
            aborted=map_runs.c.aborted + aborted,
        )
    )
    _signal(conn, run.execution_id, now)


def running_children(conn: Connection, map_run_id: str) -> list[str]:
    """The execution ids of the run's RUNNING children."""
    return [
        row.execution_id
        for row in conn.execute(
            sa.select(map_run_children.c.execution_id).where(
                map_run_children.c.map_run_id == map_run_id,
                map_run_children.c.status == "RUNNING",
            )
        )
    ]


def stop_running_children(conn: Connection, map_run_id: str, now: datetime) -> int:
    """Ask the run's RUNNING children to stop (their workers abort them); returns how many.

    The caller has locked their work rows first (`checkpoints.lock_work`).
    """
    running = running_children(conn, map_run_id)
    if running:
        conn.execute(
            sa.update(executions)
            .where(
                executions.c.execution_id.in_(running),
                executions.c.stop_requested.is_(False),
            )
            .values(stop_requested=True)
        )
        for execution_id in running:
            _signal(conn, execution_id, now)
    return len(running)


def _lock_run(conn: Connection, map_run_id: str) -> Any:
    return conn.execute(
        sa.select(map_runs).where(map_runs.c.map_run_id == map_run_id).with_for_update()
    ).first()


def parents_ended(conn: Connection, finished: Sequence[tuple[str, str]], now: datetime) -> bool:
    """ABORT the RUNNING Map Runs of executions (id, status) ending unsuccessfully.

    Runs in the transaction that records their ends (the caller has locked
    their work rows). Pending children never start; running ones get a stop
    request their workers carry out, counted when they end. Returns whether
    any run ended (a wake-up is owed).
    """
    ended = sorted({eid for eid, status in finished if status in _ENDS_RUNS})
    if not ended:
        return False
    ids = sorted(
        row.map_run_id
        for row in conn.execute(
            sa.select(map_runs.c.map_run_id).where(
                map_runs.c.execution_id.in_(ended), map_runs.c.status == "RUNNING"
            )
        )
    )
    if not ids:
        return False
    running = sorted(
        row.execution_id
        for row in conn.execute(
            sa.select(map_run_children.c.execution_id).where(
                map_run_children.c.map_run_id.in_(ids),
                map_run_children.c.status == "RUNNING",
            )
        )
    )
    if running:  # their work rows before the runs', as every commit locks them
        conn.execute(
            sa.select(work_queue.c.execution_id)
            .where(work_queue.c.execution_id.in_(running))
            .order_by(work_queue.c.execution_id)
            .with_for_update()
        ).all()
    for map_run_id in ids:
        run = _lock_run(conn, map_run_id)
        if run is not None and run.status == "RUNNING":
            end_run(conn, run, "ABORTED", now, stop_running=True)
    return True


def children_finished(
    conn: Connection, finished: Sequence[tuple[str, str]], now: datetime, codec: PayloadCodec
) -> bool:
    """Count the ends of Map Run children (id, status) in the finishing transaction.

    First the Map Runs of parents among them that ended unsuccessfully are
    aborted (`parents_ended`). Then, for each child: its child row takes
    the status, the run's counts move, and the run either starts its next
    pending child, or ends (SUCCEEDED when all are done; FAILED with
    States.ExceedToleratedFailureThreshold when the failures exceed the
    tolerance) and wakes its parent. Counting is
    idempotent: a child already counted is skipped. Returns whether work
    became due (a wake-up is owed).
    """
    wake = parents_ended(conn, finished, now)
    children = [(eid, status) for eid, status in finished if is_child(eid)]
    if not children:
        return wake
    rows = {
        row.execution_id: row
        for row in conn.execute(
            sa.select(map_run_children).where(
                map_run_children.c.execution_id.in_([eid for eid, _ in children])
            )
        )
    }
    runs = sorted({row.map_run_id for row in rows.values()})
    for map_run_id in runs:  # locked in id order, as every writer of runs does
        _lock_run(conn, map_run_id)
    for execution_id, status in children:
        child = rows.get(execution_id)
        if child is None or status not in _COUNT_OF:
            continue
        counted = conn.execute(
            sa.update(map_run_children)
            .where(
                map_run_children.c.map_run_id == child.map_run_id,
                map_run_children.c.item_index == child.item_index,
                map_run_children.c.status == "RUNNING",
            )
            .values(status=status)
        ).rowcount
        if not counted:
            continue
        column = map_runs.c[_COUNT_OF[status]]
        conn.execute(
            sa.update(map_runs)
            .where(map_runs.c.map_run_id == child.map_run_id)
            .values({column: column + 1, map_runs.c.running: map_runs.c.running - 1})
        )
        run = _lock_run(conn, child.map_run_id)
        if run.status != "RUNNING":
            continue
        if threshold_exceeded(run):
            end_run(conn, run, "FAILED", now, error=_THRESHOLD_ERROR, cause=_THRESHOLD_CAUSE)
            wake = True
        elif release_children(conn, run, now, codec):
            wake = True
        elif run.loaded and run.pending == 0 and run.running == 0:
            end_run(conn, run, "SUCCEEDED", now)
            wake = True
    return wake
