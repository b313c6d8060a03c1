"""SQLite, the embedded default: a file in WAL mode shared by the processes on one machine.

Its engine is set up in `connect.py` (our own BEGIN IMMEDIATE, WAL, busy
timeout). There is no cross-process signal, so idle workers poll at the
store's poll interval and are woken at once by work made due in their own
process; its write lock (BEGIN IMMEDIATE) already serializes migrations. A
group commit first tries the raw driver's path of `sqlitecommit.py`, a start
batch that of `starts.py` (`StartStore._raw_batch`); both on one kept connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Engine

from engine.store.backend import Backend
from engine.store.codec import PayloadCodec
from engine.store.connect import create_sqlite_engine
from engine.store.notify import SqliteWaker, Waker
from engine.store.rawstart import utc_time_processor
from engine.store.records import Checkpoint, CommitResult, ExecutionRecord, LoadedExecution
from engine.store.schema import HISTORY_BLOCKS_VERSION
from engine.store.sqlitecommit import HeldSqlite, raw_commit, raw_commit_reading

__all__ = ["SqliteBackend"]

_JOURNAL_SQL = "SELECT key, value FROM journal WHERE execution_id = ?"
# The claim's own condition (`WorkStore._claim`): is any row of the queue claimable now?
_ANY_CLAIMABLE = (
    "SELECT 1 FROM work_queue WHERE queue = ? AND due_at <= ? "
    "AND (lease_expires_at IS NULL OR lease_expires_at <= ?) LIMIT 1"
)


class SqliteBackend(Backend):
    """The store's ways on a SQLite file (or ``:memory:``)."""

    name: ClassVar[Literal["sqlite"]] = "sqlite"
    writes_history_blocks_from: ClassVar[int | None] = HISTORY_BLOCKS_VERSION

    _held: HeldSqlite | None = None

    def create_engine(self, parsed: URL) -> Engine:
        engine = create_sqlite_engine(parsed)
        # The group commit keeps one connection between commits (`sqlitecommit.HeldSqlite`).
        self._held = HeldSqlite(engine)
        return engine

    def waker(self, parsed: URL, display_url: str, poll_interval: float) -> Waker:
        return SqliteWaker(poll_interval)

    def insert_ignoring_duplicates(
        self, table: sa.Table, values: dict[str, Any], *, key: Sequence[str]
    ) -> Any:
        insert = sqlite_dialect.insert(table).values(**values)
        return insert.on_conflict_do_nothing(index_elements=list(key))

    def journal_rows(self, conn: Connection, execution_id: str) -> Iterator[tuple[str, str]]:
        # A long history's journal is tens of thousands of rows: read with the
        # driver's own cursor (same connection, same transaction), half the CPU
        # of building SQLAlchemy rows for each, and one row at a time, so the
        # caller keeps the strings and each row's tuple is freed at once (a
        # list of them all would set the garbage collector off, repeatedly).
        # Errors are wrapped as SQLAlchemy's, so the store's boundary maps them.
        driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        try:
            yield from driver.execute(_JOURNAL_SQL, (execution_id,))
        except sqlite3.Error as exc:
            raise sa_exc.DBAPIError.instance(
                _JOURNAL_SQL, (execution_id,), exc, sqlite3.Error
            ) from exc

    def held_for(self, engine: Engine) -> HeldSqlite | None:
        """The connection the fast paths keep for `engine`; None for an engine not made here.

        The group commit (`fast_commit`) and a start batch (`starts.py`) both run on it.
        """
        held = self._held
        return held if held is not None and held.engine is engine else None

    def fast_commit(
        self,
        engine: Engine,
        checkpoints: Sequence[Checkpoint],
        worker_id: str,
        now: datetime,
        codec: PayloadCodec,
    ) -> tuple[list[CommitResult], bool] | None:
        held = self.held_for(engine)
        if held is None:
            return None  # an engine this backend did not make: the careful path
        return raw_commit(held, checkpoints, worker_id, now, codec, blocks=self.block_writes)

    def fast_commit_reading(
        self,
        engine: Engine,
        checkpoints: Sequence[Checkpoint],
        read_back: Sequence[str],
        worker_id: str,
        now: datetime,
        codec: PayloadCodec,
    ) -> tuple[list[CommitResult], bool, dict[str, ExecutionRecord]] | None:
        """`fast_commit`, each ending execution of `read_back` read inside its transaction.

        No read of its own after the commit (`sqlitecommit.raw_commit_reading`).
        """
        held = self.held_for(engine)
        if held is None:
            return None  # an engine this backend did not make: the careful path
        return raw_commit_reading(
            held, checkpoints, read_back, worker_id, now, codec, blocks=self.block_writes
        )

    def fast_claim(
        self,
        engine: Engine,
        worker_id: str,
        *,
        limit: int,
        lease_seconds: float,
        now: datetime,
        queue: str,
        codec: PayloadCodec,
    ) -> list[tuple[str, datetime, LoadedExecution | None]] | None:
        """Nothing claimable: [] from one read, with no write transaction; else None.

        An idle worker polls ~10 times a second (`SqliteWaker`); the careful
        claim takes the write lock (BEGIN IMMEDIATE) and runs through
        SQLAlchemy each time (~1.2 ms of the store thread's CPU). This reads
        the claim's own condition on the kept connection, outside any
        transaction (a snapshot of what is committed): no row means the claim
        would lease nothing now. A row committed after the read is found by
        the next wake-up or poll, as if the claim had come a moment earlier.
        When a row is claimable (None), the careful claim leases and loads it.
        """
        held = self.held_for(engine)
        if held is None or not held.keeps_own:
            return None  # one connection for every path: it may be inside a transaction
        stamp = utc_time_processor(engine.dialect)(now)
        with held.connection(write=False) as driver:
            try:
                row = driver.execute(_ANY_CLAIMABLE, (queue, stamp, stamp)).fetchone()
            except sqlite3.Error as error:
                raise sa_exc.DBAPIError.instance(
                    _ANY_CLAIMABLE, (queue, stamp, stamp), error, sqlite3.Error
                ) from error
        return None if row is not None else []
