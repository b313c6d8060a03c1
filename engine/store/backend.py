"""What differs between the databases the store runs on, behind one small interface.

`Backend` names every place SQLite and PostgreSQL behave differently for the
store: how the SQLAlchemy engine is set up, how waiting workers are woken,
how an insert skips an existing row, how concurrent migrations queue up and
whether a group commit has a faster path. `engine/store/sqlite.py` and
`engine/store/postgres.py` each subclass it (the DBOS habit of
`_sys_db_sqlite.py` / `_sys_db_postgres.py`), so the store's transactions
are written once, with no branches on the dialect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from engine.store.codec import PayloadCodec
from engine.store.notify import Waker
from engine.store.records import Checkpoint, CommitResult, ExecutionRecord, LoadedExecution
from engine.store.schema import HISTORY_BLOCKS_VERSION, SCHEMA_VERSION, journal

__all__ = ["Backend"]


class Backend:
    """One database's ways; the defaults are the portable behaviour."""

    name: ClassVar[Literal["sqlite", "postgresql"]]
    # Whether `notify_in` reaches workers in other processes (else they poll).
    wakes_other_processes: ClassVar[bool] = False
    # The schema version the store found (or migrated to): `found_schema`.
    schema_version: int = SCHEMA_VERSION
    # Whether the database has history_blocks (migration 18), set by the
    # store: one opened unmigrated on an older database writes history rows.
    history_blocks: bool = True
    # The schema version from which its commits write history blocks (None:
    # never; one row per event before it; readers merge both either way).
    writes_history_blocks_from: ClassVar[int | None] = None

    def found_schema(self, version: int) -> None:
        """Note the database's schema version (the store's open and its migrations set it)."""
        self.schema_version = version
        self.history_blocks = version >= HISTORY_BLOCKS_VERSION

    @property
    def block_writes(self) -> bool:
        """Whether a commit on this database writes its events as history blocks."""
        start = self.writes_history_blocks_from
        return self.history_blocks and start is not None and self.schema_version >= start

    def create_engine(self, parsed: URL) -> Engine:
        """The SQLAlchemy engine for a parsed URL of this backend."""
        raise NotImplementedError

    def waker(self, parsed: URL, display_url: str, poll_interval: float) -> Waker:
        """How idle workers wait for work and are woken."""
        raise NotImplementedError

    def insert_ignoring_duplicates(
        self, table: sa.Table, values: dict[str, Any], *, key: Sequence[str]
    ) -> Any:
        """An INSERT of one row that does nothing when the unique `key` columns are taken."""
        raise NotImplementedError

    def reading(self, conn: Connection) -> Connection:
        """`conn` set up for a read-only unit of work (the default: a transaction, one snapshot)."""
        return conn

    def snapshot_reading(self, conn: Connection) -> Connection:
        """`conn` set up for reads that must all see one snapshot (a history's rows and blocks).

        The default is `reading`'s transaction, which is one snapshot.
        """
        return self.reading(conn)

    def claiming(self, conn: Connection) -> None:
        """Set up the transaction of a lease claim or renewal (nothing by default)."""

    def journal_rows(self, conn: Connection, execution_id: str) -> Iterable[tuple[str, str]]:
        """Every (key, stored value) journal row of one execution, read on `conn` as iterated."""
        rows = conn.execute(
            sa.select(journal.c.key, journal.c.value).where(journal.c.execution_id == execution_id)
        )
        return [(row.key, row.value) for row in rows]

    def notify_in(self, conn: Connection) -> None:
        """Queue a wake-up for other processes, delivered when this transaction commits."""

    def lock_migrations(self, conn: Connection) -> None:
        """Make concurrent migrations of one database take turns (within this transaction)."""

    def fast_commit(
        self,
        engine: Engine,
        checkpoints: Sequence[Checkpoint],
        worker_id: str,
        now: datetime,
        codec: PayloadCodec,
    ) -> tuple[list[CommitResult], bool] | None:
        """A faster group commit, if this backend has one; None takes the careful path.

        Every payload it writes is sealed by `codec`.
        """
        return None

    def fast_commit_reading(
        self,
        engine: Engine,
        checkpoints: Sequence[Checkpoint],
        read_back: Sequence[str],
        worker_id: str,
        now: datetime,
        codec: PayloadCodec,
    ) -> tuple[list[CommitResult], bool, dict[str, ExecutionRecord]] | None:
        """`fast_commit`, and `read_back`'s records if this backend reads them in the same trip.

        The records (id → record) are read after the commit is durable; the
        default reads none (the caller reads them). None takes the careful path.
        """
        fast = self.fast_commit(engine, checkpoints, worker_id, now, codec)
        return None if fast is None else (fast[0], fast[1], {})

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
        """Claim and load in fewer round trips, if this backend can; None takes the careful path."""
        return None
