"""Writing inside an open transaction: checkpoints, lease releases, signals and tokens.

These functions are the bodies of the store's write transactions, shared by
the group commit and its one-by-one retry. Each takes the connection of a
transaction the `Store` opened and locks rows in one fixed order — the work
row first, then the execution's other rows — so a group commit, a stop
request and a callback never deadlock each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store.errors import InvalidToken, TaskDoesNotExist, TaskTimedOut
from engine.store.notify import CHANNEL
from engine.store.records import (
    Checkpoint,
    CommitResult,
    Event,
    ExecutionStatus,
    TokenRecord,
    TokenStatus,
)
from engine.store.rows import encode_details, token_record
from engine.store.schema import executions, history_events, journal, task_tokens, timers, work_queue

__all__ = [
    "CLOSED_TOKEN",
    "event_row",
    "notify_in",
    "open_token",
    "release_work",
    "signal",
    "write_checkpoint",
]

CLOSED_TOKEN = "Task Timed Out: 'Provided task does not exist anymore'"
_NOTIFY_SQL = sa.text(f"SELECT pg_notify('{CHANNEL}', '')")


def notify_in(conn: Connection) -> None:
    """Queue a work wake-up that PostgreSQL delivers when this transaction commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY_SQL)


def event_row(execution_id: str, event: Event) -> dict[str, Any]:
    """The history_events row of one event."""
    return {
        "execution_id": execution_id,
        "event_id": event.event_id,
        "previous_event_id": event.previous_event_id,
        "type": event.type,
        "timestamp": event.timestamp,
        "details": encode_details(event.details),
    }


def release_work(
    conn: Connection, row: Any, due_at: datetime | None, now: datetime
) -> datetime | None:
    """Clear the lease on a locked work row and set when it is next due; return that time.

    A callback or stop that arrived while the lease was held (the row's
    wakeups moved since the claim) makes the work due now whatever `due_at` says.
    """
    if row.wakeups != row.wakeups_seen:
        # The walk may not have seen that signal, so it must run again soon.
        due_at = now if due_at is None else min(due_at, now)
    conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.execution_id == row.execution_id)
        .values(lease_owner=None, lease_expires_at=None, due_at=due_at, wakeups_seen=row.wakeups)
    )
    return due_at


def write_checkpoint(
    conn: Connection, checkpoint: Checkpoint, worker_id: str, now: datetime
) -> tuple[CommitResult, bool]:
    """Write one checkpoint if `worker_id` holds its unexpired lease.

    Returns the result and whether work became due now (a wake-up is owed).
    Raises sqlalchemy IntegrityError when a row was already recorded; the
    caller rolls back and reports CONFLICT.
    """
    execution_id = checkpoint.execution_id
    work = conn.execute(
        sa.select(work_queue).where(work_queue.c.execution_id == execution_id).with_for_update()
    ).first()
    if (
        work is None
        or work.lease_owner != worker_id
        or work.lease_expires_at is None
        or work.lease_expires_at <= now
    ):
        return CommitResult.LEASE_LOST, False
    if checkpoint.journal:
        conn.execute(
            sa.insert(journal),
            [
                {"execution_id": execution_id, "key": key, "value": value, "recorded_at": now}
                for key, value in checkpoint.journal
            ],
        )
    if checkpoint.events:
        conn.execute(
            sa.insert(history_events), [event_row(execution_id, e) for e in checkpoint.events]
        )
    if checkpoint.timers:
        conn.execute(
            sa.insert(timers),
            [
                {"execution_id": execution_id, "key": key, "fire_at": fire_at}
                for key, fire_at in checkpoint.timers
            ],
        )
    if checkpoint.tokens:
        _write_tokens(conn, checkpoint.tokens, now)
    _update_execution(conn, checkpoint)
    if checkpoint.finish is not None:
        conn.execute(sa.delete(work_queue).where(work_queue.c.execution_id == execution_id))
        return CommitResult.OK, False
    if checkpoint.release:
        due = release_work(conn, work, checkpoint.release_due_at, now)
        return CommitResult.OK, due is not None and due <= now
    return CommitResult.OK, False


def _write_tokens(conn: Connection, tokens: Sequence[TokenRecord], now: datetime) -> None:
    # A token already issued is being closed by the walk (e.g. it timed out);
    # a new one is inserted. Closing never reopens a closed token.
    known = {
        row.token
        for row in conn.execute(
            sa.select(task_tokens.c.token).where(task_tokens.c.token.in_([t.token for t in tokens]))
        )
    }
    fresh = [
        {
            "token": t.token,
            "execution_id": t.execution_id,
            "key": t.key,
            "state_name": t.state_name,
            "status": TokenStatus(t.status).value,
            "heartbeat_at": t.heartbeat_at,
            "created_at": t.created_at or now,
        }
        for t in tokens
        if t.token not in known
    ]
    if fresh:
        conn.execute(sa.insert(task_tokens), fresh)
    for t in tokens:
        if t.token in known and t.status != TokenStatus.OPEN:
            conn.execute(
                sa.update(task_tokens)
                .where(task_tokens.c.token == t.token, task_tokens.c.status == TokenStatus.OPEN)
                .values(status=TokenStatus(t.status).value)
            )


def _update_execution(conn: Connection, checkpoint: Checkpoint) -> None:
    values: dict[str, Any] = {}
    last_event_id = max([checkpoint.last_event_id, *(e.event_id for e in checkpoint.events)])
    if last_event_id > 0:
        values["last_event_id"] = last_event_id
    finish = checkpoint.finish
    if finish is not None:
        values.update(
            status=ExecutionStatus(finish.status).value,
            output=finish.output,
            error=finish.error,
            cause=finish.cause,
            stop_date=finish.stop_date,
        )
        # Outstanding tokens become unusable when the execution closes.
        conn.execute(
            sa.update(task_tokens)
            .where(
                task_tokens.c.execution_id == checkpoint.execution_id,
                task_tokens.c.status == TokenStatus.OPEN,
            )
            .values(status=TokenStatus.TIMED_OUT)
        )
    if values:
        conn.execute(
            sa.update(executions)
            .where(executions.c.execution_id == checkpoint.execution_id)
            .values(values)
        )


def signal(conn: Connection, execution_id: str, now: datetime) -> None:
    """Make an execution's work due now and count the signal, for a callback or a stop."""
    updated = conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.execution_id == execution_id)
        .values(due_at=now, wakeups=work_queue.c.wakeups + 1)
    ).rowcount
    if not updated:
        conn.execute(
            sa.insert(work_queue).values(
                execution_id=execution_id, due_at=now, wakeups=1, wakeups_seen=0
            )
        )
    notify_in(conn)


def open_token(conn: Connection, token: str, *, lock: bool) -> TokenRecord:
    """Return an OPEN token of a RUNNING execution (row-locked when `lock`).

    Raises InvalidToken (never issued), TaskTimedOut (closed, or its
    execution ended) or TaskDoesNotExist (its execution is gone).
    """
    query = sa.select(task_tokens).where(task_tokens.c.token == token)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise InvalidToken("Invalid Token: 'Invalid token'")
    record = token_record(row)
    if record.status != TokenStatus.OPEN:
        raise TaskTimedOut(CLOSED_TOKEN)
    status = conn.execute(
        sa.select(executions.c.status).where(executions.c.execution_id == record.execution_id)
    ).scalar()
    if status is None:
        raise TaskDoesNotExist(f"Task Does Not Exist: execution '{record.execution_id}'")
    if status != ExecutionStatus.RUNNING:
        raise TaskTimedOut(CLOSED_TOKEN)
    return record
