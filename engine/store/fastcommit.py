"""PostgreSQL's group commit in one statement and one round trip.

The careful path (`checkpoints.write_checkpoints`) locks the work rows, reads
the leases, and only then writes: six round trips per group on PostgreSQL
(BEGIN, the lease check, journal, events, executions, COMMIT). Here a group
is one statement in autocommit — its own transaction — calling migration
19's function `stepwise_commit_v3` (engine/store/pgfunctions.py) with the
rows as one bound JSON parameter: no BEGIN or COMMIT of ours and none of
psycopg's pipeline machinery (but for a read-back, below), about half the
CPU of the pipelined commit it replaced. v3 writes each execution's events
of the group as history blocks (`blocks.py`, built here as SQLite's commit
builds them) and moves `last_event_id` by compare-and-set. A database at
migrations 15 to 18 gets the same call of `stepwise_commit_v2`, and at 14
of `stepwise_commit_v1` (same arguments and answer; both write one history
row per event; v1 reads the batch as `json`, v2 as `jsonb`, which costs
the server about half as much). A database not yet migrated to 14 gets
that pipelined commit still (history rows): BEGIN, a locking lease check
that the database itself turns into an error when any lease of the group
is not held, every write, and COMMIT, sent at once.
Either way the lease check comes first (this worker's, unexpired at the
worker's `now`, under the work rows' locks taken in id order), and an error
anywhere — a lease not held, a row that collides because another worker
recorded the step — aborts the transaction, so nothing of the group is
written; the caller then takes the careful path, which reports LEASE_LOST or
CONFLICT per checkpoint. So a commit is still only ever made under held
leases (checked inside the committing transaction), and the database's
unique keys still decide races: this changes how many round trips a commit
costs, not what it commits, and it never decides a lost lease or a conflict
by itself. Batches that carry task tokens, and finishes that a Map Run
hooks, always take the careful path.

`pipelined_commit_reading` also reads executions' records back (a finish
someone in this process waits on: `Engine.wait`) in the same round trip:
BEGIN, the call, COMMIT and the read, sent together in psycopg's pipeline
mode on the autocommit connection. The call commits (and its WAL is
flushed) before the server even starts the read, which runs as a
transaction of its own: it sees the committed
row, and a stop requested meanwhile, as a describe at that moment would.
A record is handed back only when the call answered (a durable, successful
commit); when the call fails — a lease not held, a collision — the read
still runs after it but its rows are dropped, and the caller reads after
the careful path's commit, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row

from engine.store.blocks import commit_blocks
from engine.store.checkpoints import PLAIN
from engine.store.codec import PayloadCodec, escape_clear
from engine.store.fastclaim import EXECUTIONS_BY_ID, execution_records
from engine.store.map_run_hook import takes_hook
from engine.store.notify import CHANNEL
from engine.store.outbox_hook import ENQUEUE_SQL
from engine.store.pgraw import HeldConnection
from engine.store.records import (
    Checkpoint,
    CommitResult,
    ExecutionRecord,
    ExecutionStatus,
    TokenStatus,
)
from engine.store.rows import encode_details

__all__ = [
    "ONE_CALL_REFUSALS",
    "call_version",
    "one_call_may_commit",
    "one_call_statement",
    "pipelined_commit",
    "pipelined_commit_reading",
    "warm_call_statement",
]

# Locks the group's work rows (in id order, as the careful path does) and
# divides by zero unless every one is leased to this worker and unexpired at
# `now`: the same rule as `checkpoints.holds_lease`, decided inside the commit.
_LEASE_CHECK = (
    "WITH held AS (SELECT execution_id FROM work_queue "
    "WHERE execution_id = ANY(%(ids)s) AND lease_owner = %(worker)s "
    "AND lease_expires_at > %(now)s ORDER BY execution_id FOR UPDATE) "
    "SELECT 1 / (CASE WHEN count(*) = %(count)s THEN 1 ELSE 0 END) FROM held"
)
_JOURNAL = "INSERT INTO journal (execution_id, key, value, recorded_at) VALUES "
_EVENTS = (
    "INSERT INTO history_events "
    "(execution_id, event_id, previous_event_id, type, timestamp, details) VALUES "
)
# Rows go in multi-row INSERTs of at most this many rows: one statement for
# a step's few rows instead of one per row (psycopg's per-statement work is
# most of a commit's CPU), and a bounded set of statement texts for psycopg
# to prepare.
_ROWS_PER_INSERT = 32


@cache
def _multi_row(head: str, columns: int, rows: int) -> str:
    """`head` followed by `rows` placeholder tuples of `columns` values each."""
    one = "(" + ", ".join(["%s"] * columns) + ")"
    return head + ", ".join([one] * rows)


def _insert_rows(cursor: psycopg.Cursor[Any], head: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert `rows` with as few multi-row statements as `_ROWS_PER_INSERT` allows."""
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        params = [value for row in chunk for value in row]
        cursor.execute(_multi_row(head, len(chunk[0]), len(chunk)), params)


