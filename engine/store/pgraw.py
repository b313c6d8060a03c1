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
each time. It still pings a connection that sat idle (as the pool does),
replaces one that was lost, lets a concurrent caller use the pool, and lets
go when the engine is disposed (`Store.reset_connections`, `Store.close`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from engine.store import connect

__all__ = ["HeldConnection", "pooled_psycopg"]


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


class HeldConnection:
    """One pooled psycopg connection kept checked out for a run of transactions."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._pooled: PoolProxiedConnection | None = None
        self._used_at = 0.0
        self._disposed = False
        sa_event.listen(engine, "engine_disposed", self._on_disposed)

    @property
    def engine(self) -> Engine:
        """The engine whose pool the connection comes from."""
        return self._engine

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """The held connection for one transaction; rolled back if the body raises.

        A caller that finds it in use by another thread gets a pooled one
        (`pooled_psycopg`) instead of waiting. A connection lost in use is
        invalidated and replaced at the next call.
        """
        if not self._lock.acquire(blocking=False):
            with pooled_psycopg(self._engine) as pooled_connection:
                yield pooled_connection
            return
        try:
            pooled = self._checkout()
            connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
            try:
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

    def _checkout(self) -> PoolProxiedConnection:
        """The held connection (under the lock): fresh after a dispose, pinged after idling."""
        if self._disposed:
            self._disposed = False
            self._drop(invalidate=True)
        pooled = self._pooled
        if (
            pooled is not None
            and time.monotonic() - self._used_at >= connect._PING_AFTER_IDLE_SECONDS
        ):
            try:
                driver: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
                driver.execute("SELECT 1")
                driver.rollback()
            except Exception:  # any failure means this connection is unusable
                self._drop(invalidate=True)
                pooled = None
        if pooled is None:
            # The pool pings it if it sat idle there, and replaces a dead one.
            pooled = self._pooled = self._engine.raw_connection()
        return pooled

    def _drop(self, *, invalidate: bool) -> None:
        pooled, self._pooled = self._pooled, None
        if pooled is None:
            return
        if invalidate:
            pooled.invalidate()
        pooled.close()

    def _on_disposed(self, _engine: Engine) -> None:
        # The pool's connections are being closed: ours goes too, now if it
        # is not in use, else by the next transaction.
        if self._lock.acquire(blocking=False):
            try:
                self._drop(invalidate=True)
            finally:
                self._lock.release()
        else:
            self._disposed = True
