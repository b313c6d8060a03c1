"""PostgreSQL's claim-and-load in one round trip: the claim and the loads of what it leased.

`WorkStore.claim_due_loaded` on the careful path claims (BEGIN, the claim
settings, the claim UPDATE) and then reads the claimed executions' records,
machine versions, journals and tokens in the same transaction: a round trip
per statement. Here psycopg's pipeline mode sends all of it at once and
waits once. The reads cannot name the claimed ids before the claim answers,
so they select the executions whose work row this transaction just leased:
leased to this worker until exactly this claim's expiry, which only this
claim's UPDATE wrote (a transaction sees its own writes, and the rows stay
locked until COMMIT). The result keeps only the ids the UPDATE returned.
Nothing is read outside the lease, the claim is the same statement as the
careful path's, and every later commit still checks the lease.
`read_execution` is the same raw read for one execution record, for callers
that ask for one often (a describe, a wait on an execution);
`EXECUTIONS_BY_ID` and `execution_records` are that read for statements
sent in someone else's pipeline (the finishing commit's read-back,
`fastcommit.pipelined_commit_reading`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlalchemy.engine import Engine

from engine.store.codec import PayloadCodec
from engine.store.pgraw import pooled_psycopg
from engine.store.records import ExecutionRecord, LoadedExecution, MachineVersion, TokenRecord
from engine.store.rows import execution_record, machine_version, token_record

__all__ = ["EXECUTIONS_BY_ID", "execution_records", "pipelined_claim", "read_execution"]

_LAZY_COMMIT = "SET LOCAL synchronous_commit TO OFF"
_CLAIM = (
    "UPDATE work_queue SET lease_owner = %(worker)s, lease_expires_at = %(expires)s, "
    "wakeups_seen = wakeups WHERE execution_id IN ("
    "SELECT execution_id FROM work_queue WHERE queue = %(queue)s AND due_at <= %(now)s "
    "AND (lease_expires_at IS NULL OR lease_expires_at <= %(now)s) "
    "ORDER BY due_at, execution_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    "RETURNING execution_id, due_at"
)
# The executions this transaction's claim leased (see the module docstring).
_CLAIMED = (
    "SELECT execution_id FROM work_queue "
    "WHERE lease_owner = %(worker)s AND lease_expires_at = %(expires)s"
)
_EXECUTIONS = f"SELECT * FROM executions WHERE execution_id IN ({_CLAIMED})"
_MACHINES = (
    "SELECT DISTINCT m.name, v.version, v.definition, v.content_hash, v.machine_type, "
    "v.created_at FROM executions e JOIN state_machines m ON m.name = e.machine "
    "JOIN state_machine_versions v ON v.machine_id = m.id AND v.version = e.version "
    f"WHERE e.execution_id IN ({_CLAIMED})"
)
_TOKENS = f"SELECT * FROM task_tokens WHERE execution_id IN ({_CLAIMED})"
_JOURNAL = f"SELECT execution_id, key, value FROM journal WHERE execution_id IN ({_CLAIMED})"


def _utc(value: Any) -> Any:
    # As the schema's UTCDateTime returns them: aware, in UTC.
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def _rows(cursor: Iterable[dict[str, Any]]) -> Iterable[SimpleNamespace]:
    for row in cursor:
        yield SimpleNamespace(**{name: _utc(value) for name, value in row.items()})


_EXECUTION = "SELECT * FROM executions WHERE execution_id = %s"
# The records of a list of ids (one bound array), read as `read_execution` reads one.
EXECUTIONS_BY_ID = "SELECT * FROM executions WHERE execution_id = ANY(%s)"


def execution_records(
    cursor: Iterable[dict[str, Any]], codec: PayloadCodec
) -> dict[str, ExecutionRecord]:
    """Execution id → record of the rows of `cursor` (`dict_row` rows of executions).

    The records `Store.get_execution` returns, payloads opened by `codec`.
    """
    return {row.execution_id: execution_record(row, codec) for row in _rows(cursor)}


def read_execution(
    engine: Engine, execution_id: str, codec: PayloadCodec
) -> ExecutionRecord | None:
    """The record of the execution with this id (None: there is none), read by the driver.

    The record `Store.get_execution` returns for an id, payloads opened by
    `codec`, at a quarter of its CPU on PostgreSQL (no SQLAlchemy statement
    or result, no isolation-level switch): one autocommit SELECT on a
    pooled connection. Raises psycopg.OperationalError when the database
    fails (wrap in the store's boundary, `boundary.mapped_errors`).
    """
    with pooled_psycopg(engine, autocommit=True) as connection:
        cursor = connection.cursor(row_factory=dict_row)
        cursor.execute(_EXECUTION, (execution_id,))
        rows = list(_rows(cursor))
    return execution_record(rows[0], codec) if rows else None


def pipelined_claim(
    engine: Engine,
    worker_id: str,
    *,
    limit: int,
    lease_seconds: float,
    now: datetime,
    queue: str,
    codec: PayloadCodec,
) -> list[tuple[str, datetime, LoadedExecution | None]]:
    """Claim up to `limit` due executions of `queue` and load them, in one round trip.

    The same answer as `WorkStore.claim_due_loaded`'s careful path. Raises
    psycopg.OperationalError when the database fails (the store's boundary maps it).
    """
    params = {
        "worker": worker_id,
        "expires": now + timedelta(seconds=lease_seconds),
        "now": now,
        "queue": queue,
        "limit": limit,
    }
    with pooled_psycopg(engine) as connection:
        with connection.pipeline():
            connection.execute(_LAZY_COMMIT)
            claim = connection.execute(_CLAIM, params)
            executions = connection.cursor(row_factory=dict_row)
            executions.execute(_EXECUTIONS, params)
            machines = connection.cursor(row_factory=dict_row)
            machines.execute(_MACHINES, params)
            tokens = connection.cursor(row_factory=dict_row)
            tokens.execute(_TOKENS, params)
            journal = connection.cursor()
            journal.execute(_JOURNAL, params)
            connection.commit()  # the one wait for every answer
        claimed = sorted(
            ((row[0], _utc(row[1])) for row in claim.fetchall()),
            key=lambda pair: (pair[1], pair[0]),
        )
        loaded = _loaded(executions, machines, tokens, journal, codec)
    return [(execution_id, due_at, loaded.get(execution_id)) for execution_id, due_at in claimed]


def _loaded(
    executions: psycopg.Cursor[dict[str, Any]],
    machines: psycopg.Cursor[dict[str, Any]],
    tokens: psycopg.Cursor[dict[str, Any]],
    journal: psycopg.Cursor[Any],
    codec: PayloadCodec,
) -> dict[str, LoadedExecution]:
    records = {row.execution_id: execution_record(row, codec) for row in _rows(executions)}
    versions: dict[tuple[str, int], MachineVersion] = {}
    for row in _rows(machines):
        version = machine_version(row)
        versions[(version.name, version.version)] = version
    token_records: dict[str, dict[str, TokenRecord]] = {
        execution_id: {} for execution_id in records
    }
    for row in _rows(tokens):
        token_records[row.execution_id][row.key] = token_record(row)
    journals: dict[str, dict[str, str]] = {execution_id: {} for execution_id in records}
    open_value = codec.open
    # One row at a time: a long journal's rows are never all alive as tuples at once.
    for execution_id, key, value in journal:
        journals[execution_id][key] = open_value(value)
    loaded: dict[str, LoadedExecution] = {}
    for execution_id, record in records.items():
        machine = versions.get((record.machine, record.version))
        if machine is not None:
            loaded[execution_id] = LoadedExecution(
                record=record,
                machine=machine,
                journal=journals[execution_id],
                last_event_id=record.last_event_id,
                tokens=token_records[execution_id],
            )
    return loaded