# The group commit as one statement, by `HeldConnection.function_version`:
# migration 19's or 15's function (engine/store/pgfunctions.py), or migration
# 14's (engine/store/migrations.py) on a database at 14. Same arguments, same
# answer; v3's batch carries history blocks, the others' history rows.
_ONE_CALL = {
    3: "SELECT stepwise_commit_v3(%s, %s, %s)",
    2: "SELECT stepwise_commit_v2(%s, %s, %s)",
    1: "SELECT stepwise_commit_v1(%s, %s, %s)",
}
_encode = msgspec.json.Encoder().encode

# Never backwards: a checkpoint without events carries the walk's last id.
_PROGRESS = (
    "UPDATE executions SET last_event_id = GREATEST(last_event_id, %s) WHERE execution_id = %s"
)
_FINISH = (
    "UPDATE executions SET status = %s, output = %s, error = %s, cause = %s, stop_date = %s "
    "WHERE execution_id = %s"
)
_CLOSE_TOKENS = "UPDATE task_tokens SET status = %s WHERE execution_id = %s AND status = %s"
_DONE = "DELETE FROM work_queue WHERE execution_id = ANY(%s)"
# A callback or stop that arrived while the lease was held (wakeups moved
# since the claim) makes the work due now, whatever due time was asked for.
# Work that falls due now wakes the workers (NOTIFY, delivered at COMMIT)
# from the same statement, so no answer is needed before the COMMIT.
_RELEASE = (
    "WITH released AS (UPDATE work_queue SET lease_owner = NULL, lease_expires_at = NULL, "
    "due_at = CASE WHEN wakeups <> wakeups_seen "
    "THEN LEAST(COALESCE(%(due)s::timestamptz, %(now)s::timestamptz), %(now)s::timestamptz) "
    "ELSE %(due)s::timestamptz END, wakeups_seen = wakeups "
    "WHERE execution_id = %(id)s RETURNING due_at) "
    f"SELECT due_at, pg_notify('{CHANNEL}', '') FROM released WHERE due_at <= %(now)s"
)


def pipelined_commit(
    held: HeldConnection,
    checkpoints: Sequence[Checkpoint],
    worker_id: str,
    now: datetime,
    codec: PayloadCodec = PLAIN,
    *,
    blocks: bool = False,
) -> tuple[list[CommitResult], bool] | None:
    """Commit the group in one round trip; None when the careful path must decide.

    One call of migration 19's function with `blocks` (history blocks), else
    of 15's (14's on a database at 14); psycopg's pipeline on a database not
    migrated to 14.

    Every payload is sealed by `codec`, as on the careful path.

    Returns (one OK per checkpoint, whether work became due now). Raises
    psycopg.OperationalError when the database fails (the store's boundary maps it).
    """
    committed = pipelined_commit_reading(
        held, checkpoints, (), worker_id, now, codec, blocks=blocks
    )
    return None if committed is None else (committed[0], committed[1])


def pipelined_commit_reading(
    held: HeldConnection,
    checkpoints: Sequence[Checkpoint],
    read_back: Sequence[str],
    worker_id: str,
    now: datetime,
    codec: PayloadCodec = PLAIN,
    *,
    blocks: bool = False,
) -> tuple[list[CommitResult], bool, dict[str, ExecutionRecord]] | None:
    """`pipelined_commit`, and the records of `read_back`'s executions once it is durable.

    The read shares the commit's round trip when the commit is one call (see
    the module docstring); the records (id → what `Store.get_execution`
    returns, payloads opened by `codec`) are then those read after the
    commit, else none: the caller reads them itself. None when the careful
    path must decide (nothing read either).
    """
    if held.careful_only or not one_call_may_commit(checkpoints):
        return None
    ids, finished, releases = _parts(checkpoints)
    records: dict[str, ExecutionRecord] = {}
    while not held.without_function:
        version = call_version(held, blocks)
        try:
            wake = _one_call(
                held,
                version,
                checkpoints,
                ids,
                finished,
                releases,
                worker_id,
                now,
                codec,
                read_back=read_back,
                records=records,
            )
        except psycopg.errors.UndefinedFunction:
            # A database opened without auto_migrate (or a role that could
            # not create the function): the one before (the call wrote
            # nothing); older than 14, the pipeline. From now on without
            # asking again (each miss is a round trip and an ERROR line in
            # the server's log). Below v3 the call writes rows, and so does
            # every other path of the store (`PostgresBackend.block_writes`).
            # v3 missing while this process writes blocks (a database at 19):
            # the careful path for good, never rows after blocks.
            if version == 3:
                held.careful_only = True
                return None
            if version > 1:
                held.function_version = version - 1
                blocks = False
            else:
                held.without_function = True
        else:
            return None if wake is None else ([CommitResult.OK] * len(checkpoints), wake, records)
    try:
        with held.transaction() as connection:
            with connection.pipeline():
                writes = connection.cursor()
                writes.execute(
                    _LEASE_CHECK, {"ids": ids, "worker": worker_id, "now": now, "count": len(ids)}
                )
                _queue_writes(writes, checkpoints, finished, now, codec)
                released = []
                for c in releases:
                    cursor = connection.cursor()
                    cursor.execute(
                        _RELEASE, {"due": c.release_due_at, "now": now, "id": c.execution_id}
                    )
                    released.append(cursor)
                # COMMIT and the one wait for every answer: an aborted
                # transaction (a lease not held, a collision) raises here.
                connection.commit()
            wake = any(cursor.fetchone() is not None for cursor in released)
    except (psycopg.errors.IntegrityError, psycopg.errors.DivisionByZero):
        return None
    return [CommitResult.OK] * len(checkpoints), wake, {}


