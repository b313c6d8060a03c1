"""SQL effects: a SQL activity's statements and the record of their result, in one transaction.

`run_sql_effect` runs the statements under the execution's lease (the lease
check of `checkpoints.py`, under the work row's lock) inside a savepoint,
and records their result in `sql_effects` keyed by the step, all in one
transaction: a crash can never leave the effect without its record or the
record without the effect, and a step already recorded returns its record
instead of running again. A statement the database rejects rolls back to
the savepoint and becomes a ``Stepwise.SqlError`` outcome. A connection
closed under the statements is an outage the first time (the step reruns)
and, lost again while a writable database answers and the lease holds, a
``Stepwise.SqlError`` outcome (`EffectStore._lost_connection`). What the
statements set on their session stays with them: ``RESET ALL``, ``RESET
SESSION AUTHORIZATION`` and ``DISCARD TEMP`` after them and a connection
closed after use on PostgreSQL; no ``PRAGMA``, ``ATTACH``, ``DETACH`` or
temporary objects on SQLite.

With an operator's role (PostgreSQL only), the statements run under
``SET LOCAL ROLE`` inside the savepoint and ``RESET ROLE`` follows them, so
they can touch only what that role was granted, while the record of their
result is still written by the engine's own user in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from engine.store.base import StoreBase
from engine.store.boundary import first_line
from engine.store.checkpoints import holds_lease, lock_work
from engine.store.errors import LeaseLost, StoreUnavailable
from engine.store.schema import sql_effects

__all__ = ["EffectStore", "Statement"]

# Steps whose connection closed under their statements, kept per store
# (`EffectStore._lost_connection`); the oldest go first past this many.
_LOSSES_KEPT = 1024


class Statement(Protocol):
    """One statement of a SQL activity: text with named parameters."""

    sql: str
    parameters: dict[str, Any]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


class _ConnectionLost(Exception):
    """A statement's connection closed under it (`EffectStore._lost_connection`)."""

    def __init__(self, failure: sa_exc.DBAPIError) -> None:
        super().__init__(str(failure))
        self.failure = failure


class EffectStore(StoreBase):
    """The store's call for SQL activities (a part of `Store`)."""

    def run_sql_effect(
        self,
        *,
        execution_id: str,
        key: str,
        worker_id: str,
        statements: Sequence[Statement],
        now: datetime,
        role: str | None = None,
    ) -> dict[str, Any]:
        """Run `statements` once for step `key`, recording their result in the same transaction.

        Returns the outcome ``{"ok": {"Results": [...]}}`` or, when the
        database rejects a statement, ``{"error": "Stepwise.SqlError",
        "cause": …}`` with nothing of the statements kept. A step already run
        returns its recorded result without running anything. Raises
        LeaseLost when `worker_id` no longer holds the execution's lease.
        `role` runs the statements as that PostgreSQL role (a SQL error
        outcome on SQLite, which has no roles).
        """
        step = (execution_id, key)
        lost: _ConnectionLost | None = None
        try:
            with self._write() as conn:
                _check_lease(conn, execution_id, worker_id, now, "before")
                done = conn.execute(
                    sa.select(sql_effects.c.result).where(
                        sql_effects.c.execution_id == execution_id, sql_effects.c.key == key
                    )
                ).first()
                if done is not None:
                    return {"ok": json.loads(self._codec.open(done.result))}
                if conn.dialect.name == "postgresql":
                    # What the statements set on their session (a session lock,
                    # a LISTEN, a prepared statement) must not outlive them on a
                    # pooled connection the engine reuses: closed after use (a
                    # new session for each SQL step, ~10 ms on a local server).
                    conn.detach()
                outcome = _run_statements(conn, statements, role)
                if "error" in outcome:
                    return outcome
                with _lost_as_connection_lost():  # before COMMIT: a loss here kept nothing
                    conn.execute(
                        sa.insert(sql_effects).values(
                            execution_id=execution_id,
                            key=key,
                            result=self._codec.seal(json.dumps(outcome)),
                            recorded_at=now,
                        )
                    )
        except _ConnectionLost as closed:
            lost = closed
            return self._lost_connection(closed.failure, step, worker_id, now)
        finally:
            if lost is None and self._lost_sql_connections:
                self._lost_sql_connections.pop(step, None)  # any outcome but a loss
        return {"ok": outcome}

    def _lost_connection(
        self, failure: sa_exc.DBAPIError, step: tuple[str, str], worker_id: str, now: datetime
    ) -> dict[str, Any]:
        """The outcome of statements whose connection closed under them (nothing of them kept).

        The first loss of a step's connection is an outage (StoreUnavailable):
        the step reruns, under the same key, once the database answers. A
        second loss of the same step is probed: while the database is down
        (or only a read-only standby answers) it is an outage again; while it
        answers and the lease holds, the statements themselves close their
        connection (ending their own backend, outliving an
        idle-in-transaction timeout): a ``Stepwise.SqlError`` outcome, which a
        Retry or Catch bounds, never an outage rerun without end.
        """
        losses = self._lost_sql_connections
        reason = first_line(failure)
        seen = losses.pop(step, 0) + 1
        while len(losses) >= _LOSSES_KEPT:
            try:  # another store thread may evict at once
                losses.pop(next(iter(losses)), None)
            except (RuntimeError, StopIteration):
                break
        losses[step] = seen
        if seen == 1:
            raise StoreUnavailable(
                f"database {self._display}: the connection closed under a SQL activity's "
                f"statements ({reason})"
            )
        execution_id = step[0]
        try:
            with self._write() as conn:  # a writable primary, and the lease still ours
                _check_lease(conn, execution_id, worker_id, now, "during")
        except LeaseLost:
            losses.pop(step, None)
            raise
        losses.pop(step, None)
        return {
            "error": "Stepwise.SqlError",
            "cause": f"the database closed the connection while the statements ran: {reason}",
        }


