"""One pooled connection kept checked out between a run of transactions (the commit paths').

The group commit runs one short transaction after another. Checking a
connection out of SQLAlchemy's pool and back in (with its reset) for each
costs more than some of those transactions, so each fast commit path keeps
one: `pgraw.HeldConnection` on PostgreSQL, `sqlitecommit.HeldSqlite` on
SQLite. `HeldPooled` is what both share: one thread at a time holds it (a
second caller is told to use the pool instead of waiting), it is dropped —
invalidated, so the pool does not reuse it — when it is lost, and it lets go
when the engine is disposed: at once if no transaction is under way, else
at the next checkout.
"""

from __future__ import annotations

import threading

from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

__all__ = ["HeldPooled"]


class HeldPooled:
    """A pooled connection of `engine` held between transactions (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._pooled: PoolProxiedConnection | None = None
        self._disposed = False
        sa_event.listen(engine, "engine_disposed", self._on_disposed)

    def _take(self) -> bool:
        """Hold it for one transaction (`_lock.release()` after); False while another has it."""
        return self._lock.acquire(blocking=False)

    def _kept(self) -> PoolProxiedConnection | None:
        """The connection kept from the last transaction (under `_take`); None after a dispose."""
        if self._disposed:
            self._disposed = False
            self._drop(invalidate=True)
        return self._pooled

    def _checkout(self) -> PoolProxiedConnection:
        """A fresh connection from the pool, kept from now on (under `_take`)."""
        pooled = self._pooled = self.engine.raw_connection()
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
        # is not in use, else at the next checkout.
        if self._take():
            try:
                self._drop(invalidate=True)
            finally:
                self._lock.release()
        else:
            self._disposed = True