def call_version(held: HeldConnection, blocks: bool) -> int:
    """The commit function to call: v3 when the commit writes history blocks, else v2 or v1."""
    return held.function_version if blocks else min(held.function_version, 2)


def _one_call(
    held: HeldConnection,
    version: int,
    checkpoints: Sequence[Checkpoint],
    ids: list[str],
    finished: Sequence[Checkpoint],
    releases: Sequence[Checkpoint],
    worker_id: str,
    now: datetime,
    codec: PayloadCodec,
    *,
    read_back: Sequence[str] = (),
    records: dict[str, ExecutionRecord] | None = None,
) -> bool | None:
    """The group as one call of the commit function; None when the careful path must decide.

    Calls commit function `version`. Returns whether work became
    due now. With `read_back`, the records of those executions, read after
    the call committed in the same round trip, go into `records` — only
    when the call answered. Raises psycopg.errors.UndefinedFunction, having
    written nothing, when the database lacks that function.
    """
    statement = one_call_statement(
        checkpoints, worker_id, now, codec, version, parts=(ids, finished, releases)
    )
    if statement is None:
        return None
    call, params = statement
    try:
        # One statement in autocommit: its own transaction, one round trip,
        # no BEGIN or COMMIT of ours.
        with held.statement() as cursor:
            if read_back and records is not None and _can_pipeline():
                read = _call_then_read(cursor, call, params, read_back)
            else:
                cursor.execute(call, params)
                read = None
            answer = cursor.fetchone()
    except ONE_CALL_REFUSALS:
        return None
    # Only now, the call having answered: the read ran after a durable commit.
    if read is not None and records is not None:
        records.update(execution_records(read, codec))
    return bool(answer and answer[0])


# What the one call raises when it refused the group, having written nothing:
# a collision with a recorded row, a lease not held (the function's RAISE).
# The careful path then decides, checkpoint by checkpoint.
ONE_CALL_REFUSALS: tuple[type[psycopg.Error], ...] = (
    psycopg.errors.IntegrityError,
    psycopg.errors.RaiseException,
)


def one_call_may_commit(checkpoints: Sequence[Checkpoint]) -> bool:
    """Whether the one call may commit this group: no task tokens, no Map Run hook.

    Groups that carry task tokens, and finishes a Map Run hooks (its
    children, unsuccessful parents: `map_run_hook`), take the careful path.
    """
    if any(c.tokens for c in checkpoints):
        return False
    return not any(c.finish and takes_hook(c.execution_id, c.finish.status) for c in checkpoints)


_Parts = tuple[list[str], Sequence[Checkpoint], Sequence[Checkpoint]]


def _parts(checkpoints: Sequence[Checkpoint]) -> _Parts:
    """The group's execution ids (sorted), its finishes, and its releases of unfinished ones."""
    ids = sorted({c.execution_id for c in checkpoints})
    finished = [c for c in checkpoints if c.finish is not None]
    finished_ids = {c.execution_id for c in finished}
    releases = [c for c in checkpoints if c.release and c.execution_id not in finished_ids]
    return ids, finished, releases