def _check_lease(
    conn: Connection, execution_id: str, worker_id: str, now: datetime, when: str
) -> None:
    """Raise LeaseLost unless `worker_id` holds the execution's lease (its work row locked)."""
    work = lock_work(conn, [execution_id]).get(execution_id)
    if work is None or not holds_lease(work.lease_owner, work.lease_expires_at, worker_id, now):
        raise LeaseLost(f"execution {execution_id}: lease lost {when} a SQL activity")


@contextmanager
def _lost_as_connection_lost() -> Iterator[None]:
    """Raise _ConnectionLost for a driver error that lost the connection; others pass."""
    try:
        yield
    except sa_exc.DBAPIError as failure:
        if failure.connection_invalidated:
            # The connection is gone, and its transaction with it: nothing
            # here may run on it again (`EffectStore._lost_connection`).
            raise _ConnectionLost(failure) from failure
        raise


@cache
def _sqlite_guard() -> Callable[..., int]:
    """sqlite3's authorizer for a SQL activity's statements (sqlite3 loads only here).

    It refuses PRAGMA, ATTACH and DETACH, which would change the engine's own
    connection past the statements (a ``PRAGMA query_only`` would refuse
    every later write on it), and temporary tables, views, indexes and
    triggers, which would outlive them on that connection, or hide the
    engine's own tables from it (a temporary ``sql_effects`` would take the
    record of their result).
    """
    import sqlite3

    refused = frozenset(
        {
            sqlite3.SQLITE_PRAGMA,
            sqlite3.SQLITE_ATTACH,
            sqlite3.SQLITE_DETACH,
            sqlite3.SQLITE_CREATE_TEMP_TABLE,
            sqlite3.SQLITE_CREATE_TEMP_VIEW,
            sqlite3.SQLITE_CREATE_TEMP_INDEX,
            sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
        }
    )
    deny, allow = sqlite3.SQLITE_DENY, sqlite3.SQLITE_OK

    def guard(action: int, *args: Any) -> int:
        return deny if action in refused else allow

    return guard


def _run_statements(
    conn: Connection, statements: Sequence[Statement], role: str | None
) -> dict[str, Any]:
    """Run `statements` in a savepoint: ``{"Results": [...]}``, or a SQL error with none kept.

    Raises _ConnectionLost when the connection closes under them.
    """
    from activities.sql import set_role_statement

    postgres = conn.dialect.name == "postgresql"
    if role is not None and not postgres:
        return {"error": "Stepwise.SqlError", "cause": "a SQL role (--sql-role) needs PostgreSQL"}
    raw = None if postgres else conn.connection.dbapi_connection
    results: list[dict[str, Any]] = []
    savepoint = conn.begin_nested()
    try:
        with _lost_as_connection_lost():
            if role is not None:
                conn.exec_driver_sql(set_role_statement(role))
            if raw is not None:
                raw.set_authorizer(_sqlite_guard())
            for statement in statements:
                cursor = conn.execute(sa.text(statement.sql), statement.parameters)
                if cursor.returns_rows:
                    columns = list(cursor.keys())
                    rows = [
                        {c: _jsonable(v) for c, v in zip(columns, row, strict=True)}
                        for row in cursor
                    ]
                    results.append({"Rows": rows, "RowCount": len(rows)})
                else:
                    results.append({"Rows": [], "RowCount": max(cursor.rowcount, 0)})
            if postgres:
                # A deferred constraint they broke fails here, as their own
                # error, not at the engine's COMMIT (an outage rerun forever).
                conn.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")
                # What they SET (a search_path, a read-only default) would
                # still hold for the record below: back to the defaults.
                conn.exec_driver_sql("RESET ALL")
                # Nor the user a superuser's statements switched to (it
                # outlives RESET ALL; any login may reset to itself).
                conn.exec_driver_sql("RESET SESSION AUTHORIZATION")
                if role is not None:
                    # SET LOCAL outlives the savepoint: the record is the engine's to write.
                    conn.exec_driver_sql("RESET ROLE")
                # A temporary table named as one of the engine's would take its record.
                conn.exec_driver_sql("DISCARD TEMP")
    except sa_exc.StatementError as failure:  # a DBAPIError too: the database refused one
        savepoint.rollback()
        return {"error": "Stepwise.SqlError", "cause": first_line(failure)}
    finally:
        if raw is not None:
            raw.set_authorizer(None)
    with _lost_as_connection_lost():  # before COMMIT: a loss here kept nothing
        savepoint.commit()
    return {"Results": results}
