"""Reopening a closed execution inside an open transaction: the one body of every redrive.

`reopen` is what RedriveExecution does to an execution once its eligibility
is settled (`redrive.redrive_status`): the row is RUNNING again with its
redrive count bumped and date set, ``ExecutionRedriven`` is appended to its
history (with the journal record of that event's id, `keys.redriven`, that
the next generation chains on) and its work is due now on its own queue.
`redrive.RedriveStore.redrive_execution` calls it for a top-level execution;
`map_run_hook.release_children` calls it for a Map Run's child that is
redriven in place (same ARN) when its parent's Map Run is. It imports no
other writer of the store, so the commit path's hook may use it without a
cycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import keys
from engine.store.codec import PayloadCodec, escape_clear
from engine.store.records import ExecutionRecord, ExecutionStatus
from engine.store.rows import encode_details
from engine.store.schema import executions, history_events, journal, work_queue

__all__ = ["reopen"]


def reopen(
    conn: Connection,
    record: ExecutionRecord,
    now: datetime,
    codec: PayloadCodec,
    *,
    client_token: str | None = None,
) -> dict[str, Any]:
    """Reopen the closed execution `record` (its rows locked by the caller); return the changes.

    The caller has judged it redrivable. The returned fields are those the
    executions row took, for the caller's updated record.
    """
    execution_id = record.execution_id
    count = record.redrive_count + 1
    event_id = record.last_event_id + 1
    reopened: dict[str, Any] = {
        "status": ExecutionStatus.RUNNING.value,
        "output": None,
        "error": None,
        "cause": None,
        "stop_date": None,
        "stop_requested": False,
        "stop_requested_error": None,
        "stop_requested_cause": None,
        "last_event_id": event_id,
        "redrive_count": count,
        "redrive_date": now,
    }
    conn.execute(
        sa.update(executions)
        .where(executions.c.execution_id == execution_id)
        .values(**reopened, redrive_token=escape_clear(client_token))
    )
    conn.execute(
        sa.insert(history_events).values(
            execution_id=execution_id,
            event_id=event_id,
            previous_event_id=record.last_event_id,
            type="ExecutionRedriven",
            timestamp=now,
            details=codec.seal(encode_details({"redriveCount": count})),
        )
    )
    # The new generation's first events chain on ExecutionRedriven (see Journal).
    record_text = msgspec.json.encode({"v": None, "e": event_id}).decode()
    conn.execute(
        sa.insert(journal).values(
            execution_id=execution_id,
            key=keys.redriven(count),
            value=codec.seal(record_text),
            recorded_at=now,
        )
    )
    # A closed execution has no work row, unless a late signal left one.
    due = conn.execute(
        sa.update(work_queue)
        .where(work_queue.c.execution_id == execution_id)
        .values(due_at=now, wakeups=work_queue.c.wakeups + 1)
    ).rowcount
    if not due:
        conn.execute(
            sa.insert(work_queue).values(
                execution_id=execution_id,
                queue=record.queue,
                due_at=now,
                wakeups=1,
                wakeups_seen=0,
            )
        )
    return reopened
