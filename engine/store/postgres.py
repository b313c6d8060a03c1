"""PostgreSQL, the production store: many workers on many machines sharing one database.

Workers are woken by LISTEN/NOTIFY (the NOTIFY rides in the transaction that
made work due, so it arrives exactly when the work is visible), concurrent
migrations queue on a transaction-scoped advisory lock, and a group commit
first tries the one-round-trip pipelined path of `fastcommit.py` (on an
asyncio engine, sent from the event loop itself: `asynccommit.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.engine import URL, Connection, Engine

from engine.store.asynccommit import LoopCommit
from engine.store.backend import Backend
from engine.store.codec import PayloadCodec
from engine.store.connect import create_postgres_engine, postgres_url_with_timeouts
from engine.store.fastclaim import pipelined_claim
from engine.store.fastcommit import pipelined_commit, pipelined_commit_reading
from engine.store.notify import CHANNEL, PostgresListener, Waker
from engine.store.pgraw import HeldConnection
from engine.store.records import Checkpoint, CommitResult, ExecutionRecord, LoadedExecution
from engine.store.schema import PG_BLOCK_WRITES_VERSION

__all__ = ["PostgresBackend"]

_NOTIFY_SQL = sa.text(f"SELECT pg_notify('{CHANNEL}', '')")
_JOURNAL_SQL = "SELECT key, value FROM journal WHERE execution_id = %s"
_LAZY_COMMIT_SQL = sa.text("SET LOCAL synchronous_commit TO OFF")
# Any constant works; it only has to be the same in every Stepwise process.
_MIGRATION_LOCK_KEY = 0x5757_0001


def _conninfo(url: URL) -> str:
    """libpq's connection string for a psycopg URL of ours (its query as keywords).

    libpq reads a URI's "+" literally, so the options go in as keywords.
    """
    base = url.set(drivername="postgresql", query={})
    options = {k: v for k, v in url.query.items() if isinstance(v, str)}
    return psycopg.conninfo.make_conninfo(base.render_as_string(hide_password=False), **options)


class PostgresBackend(Backend):
    """The store's ways on PostgreSQL (psycopg 3)."""

    name: ClassVar[Literal["postgresql"]] = "postgresql"
    wakes_other_processes: ClassVar[bool] = True
    writes_history_blocks_from: ClassVar[int | None] = PG_BLOCK_WRITES_VERSION
    _held: HeldConnection | None = None

    @property
    def block_writes(self) -> bool:
        """From migration 19 on, unless the commit function found missing is older than v3.

        A database at 19 whose `stepwise_commit_v3` a call found missing
        (dropped, or a role that could not create it) keeps writing blocks,
        through the careful path only (`HeldConnection.careful_only`): v2's
        rows would not compare-and-set against the blocks already written.
        Below 19 the calls are v2 or v1 and every path writes rows.
        """
        held = self._held
        if held is not None and (held.without_function or held.function_version < 3):
            return False
        return super().block_writes

    def create_engine(self, parsed: URL) -> Engine:
        engine = create_postgres_engine(parsed)
        # The group commit keeps one connection between commits (`pgraw.HeldConnection`).
        self._held = HeldConnection(engine)
        return engine

    def waker(self, parsed: URL, display_url: str, poll_interval: float) -> Waker:
        return PostgresListener(_conninfo(postgres_url_with_timeouts(parsed)), display_url)

    def loop_commit(
        self,
        engine: Engine,
        codec: PayloadCodec,
        display_url: str,
        wake_local: Callable[[], None],
    ) -> LoopCommit | None:
        """The group commit's one call on an event loop's own connection (`asynccommit.py`).

        Its connection has the pool's settings: `engine`'s URL, which carries
        the timeouts, keepalives and server options (`connect.py`). None for
        an engine not ours.
        """
        held = self._held_for(engine)
        if held is None:
            return None
        return LoopCommit(
            engine,
            held,
            conninfo=_conninfo(engine.url),
            codec=codec,
            display_url=display_url,
            wake_local=wake_local,
            block_writes=lambda: self.block_writes,
        )

    def insert_ignoring_duplicates(
        self, table: sa.Table, values: dict[str, Any], *, key: Sequence[str]
    ) -> Any:
        insert = pg_dialect.insert(table).values(**values)
        return insert.on_conflict_do_nothing(index_elements=list(key))

    def reading(self, conn: Connection) -> Connection:
        # Under READ COMMITTED every statement takes its own snapshot anyway,
        # so a read-only BEGIN … COMMIT buys no consistency: it only costs two
        # round trips. Reads run in autocommit (switched client-side by psycopg).
        return conn.execution_options(isolation_level="AUTOCOMMIT")

    def snapshot_reading(self, conn: Connection) -> Connection:
        # A history's rows and blocks are two reads (`blocks.py`): in autocommit
        # each would see its own snapshot, and an event committed between them
        # could be missed or seen twice. One REPEATABLE READ transaction (read
        # only: it never waits on a writer nor fails to serialize) sees one.
        return conn.execution_options(isolation_level="REPEATABLE READ")

    def claiming(self, conn: Connection) -> None:
        # A claim or renewal need not wait for its WAL flush: a lease lost in
        # a crash only makes the worker's next checkpoint fail its lease check
        # (which runs inside every commit), and that synchronous commit flushes
        # the WAL up to and including the claim. Effects only ever follow such
        # a commit, so no effect can rest on a claim that was not durable.
        conn.execute(_LAZY_COMMIT_SQL)

    def journal_rows(self, conn: Connection, execution_id: str) -> Iterator[tuple[str, str]]:
        # A long history's journal is tens of thousands of rows: read with the
        # driver's own cursor (same connection, same transaction), a third of
        # the CPU of building SQLAlchemy rows for each, handed over one row at
        # a time so no list of them all sets the garbage collector off.
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        try:
            with driver.cursor() as cursor:
                cursor.execute(_JOURNAL_SQL, (execution_id,))
                yield from cursor
        except (psycopg.OperationalError, psycopg.InterfaceError):
            conn.invalidate()  # a lost connection must not go back to the pool
            raise

    def notify_in(self, conn: Connection) -> None:
        conn.execute(_NOTIFY_SQL)

    def lock_migrations(self, conn: Connection) -> None:
        # A migration may rebuild an index on a big table, and another
        # process's migration may hold the lock meanwhile: wait for either.
        conn.execute(sa.text("SET LOCAL statement_timeout = '15min'"))
        conn.execute(sa.text("SET LOCAL lock_timeout = '15min'"))
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})

    def fast_commit(
        self,
        engine: Engine,
        checkpoints: Sequence[Checkpoint],
        worker_id: str,
        now: datetime,
        codec: PayloadCodec,
    ) -> tuple[list[CommitResult], bool] | None:
        held = self._held_for(engine)
        if held is None:
            return None
        return pipelined_commit(held, checkpoints, worker_id, now, codec, blocks=self.block_writes)

    def fast_commit_reading(
        self,
        engine: Engine,
        checkpoints: Sequence[Checkpoint],
        read_back: Sequence[str],
        worker_id: str,
        now: datetime,
        codec: PayloadCodec,
    ) -> tuple[list[CommitResult], bool, dict[str, ExecutionRecord]] | None:
        held = self._held_for(engine)
        if held is None:
            return None
        return pipelined_commit_reading(
            held, checkpoints, read_back, worker_id, now, codec, blocks=self.block_writes
        )

    def _held_for(self, engine: Engine) -> HeldConnection | None:
        """`engine`'s kept commit connection; None (the careful path) for an engine not ours."""
        held = self._held
        return held if held is not None and held.engine is engine else None

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
        return pipelined_claim(
            engine,
            worker_id,
            limit=limit,
            lease_seconds=lease_seconds,
            now=now,
            queue=queue,
            codec=codec,
        )
