"""PostgreSQL's group commit in two round trips: everything pipelined, leases checked, COMMIT.

The careful path (`checkpoints.write_checkpoints`) locks the work rows, reads
the leases, and only then writes: six round trips per group on PostgreSQL
(BEGIN, the lease check, journal, events, executions, COMMIT). Here psycopg's
pipeline mode sends all of it at once — the locking lease read first, then
every write — and the lease rows are read back before COMMIT. If any lease
is no longer held, or any row collides (another worker recorded the step),
the transaction is rolled back and the caller takes the careful path, which
reports LEASE_LOST or CONFLICT per checkpoint. So a commit is still only ever
made under held leases, and the database's unique keys still decide races:
the pipeline changes how many round trips a commit costs, not what it
commits. Batches that carry task tokens always take the careful path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

from engine.store.checkpoints import PLAIN, event_row, holds_lease
from engine.store.codec import PayloadCodec
from engine.store.map_run_hook import is_child
from engine.store.notify import CHANNEL
from engine.store.outbox_hook import ENQUEUE_SQL
from engine.store.records import Checkpoint, CommitResult, ExecutionStatus, TokenStatus

__all__ = ["pipelined_commit"]

_LEASES = (
    "SELECT execution_id, lease_owner, lease_expires_at FROM work_queue "
    "WHERE execution_id = ANY(%s) ORDER BY execution_id FOR UPDATE"
)
_JOURNAL = "INSERT INTO journal (execution_id, key, value, recorded_at) VALUES (%s, %s, %s, %s)"
_EVENTS = (
    "INSERT INTO history_events "
    "(execution_id, event_id, previous_event_id, type, timestamp, details) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
_PROGRESS = "UPDATE executions SET last_event_id = %s WHERE execution_id = %s"
_FINISH = (
    "UPDATE executions SET status = %s, output = %s, error = %s, cause = %s, stop_date = %s "
    "WHERE execution_id = %s"
)
_CLOSE_TOKENS = "UPDATE task_tokens SET status = %s WHERE execution_id = %s AND status = %s"
_DONE = "DELETE FROM work_queue WHERE execution_id = ANY(%s)"
# A callback or stop that arrived while the lease was held (wakeups moved
# since the claim) makes the work due now, whatever due time was asked for.
_RELEASE = (
    "UPDATE work_queue SET lease_owner = NULL, lease_expires_at = NULL, "
    "due_at = CASE WHEN wakeups <> wakeups_seen "
    "THEN LEAST(COALESCE(%(due)s::timestamptz, %(now)s::timestamptz), %(now)s::timestamptz) "
    "ELSE %(due)s::timestamptz END, wakeups_seen = wakeups "
    "WHERE execution_id = %(id)s RETURNING due_at"
)


def pipelined_commit(
    engine: Engine,
    checkpoints: Sequence[Checkpoint],
    worker_id: str,
    now: datetime,
    codec: PayloadCodec = PLAIN,
) -> tuple[list[CommitResult], bool] | None:
    """Commit the group in two round trips; None when the careful path must decide.

    Every payload is sealed by `codec`, as on the careful path.

    Returns (one OK per checkpoint, whether work became due now). Raises
    psycopg.OperationalError when the database fails (the store's boundary maps it).
    """
    if any(c.tokens for c in checkpoints):
        return None
    if any(c.finish is not None and is_child(c.execution_id) for c in checkpoints):
        return None  # a Map Run child's end is counted on the careful path (map_run_hook)
    ids = sorted({c.execution_id for c in checkpoints})
    finished = [c for c in checkpoints if c.finish is not None]
    finished_ids = {c.execution_id for c in finished}
    releases = [c for c in checkpoints if c.release and c.execution_id not in finished_ids]
    pooled = engine.raw_connection()
    try:
        connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        try:
            with connection.pipeline():
                leases = connection.cursor()
                leases.execute(_LEASES, (ids,))
                writes = connection.cursor()
                _queue_writes(writes, checkpoints, finished, now, codec)
                released = []
                for c in releases:
                    cursor = connection.cursor()
                    cursor.execute(
                        _RELEASE, {"due": c.release_due_at, "now": now, "id": c.execution_id}
                    )
                    released.append(cursor)
            held = {
                row[0] for row in leases.fetchall() if holds_lease(row[1], row[2], worker_id, now)
            }
            if held != set(ids):
                connection.rollback()
                return None
            wake = False
            for cursor in released:
                row = cursor.fetchone()
                wake = wake or (row is not None and row[0] is not None and row[0] <= now)
            if wake:
                writes.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            connection.commit()
        except psycopg.errors.IntegrityError:
            connection.rollback()
            return None
        except (psycopg.OperationalError, psycopg.InterfaceError):
            # A lost connection must not go back to the pool (its reset would fail noisily).
            pooled.invalidate()
            raise
        except BaseException:
            connection.rollback()
            raise
    finally:
        pooled.close()
    return [CommitResult.OK] * len(checkpoints), wake


def _queue_writes(
    cursor: psycopg.Cursor[Any],
    checkpoints: Sequence[Checkpoint],
    finished: Sequence[Checkpoint],
    now: datetime,
    codec: PayloadCodec,
) -> None:
    journal_rows = [
        (c.execution_id, key, codec.seal(value), now)
        for c in checkpoints
        for key, value in c.journal
    ]
    if journal_rows:
        cursor.executemany(_JOURNAL, journal_rows)
    event_rows = []
    for c in checkpoints:
        for event in c.events:
            row = event_row(c.execution_id, event, codec)
            event_rows.append(
                (
                    row["execution_id"],
                    row["event_id"],
                    row["previous_event_id"],
                    row["type"],
                    row["timestamp"],
                    row["details"],
                )
            )
    if event_rows:
        cursor.executemany(_EVENTS, event_rows)
    progress: dict[str, int] = {}
    for c in checkpoints:
        last = max([c.last_event_id, *(e.event_id for e in c.events)])
        if last > 0:
            progress[c.execution_id] = max(last, progress.get(c.execution_id, 0))
    if progress:
        cursor.executemany(_PROGRESS, [(last, eid) for eid, last in progress.items()])
    for c in finished:
        finish = c.finish
        assert finish is not None
        cursor.execute(
            _FINISH,
            (
                ExecutionStatus(finish.status).value,
                codec.seal_optional(finish.output),
                finish.error,
                codec.seal_optional(finish.cause),
                finish.stop_date,
                c.execution_id,
            ),
        )
        # The outbox: alerts on this status change commit with it (engine/store/outbox.py).
        status = ExecutionStatus(finish.status).value
        cursor.execute(
            ENQUEUE_SQL, {"execution": c.execution_id, "status": status, "now": finish.stop_date}
        )
        # Outstanding tokens become unusable when the execution closes.
        cursor.execute(
            _CLOSE_TOKENS,
            (TokenStatus.TIMED_OUT.value, c.execution_id, TokenStatus.OPEN.value),
        )
    if finished:
        cursor.execute(_DONE, ([c.execution_id for c in finished],))
