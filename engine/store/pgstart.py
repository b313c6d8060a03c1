"""PostgreSQL's start batch in one statement and one round trip: every row and the NOTIFY.

On PostgreSQL a start batch reads first — the machine's status and
revision, and whether any name is taken, in autocommit as every read there
(`PostgresBackend.reading`) — and then writes with one statement in
autocommit, its own transaction: the executions rows, their
``ExecutionStarted`` events and their work rows, each table's rows bound as
one JSON parameter that `json_populate_recordset` reads into the table's row
type, and a NOTIFY for the workers (none when every work row is leased
already to a worker of this process). No BEGIN or COMMIT of ours, no
pipeline: a third of the CPU of the pipelined executemany it replaced. The
names were checked before, outside this transaction, so another process may
have taken one since: the unique keys then abort the statement, nothing of
the batch is written, and the caller retries each start alone
(`StartStore.start_executions`), where the existing execution decides. The
rows are those the careful path inserts (same dicts, payloads already
sealed); `tests/engine/test_start_raw_rows.py` compares them. `any_taken` is
the name check by the driver (as SQLite's `rawstart.any_taken`): whether
any name or id of the batch is taken, so the careful read of the existing
executions is only needed when one is.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from sqlalchemy.engine import Connection, Engine

from engine.store.notify import CHANNEL
from engine.store.pgraw import pooled_psycopg
from engine.store.records import ExecutionRecord

__all__ = [
    "any_taken",
    "guarded_statement",
    "pipelined_starts",
    "start_statement",
    "taken_query",
    "warm_statement",
]


def pipelined_starts(
    engine: Engine,
    execution_rows: Sequence[dict[str, Any]],
    event_rows: Sequence[dict[str, Any]],
    work_rows: Sequence[dict[str, Any]],
    *,
    notify: bool = True,
) -> bool:
    """Insert the rows of a start batch and NOTIFY in one transaction and one round trip.

    `notify` False: no NOTIFY (every work row is leased to a worker of the
    starting process already, so no worker need look).

    Returns False, having written nothing, when a unique key collides.
    Raises psycopg.OperationalError when the database fails (the store's
    boundary maps it).
    """
    statement, params = start_statement(execution_rows, event_rows, work_rows, notify=notify)
    try:
        # One statement in autocommit is its own transaction: no BEGIN or
        # COMMIT of ours, no pipeline.
        with pooled_psycopg(engine, autocommit=True) as connection:
            connection.execute(statement, params)
    except psycopg.errors.IntegrityError:
        return False
    return True


def start_statement(
    execution_rows: Sequence[dict[str, Any]],
    event_rows: Sequence[dict[str, Any]],
    work_rows: Sequence[dict[str, Any]],
    *,
    notify: bool = True,
) -> tuple[str, list[str]]:
    """`pipelined_starts`'s one statement and its parameters, for a connection of the caller's.

    Sent in autocommit it is its own transaction; a unique key's collision
    (psycopg.errors.IntegrityError) aborts it with nothing written.
    """
    statement = _statement(
        tuple(execution_rows[0]), tuple(event_rows[0]), tuple(work_rows[0]), notify=notify
    )
    return statement, [_encode(rows).decode() for rows in (execution_rows, event_rows, work_rows)]


def guarded_statement(
    execution_rows: Sequence[dict[str, Any]],
    event_rows: Sequence[dict[str, Any]],
    work_rows: Sequence[dict[str, Any]],
    heads: Sequence[tuple[str, int]],
    *,
    notify: bool = True,
) -> tuple[str, list[str]]:
    """`start_statement` writing only while every machine of `heads` is still at that revision.

    `heads` are (machine name, revision) pairs, the revisions the batch was
    planned with. In the statement's own snapshot, before any row is
    written, each machine must exist, not be deleted (``deleted_at`` NULL)
    and have that revision as its latest; otherwise nothing is written (no
    row, no NOTIFY). The statement returns one row when it wrote the batch,
    none when a head had moved.
    """
    statement = _statement(
        tuple(execution_rows[0]),
        tuple(event_rows[0]),
        tuple(work_rows[0]),
        notify=notify,
        guarded=True,
    )
    guard = _encode([{"name": name, "version": version} for name, version in heads]).decode()
    execution_json, event_json, work_json = (
        _encode(rows).decode() for rows in (execution_rows, event_rows, work_rows)
    )
    return statement, [execution_json, guard, event_json, work_json]


def warm_statement(
    execution_columns: Sequence[str], event_columns: Sequence[str], work_columns: Sequence[str]
) -> tuple[str, list[str]]:
    """`guarded_statement`'s text for rows of these columns (no NOTIFY), with no rows at all.

    Sent in autocommit it writes nothing (three empty INSERTs, no NOTIFY),
    while the server session parses and plans the three tables' insert as a
    start would: a connection's first start then finds them warm.
    """
    statement = _statement(
        tuple(execution_columns),
        tuple(event_columns),
        tuple(work_columns),
        notify=False,
        guarded=True,
    )
    return statement, ["[]", "[]", "[]", "[]"]


def taken_query(wanted: Sequence[ExecutionRecord]) -> tuple[str, list[Any]]:
    """`any_taken`'s query and parameters (`wanted` not empty): a row back when one is taken."""
    params: list[Any] = []
    for record in wanted:
        params += (record.machine, record.name)
    params.append([record.execution_id for record in wanted])
    return _taken_sql(len(wanted)), params


