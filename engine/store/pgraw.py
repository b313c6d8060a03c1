"""PostgreSQL's raw psycopg connections for one-round-trip transactions, always handed back.

PostgreSQL's fast paths (`fastcommit.pipelined_commit`, `pgstart`,
`fastclaim`) run a whole transaction in psycopg's pipeline mode on a raw
driver connection. `pooled_psycopg` owns what they all must do around it: a
connection lost mid-transaction is invalidated (its reset on return to the
pool would fail noisily), any other failure rolls the transaction back and
is re-raised (a caller that treats a collision as "let the careful path
decide" catches it after), and the connection always goes back to the pool.
`HeldConnection` does the same for the group commit, which runs one
transaction after another: it keeps one pooled connection checked out
between commits instead of paying the pool's checkout, check-in and reset
each time (and, for commits that are one statement in autocommit, its
cursor too). It still pings a connection that sat idle (as the pool does),
replaces one that was lost, lets a concurrent caller use the pool, and lets
go when the engine is disposed (`Store.reset_connections`, `Store.close`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from engine.store import connect
from engine.store.held import HeldPooled

__all__ = ["HeldConnection", "pooled_psycopg"]


@contextmanager
def pooled_psycopg(
    engine: Engine, *, autocommit: bool = False
) -> Iterator[psycopg.Connection[Any]]:
    """The pool's psycopg connection for one transaction; rolled back if the body raises.

    `autocommit`: for one statement that is its own transaction (or reads
    needing none); the connection goes back to the pool out of autocommit.
    """
    pooled = engine.raw_connection()
    try:
        connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        try:
            if autocommit:
                connection.autocommit = True
            yield connection
        except (psycopg.OperationalError, psycopg.InterfaceError):
            pooled.invalidate()
            raise
        except BaseException:
            connection.rollback()
            raise
        finally:
            if autocommit and not connection.closed:
                connection.autocommit = False
    finally:
        pooled.close()


class HeldConnection(HeldPooled):
    """One pooled psycopg connection kept checked out for a run of transactions."""

    # The group commit's function this connection's database has: migration
    # 19's `stepwise_commit_v3` until a call finds it missing, then 15's v2,
    # then 14's v1 (same arguments and answer; v3 writes history blocks, the
    # others rows); `without_function` once v1 is missing too (a database
    # not migrated to 14: the pipeline).
    function_version: int = 3
    without_function: bool = False
    # Set when v3 is found missing after this process wrote history blocks
    # (a database at 19 whose function was dropped, or never created by
    # this role): every group then goes to the careful path, which writes
    # blocks with their compare-and-set. Falling back to v2's rows instead
    # could let a re-sent group's rows duplicate events a block holds.
    careful_only: bool = False

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """The held connection for one transaction; rolled back if the body raises.

        A caller that finds it in use by another thread gets a pooled one
        (`pooled_psycopg`) instead of waiting. A connection lost in use is
        invalidated and replaced at the next call.
        """
        if not self._take():
            with pooled_psycopg(self.engine) as pooled_connection:
                yield pooled_connection
            return
        with self._held(autocommit=False) as connection:
            yield connection

    @contextmanager
    def statement(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor in autocommit, for one statement that is its own transaction.

        The held connection stays in autocommit between such statements and
        keeps its cursor (`transaction` switches it back); a pooled one, lent
        while the held one is in use, goes back to the pool as it came.
        """
        if not self._take():
            with pooled_psycopg(self.engine, autocommit=True) as pooled_connection:
                yield pooled_connection.cursor()
            return
        with self._held(autocommit=True) as connection:
            cursor = self._cursor
            if cursor is None or cursor.connection is not connection:
                cursor = self._cursor = connection.cursor()
            yield cursor

    _cursor: psycopg.Cursor[Any] | None = None

    @contextmanager
    def _held(self, *, autocommit: bool) -> Iterator[psycopg.Connection[Any]]:
        """The held connection (taken already by `_take`) in this autocommit mode."""
        try:
            pooled = self._pinged() or self._checkout()
            connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
            try:
                if connection.autocommit != autocommit:
                    connection.autocommit = autocommit
                yield connection
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._drop(invalidate=True)
                raise
            except BaseException:
                connection.rollback()
                raise
            finally:
                self._used_at = time.monotonic()
        finally:
            self._lock.release()

    _used_at = 0.0

    def _pinged(self) -> PoolProxiedConnection | None:
        """The kept connection, pinged if it sat idle (as the pool does); None if it is unusable."""
        pooled = self._kept()
        if pooled is None or time.monotonic() - self._used_at < connect._PING_AFTER_IDLE_SECONDS:
            return pooled
        try:
            driver: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
            driver.execute("SELECT 1")
            driver.rollback()
        except Exception:  # any failure means this connection is unusable
            self._drop(invalidate=True)
            return None
        return pooled
