"""SQL effects: a SQL activity's statements and the record of their result, in one transaction.

`run_sql_effect` runs the statements under the execution's lease (the lease
check of `checkpoints.py`, under the work row's lock) inside a savepoint,
and records their result in `sql_effects` keyed by the step, all in one
transaction: a crash can never leave the effect without its record or the
record without the effect, and a step already recorded returns its record
instead of running again. A statement the database rejects rolls back to
the savepoint and becomes a ``Stepwise.SqlError`` outcome. A connection
closed under the statements is an outage while the database is down (the
step reruns), and a ``Stepwise.SqlError`` outcome while it answers.

With an operator's role (PostgreSQL only), the statements run under
``SET LOCAL ROLE`` inside the savepoint and ``RESET ROLE`` follows them, so
they can touch only what that role was granted, while the record of their
result is still written by the engine's own user in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from engine.store.base import StoreBase
from engine.store.checkpoints import holds_lease, lock_work
from engine.store.errors import LeaseLost
from engine.store.schema import sql_effects

__all__ = ["EffectStore", "Statement"]


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
        from activities.sql import set_role_statement

        try:
            with self._write() as conn:
                work = lock_work(conn, [execution_id]).get(execution_id)
                if work is None or not holds_lease(
                    work.lease_owner, work.lease_expires_at, worker_id, now
                ):
                    raise LeaseLost(f"execution {execution_id}: lease lost before a SQL activity")
                done = conn.execute(
                    sa.select(sql_effects.c.result).where(
                        sql_effects.c.execution_id == execution_id, sql_effects.c.key == key
                    )
                ).first()
                if done is not None:
                    return {"ok": json.loads(self._codec.open(done.result))}
                results: list[dict[str, Any]] = []
                savepoint = conn.begin_nested()
                try:
                    if role is not None:
                        if conn.dialect.name != "postgresql":
                            savepoint.rollback()
                            return {
                                "error": "Stepwise.SqlError",
                                "cause": "a SQL role (--sql-role) needs PostgreSQL",
                            }
                        conn.exec_driver_sql(set_role_statement(role))
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
                    if role is not None:
                        # SET LOCAL outlives the savepoint: the record is the engine's to write.
                        conn.exec_driver_sql("RESET ROLE")
                except sa_exc.DBAPIError as failure:
                    if failure.connection_invalidated:
                        # The connection is gone, and its transaction with it:
                        # nothing here may run on it again (`_lost_connection`).
                        raise _ConnectionLost(failure) from failure
                    savepoint.rollback()
                    message = (
                        str(failure.orig).strip().splitlines()[0] if failure.orig else str(failure)
                    )
                    return {"error": "Stepwise.SqlError", "cause": message}
                except sa_exc.StatementError as failure:
                    savepoint.rollback()
                    return {"error": "Stepwise.SqlError", "cause": str(failure).splitlines()[0]}
                savepoint.commit()
                result = {"Results": results}
                conn.execute(
                    sa.insert(sql_effects).values(
                        execution_id=execution_id,
                        key=key,
                        result=self._codec.seal(json.dumps(result)),
                        recorded_at=now,
                    )
                )
            return {"ok": result}
        except _ConnectionLost as lost:
            return self._lost_connection(lost.failure)

    def _lost_connection(self, failure: sa_exc.DBAPIError) -> dict[str, Any]:
        """The outcome of statements whose connection closed under them (nothing of them kept).

        While the database is down this is an outage: the probe raises
        StoreUnavailable and the step reruns, under the same key, once the
        database is back. While it answers, the connection was closed on
        purpose (a statement ending its own backend, an operator's
        ``pg_terminate_backend``): a ``Stepwise.SqlError`` outcome, which a
        Retry or Catch handles like any rejected statement, never an outage
        that would rerun the same statements without end.
        """
        with self._read() as conn:
            conn.execute(sa.select(sa.literal(1)))
        reason = str(failure.orig).strip().splitlines()[0] if failure.orig else str(failure)
        return {
            "error": "Stepwise.SqlError",
            "cause": f"the database closed the connection while the statements ran: {reason}",
        }