# Rows travel as JSON (one bound parameter per table); payloads are text
# already, enums their values, datetimes ISO 8601 with their offset.
_encode = msgspec.json.Encoder().encode


@functools.cache
def _statement(
    execution_columns: tuple[str, ...],
    event_columns: tuple[str, ...],
    work_columns: tuple[str, ...],
    *,
    notify: bool,
    guarded: bool = False,
) -> str:
    """The batch's one statement for these row shapes (built once per shape).

    Each table's rows come from one JSON array of objects, read by
    `json_populate_recordset` into that table's own row type, so every value
    is cast to its column's type by the database. `guarded`: the executions
    rows are inserted only when `_HEADS_UNMOVED` holds (a second parameter,
    after theirs), the other tables' only when executions rows were, and
    the statement returns a row only then.
    """
    inserts = []
    for table, columns in (
        ("executions", execution_columns),
        ("history_events", event_columns),
        ("work_queue", work_columns),
    ):
        insert = (
            f"{table}_rows AS (INSERT INTO {table} ({', '.join(columns)}) "
            f"SELECT {', '.join(f'r.{name}' for name in columns)} "
            f"FROM json_populate_recordset(NULL::{table}, %s::json) AS r"
        )
        if guarded and table == "executions":
            insert += f" WHERE {_HEADS_UNMOVED} RETURNING 1"
        elif guarded:
            insert += " WHERE EXISTS (SELECT FROM executions_rows)"
        inserts.append(insert + ")")
    tail = f"SELECT pg_notify('{CHANNEL}', '')" if notify else "SELECT 1"
    if guarded:
        tail += " FROM executions_rows LIMIT 1"
    return "WITH " + ", ".join(inserts) + " " + tail


# No machine of the batch's (name, revision) pairs has moved: each exists,
# is not deleted, and that revision is still its latest.
_HEADS_UNMOVED = (
    "NOT EXISTS (SELECT FROM json_to_recordset(%s::json) AS w(name text, version int) "
    "WHERE NOT EXISTS (SELECT FROM state_machines m WHERE m.name = w.name "
    "AND m.deleted_at IS NULL AND w.version = (SELECT max(v.version) "
    "FROM state_machine_versions v WHERE v.machine_id = m.id)))"
)


def any_taken(conn: Connection, wanted: Sequence[ExecutionRecord]) -> bool:
    """Whether an execution holds any (machine, name) or execution id of `wanted`.

    Read on the driver connection under `conn` (the start's own reading
    connection, in its transaction or autocommit). Raises psycopg.Error when
    the database fails (the store's boundary maps it).
    """
    if not wanted:
        return False
    sql, params = taken_query(wanted)
    driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    try:
        with driver.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() is not None
    except (psycopg.OperationalError, psycopg.InterfaceError):
        conn.invalidate()  # a lost connection must not go back to the pool
        raise


@functools.cache
def _taken_sql(count: int) -> str:
    # Each arm an indexed lookup: (machine, name) is unique, execution_id the key.
    names = " OR ".join(["(machine = %s AND name = %s)"] * count)
    return f"SELECT 1 FROM executions WHERE {names} OR execution_id = ANY(%s) LIMIT 1"
