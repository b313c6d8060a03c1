"""SQLite, the embedded default: a file in WAL mode shared by the processes on one machine.

Its engine is set up in `connect.py` (our own BEGIN IMMEDIATE, WAL, busy
timeout). There is no cross-process signal, so idle workers poll at the
store's poll interval and are woken at once by work made due in their own
process; its write lock (BEGIN IMMEDIATE) already serializes migrations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Engine

from engine.store.backend import Backend
from engine.store.connect import create_sqlite_engine
from engine.store.notify import SqliteWaker, Waker

__all__ = ["SqliteBackend"]


class SqliteBackend(Backend):
    """The store's ways on a SQLite file (or ``:memory:``)."""

    name: ClassVar[Literal["sqlite"]] = "sqlite"

    def create_engine(self, parsed: URL) -> Engine:
        return create_sqlite_engine(parsed)

    def waker(self, parsed: URL, display_url: str, poll_interval: float) -> Waker:
        return SqliteWaker(poll_interval)

    def insert_ignoring_duplicates(
        self, table: sa.Table, values: dict[str, Any], *, key: Sequence[str]
    ) -> Any:
        insert = sqlite_dialect.insert(table).values(**values)
        return insert.on_conflict_do_nothing(index_elements=list(key))
