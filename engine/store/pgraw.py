"""One pooled psycopg connection for a one-round-trip transaction, handed back however it ends.

PostgreSQL's fast paths (`fastcommit.pipelined_commit`, `pgstart`,
`fastclaim`) run a whole transaction in
psycopg's pipeline mode on the pool's raw driver connection. `pooled_psycopg`
owns what they all must do around it: a connection lost mid-transaction is
invalidated (its reset on return to the pool would fail noisily), any
other failure rolls the transaction back and is re-raised (a caller that
treats a collision as "let the careful path decide" catches it after), and
the connection always goes back to the pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

__all__ = ["pooled_psycopg"]


@contextmanager
def pooled_psycopg(engine: Engine) -> Iterator[psycopg.Connection[Any]]:
    """The pool's psycopg connection for one transaction; rolled back if the body raises."""
    pooled = engine.raw_connection()
    try:
        connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        try:
            yield connection
        except (psycopg.OperationalError, psycopg.InterfaceError):
            pooled.invalidate()
            raise
        except BaseException:
            connection.rollback()
            raise
    finally:
        pooled.close()
