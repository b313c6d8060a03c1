"""Writing inside an open transaction: checkpoints, the lease check, releases, signals, tokens.

These functions are the bodies of the store's write transactions, shared by
the group commit, its one-by-one retry, callbacks and SQL effects. Each takes
the connection of a transaction the `Store` opened and locks rows in one
fixed order — the work row first, then the execution's other rows — so a
group commit, a stop request and a callback never deadlock each other. The
lease check lives here once (`holds_lease`); whatever writes under a lease
uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from engine.store.blocks import block_pieces, commit_progress, grouped_events
from engine.store.codec import PayloadCodec, escape_clear
from engine.store.errors import InvalidToken, TaskDoesNotExist, TaskTimedOut
from engine.store.map_run_hook import children_finished
from engine.store.outbox_hook import enqueue_alerts
from engine.store.records import (
    DEFAULT_QUEUE,
    Checkpoint,
    CommitResult,
    Event,
    ExecutionStatus,
    TokenRecord,
    TokenStatus,
)
from engine.store.rows import encode_details, token_record
from engine.store.schema import (
    executions,
    history_blocks,
    history_events,
    journal,
    task_tokens,
    work_queue,
)

__all__ = [
    "CLOSED_TOKEN",
    "event_row",
    "holds_lease",
    "journal_row",
    "lock_work",
    "open_token",
    "release_work",
    "signal",
    "write_checkpoints",
]

CLOSED_TOKEN = "Task Timed Out: 'Provided task does not exist anymore'"
# The codec of callers that configure none: values are stored as they are.
PLAIN = PayloadCodec()


def holds_lease(
    lease_owner: str | None, lease_expires_at: datetime | None, worker_id: str, now: datetime
) -> bool:
    """Whether a work row's lease belongs to `worker_id` and is unexpired at `now`.

    The one lease check: every write made under a lease (a checkpoint, a SQL
    effect) runs it on the work row it locked first.
    """
    return lease_owner == worker_id and lease_expires_at is not None and lease_expires_at > now


def lock_work(conn: Connection, execution_ids: Sequence[str]) -> dict[str, Any]:
    """Lock the work rows of `execution_ids` in id order; return them by execution id."""
    return {
        row.execution_id: row
        for row in conn.execute(
            sa.select(work_queue)
            .where(work_queue.c.execution_id.in_(sorted(set(execution_ids))))
            .order_by(work_queue.c.execution_id)
            .with_for_update()
        )
    }


def journal_row(
    execution_id: str, key: str, value: str, now: datetime, codec: PayloadCodec = PLAIN
) -> dict[str, Any]:
    """The journal row of one record (`value` is the journal's own JSON text, sealed by `codec`)."""
    return {
        "execution_id": execution_id,
        "key": key,
        "value": codec.seal(value),
        "recorded_at": now,
    }


def event_row(execution_id: str, event: Event, codec: PayloadCodec = PLAIN) -> dict[str, Any]:
    """The history_events row of one event, its details sealed by `codec`."""
    return {
        "execution_id": execution_id,
        "event_id": event.event_id,
        "previous_event_id": event.previous_event_id,
        "type": event.type,
        "timestamp": event.timestamp,
        "details": codec.seal(encode_details(event.details)),
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


def write_checkpoints(
    conn: Connection,
    checkpoints: Sequence[Checkpoint],
    worker_id: str,
    now: datetime,
    codec: PayloadCodec = PLAIN,
    *,
    blocks: bool = True,
) -> tuple[list[CommitResult], bool]:
    """Write every checkpoint whose execution `worker_id` holds an unexpired lease on.

    The work rows are locked in one statement, in execution-id order, and the
    rows of all checkpoints go out as one batched INSERT per table, so a group
    costs a handful of round trips, not a handful per checkpoint. Returns one
    result per checkpoint (OK or LEASE_LOST) and whether work became due now
    (a wake-up is owed). Every payload is sealed by `codec`. The events of
    each execution go out as one history block (`blocks.py`; `blocks` False:
    a database older than migration 18, one row each). Raises
    sqlalchemy IntegrityError when any row was already recorded; the caller
    rolls back and retries one by one.
    """
    work = lock_work(conn, [c.execution_id for c in checkpoints])
    results: list[CommitResult] = []
    held: list[Checkpoint] = []
    for checkpoint in checkpoints:
        row = work.get(checkpoint.execution_id)
        if row is None or not holds_lease(row.lease_owner, row.lease_expires_at, worker_id, now):
            results.append(CommitResult.LEASE_LOST)
        else:
            results.append(CommitResult.OK)
            held.append(checkpoint)
    if not held:
        return results, False
    journal_rows = [
        journal_row(c.execution_id, key, value, now, codec)
        for c in held
        for key, value in c.journal
    ]
    if journal_rows:
        conn.execute(sa.insert(journal), journal_rows)
    grouped = grouped_events((c.execution_id, c.events) for c in held) if blocks else []
    if grouped:
        conn.execute(
            sa.insert(history_blocks),
            [
                {
                    "execution_id": eid,
                    "first_event_id": first,
                    "last_event_id": last,
                    "events": text,
                }
                for owner, events in grouped
                for eid, first, last, text in block_pieces(owner, events, codec)
            ],
        )
    elif not blocks:
        event_rows = [event_row(c.execution_id, e, codec) for c in held for e in c.events]
        if event_rows:
            conn.execute(sa.insert(history_events), event_rows)
    tokens = [t for c in held for t in c.tokens]
    if tokens:
        _write_tokens(conn, tokens, now)
    _update_executions(conn, held, grouped, codec)
    finished = {c.execution_id for c in held if c.finish is not None}
    if finished:
        conn.execute(sa.delete(work_queue).where(work_queue.c.execution_id.in_(finished)))
    wake = False
    for c in held:
        if c.release and c.execution_id not in finished:
            due = release_work(conn, work[c.execution_id], c.release_due_at, now)
            wake = wake or (due is not None and due <= now)
    # Map Run children that end are counted and replaced in this transaction;
    # after the releases, so a parent released in this same group is woken.
    ends = [(c.execution_id, c.finish.status) for c in held if c.finish is not None]
    return results, children_finished(conn, ends, now, codec) or wake


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


def _update_executions(
    conn: Connection,
    held: Sequence[Checkpoint],
    grouped: Sequence[tuple[str, Sequence[Event]]],
    codec: PayloadCodec,
) -> None:
    progress = commit_progress(held, grouped)
    if progress is None:
        raise _collision("two of an execution's events share an id")
    guarded, plain = progress
    for eid, last, first in guarded:
        # The blocks' safety net (`blocks.commit_progress`): events at or
        # below the recorded last one were recorded, whatever block holds them.
        advanced = conn.execute(
            sa.update(executions)
            .where(executions.c.execution_id == eid, executions.c.last_event_id < first)
            .values(last_event_id=last)
        ).rowcount
        if advanced != 1:
            raise _collision(f"execution {eid}: events from {first} already recorded")
    if plain:
        # Never backwards: a checkpoint without events carries the walk's last id.
        moved = sa.bindparam("last", type_=sa.Integer)
        stored = executions.c.last_event_id
        conn.execute(
            sa.update(executions)
            .where(executions.c.execution_id == sa.bindparam("target"))
            .values(last_event_id=sa.case((stored > moved, stored), else_=moved)),
            [{"target": eid, "last": last} for eid, last in plain],
        )
    for c in held:
        finish = c.finish
        if finish is None:
            continue
        conn.execute(
            sa.update(executions)
            .where(executions.c.execution_id == c.execution_id)
            .values(
                status=ExecutionStatus(finish.status).value,
                output=codec.seal_optional(finish.output),
                error=escape_clear(finish.error),
                cause=codec.seal_optional(finish.cause),
                stop_date=finish.stop_date,
            )
        )
        # The outbox: alerts on this status change commit with it (engine/store/outbox.py).
        enqueue_alerts(conn, c.execution_id, ExecutionStatus(finish.status).value, finish.stop_date)
        # Outstanding tokens become unusable when the execution closes.
        conn.execute(
            sa.update(task_tokens)
            .where(
                task_tokens.c.execution_id == c.execution_id,
                task_tokens.c.status == TokenStatus.OPEN,
            )
            .values(status=TokenStatus.TIMED_OUT)
        )


def _collision(what: str) -> sa_exc.IntegrityError:
    """The error of a history block that overlaps recorded events, as a duplicate key's."""
    return sa_exc.IntegrityError(f"history blocks: {what}", None, ValueError(what))


def signal(conn: Connection, execution_id: str, now: datetime) -> None:
    """Make an execution's work due now and count the signal, for a callback or a stop.

    The caller also queues the backend's wake-up (`Backend.notify_in`) in this transaction.
    """
    updated = conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.execution_id == execution_id)
        .values(due_at=now, wakeups=work_queue.c.wakeups + 1)
    ).rowcount
    if not updated:
        conn.execute(
            sa.insert(work_queue).values(
                execution_id=execution_id,
                # The work goes back on the execution's own queue.
                queue=sa.func.coalesce(
                    sa.select(executions.c.queue)
                    .where(executions.c.execution_id == execution_id)
                    .scalar_subquery(),
                    DEFAULT_QUEUE,
                ),
                due_at=now,
                wakeups=1,
                wakeups_seen=0,
            )
        )


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