def one_call_statement(
    checkpoints: Sequence[Checkpoint],
    worker_id: str,
    now: datetime,
    codec: PayloadCodec,
    version: int,
    *,
    parts: _Parts | None = None,
) -> tuple[str, tuple[str, datetime, str]] | None:
    """The group as one call of commit function `version` (3, 2 or 1): statement and params.

    Only for a group `one_call_may_commit`. The call answers one row whose
    one value says whether work became due now; it raises one of
    `ONE_CALL_REFUSALS`, having written nothing, when the careful path must
    decide. None (nothing to send) when v3's blocks collide within the group
    (two of an execution's events share an id): the careful path decides.
    Shared by the held connection's call (`_one_call`) and the event loop's
    (`engine/store/asynccommit.py`).
    """
    ids, finished, releases = _parts(checkpoints) if parts is None else parts
    batch: dict[str, Any] = {
        "ids": ids,
        "journal": [
            (c.execution_id, key, codec.seal(value))
            for c in checkpoints
            for key, value in c.journal
        ],
    }
    if version >= 3:
        blocks = commit_blocks(checkpoints, codec)
        if blocks is None:
            return None
        batch["blocks"], batch["advance"], batch["progress"] = blocks
    else:
        batch["events"] = _event_tuples(checkpoints, codec)
        batch["progress"] = list(_progress(checkpoints).items())
    batch.update(
        finish=[
            (
                c.execution_id,
                ExecutionStatus(c.finish.status).value,
                codec.seal_optional(c.finish.output),
                escape_clear(c.finish.error),
                codec.seal_optional(c.finish.cause),
                c.finish.stop_date,
            )
            for c in finished
            if c.finish is not None
        ],
        release=[(c.execution_id, c.release_due_at) for c in releases],
    )
    return _ONE_CALL[version], (worker_id, now, _encode(batch).decode())


def warm_call_statement(
    worker_id: str, now: datetime, version: int = 3
) -> tuple[str, tuple[str, datetime, str]]:
    """A call of commit function `version` (3 or 2) that runs its every statement for no row.

    No execution in the group (no lease to check), and one progress (v3:
    and advance), finish and release item for the execution id "", which no
    execution has: each UPDATE and DELETE meets no row (v3 raises nothing
    for the id ""), and the finish's status "" matches no alert (the outbox
    INSERT selects none). The caller still sends it in a transaction it
    rolls back. The server session has then planned every statement of the
    function (plpgsql plans each on its first run).
    """
    batch: dict[str, Any] = {
        "ids": [],
        "journal": [],
        "progress": [("", 0)],
        "finish": [("", "", None, None, None, now)],
        "release": [("", None)],
    }
    if version >= 3:
        batch.update(blocks=[], advance=[("", 0, 0)])
    else:
        batch["events"] = []
    return _ONE_CALL[version], (worker_id, now, _encode(batch).decode())


def _can_pipeline() -> bool:
    """Whether this libpq can pipeline the call and its read (`_call_then_read`)."""
    return psycopg.Pipeline.is_supported()


def _call_then_read(
    cursor: psycopg.Cursor[Any], call: str, params: tuple[Any, ...], read_back: Sequence[str]
) -> psycopg.Cursor[dict[str, Any]]:
    """Send the call in its own transaction, then the read of `read_back`'s records; wait once.

    `cursor` is in autocommit, but a pipeline syncs only at its end, so the
    call is wrapped in an explicit BEGIN … COMMIT: the server commits it
    (its WAL flushed) before it runs the read, which is then a transaction
    of its own that sees the committed rows — and a stop requested
    meanwhile — as a describe would. An error in the call makes the server
    skip the rest (COMMIT, read) and roll back at the pipeline's sync; it
    raises here, and the read's rows are never looked at.
    """
    connection = cursor.connection
    with connection.pipeline():
        connection.execute("BEGIN")
        cursor.execute(call, params)
        connection.execute("COMMIT")
        read = connection.cursor(row_factory=dict_row)
        read.execute(EXECUTIONS_BY_ID, (list(read_back),))
    return read


def _progress(checkpoints: Sequence[Checkpoint]) -> dict[str, int]:
    """Each execution's newest event id in the group (none for those that recorded none)."""
    progress: dict[str, int] = {}
    for c in checkpoints:
        last = max([c.last_event_id, *(e.event_id for e in c.events)])
        if last > 0:
            progress[c.execution_id] = max(last, progress.get(c.execution_id, 0))
    return progress


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
        _insert_rows(cursor, _JOURNAL, journal_rows)
    event_rows = _event_tuples(checkpoints, codec)
    if event_rows:
        _insert_rows(cursor, _EVENTS, event_rows)
    progress = _progress(checkpoints)
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
                escape_clear(finish.error),
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


def _event_tuples(checkpoints: Sequence[Checkpoint], codec: PayloadCodec) -> list[tuple[Any, ...]]:
    """The history rows of `checkpoints`, details sealed, in the events table's column order.

    The values `checkpoints.event_row` gives, as tuples built directly (no
    row dict per event: this runs on the event loop for every step).
    """
    seal = codec.seal
    return [
        (
            c.execution_id,
            event.event_id,
            event.previous_event_id,
            event.type,
            event.timestamp,
            seal(encode_details(event.details)),
        )
        for c in checkpoints
        for event in c.events
    ]
