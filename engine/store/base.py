"""The store's foundation: opening a database, its transactions, migrations and wake-ups.

`StoreBase` holds what every part of the `Store` shares — the SQLAlchemy
engine, the backend (`sqlite.py` or `postgres.py`, chosen once from the URL),
the waker — and opens every transaction the store makes. Each transaction
passes through the error boundary (`boundary.py`), so a driver failure
leaves the store only as `StoreUnavailable`. The store's jobs are mixins on
this base, one module each: `machines.py`, `work.py`, `tokens.py`,
`effects.py`, and `store.py` for executions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import URL, Connection

from engine.store import schema
from engine.store.backend import Backend
from engine.store.boundary import mapped_errors, permanent
from engine.store.codec import PayloadCodec, codec_from_environment
from engine.store.connect import parse_url
from engine.store.errors import StoreUnavailable
from engine.store.notify import Waker

__all__ = ["StoreBase"]


def _backend_class(dialect: str) -> type[Backend]:
    # Each backend (psycopg, or sqlite3 and SQLAlchemy's SQLite dialect) loads
    # only for its own URL: a PostgreSQL worker never maps SQLite's libraries.
    if dialect == "postgresql":
        from engine.store.postgres import PostgresBackend

        return PostgresBackend
    from engine.store.sqlite import SqliteBackend

    return SqliteBackend


class StoreBase:
    """The durable store on one database URL (SQLite file or PostgreSQL).

    Opening a store checks the connection and applies any missing migration,
    so a fresh database is ready at once. With ``create=False`` (what read
    commands use) it creates nothing: a missing SQLite file or a database
    without Stepwise's schema raises a permanent StoreUnavailable naming the
    URL. Raises StoreUnavailable (a message, never a traceback) when the
    database cannot be reached, is not a database, or is newer than this code.
    """

    url: str
    dialect: Literal["sqlite", "postgresql"]

    def __init__(
        self,
        url: str,
        *,
        poll_interval: float = 0.1,
        auto_migrate: bool = True,
        codec: PayloadCodec | None = None,
        create: bool = True,
    ) -> None:
        parsed, self.dialect = parse_url(url)
        # Payload encryption: the given codec, else the keys the environment configures.
        self._codec = codec_from_environment() if codec is None else codec
        self.url = parsed.render_as_string(hide_password=False)
        self._display = parsed.render_as_string(hide_password=True)
        _refuse_missing_directory(parsed, self._display)
        if not create:
            _refuse_missing_file(parsed, self._display)
        self._backend: Backend = _backend_class(self.dialect)()
        self._engine = self._backend.create_engine(parsed)
        self._waker: Waker = self._backend.waker(parsed, self._display, poll_interval)
        # The event loop's pairs of start batches and commit groups, by the
        # `run_db` they go through (engine/writepairs.py): kept here, so they
        # go when the store goes.
        self.write_pairs: dict[Any, Any] = {}
        # SQL activities' steps whose connection closed under their
        # statements, by (execution, key): how often (engine/store/effects.py).
        self._lost_sql_connections: dict[tuple[str, str], int] = {}
        try:
            with self._read() as conn:
                version = schema.current_version(conn)
        except StoreUnavailable:
            self._engine.dispose()
            raise
        if version > schema.SCHEMA_VERSION:
            self._engine.dispose()
            raise permanent(
                f"database {self._display}: the schema is at version {version}, newer than "
                f"this Stepwise understands ({schema.SCHEMA_VERSION}); upgrade Stepwise"
            )
        if not create and version == 0:
            self._engine.dispose()
            raise permanent(
                f"no Stepwise database at {self._display}: it has no Stepwise tables "
                "(check --db; commands that write create it)"
            )
        # Whether history_blocks exists (migration 18): a store opened without
        # migrating an older database reads and writes history rows only.
        self._backend.found_schema(version)
        if auto_migrate and version < schema.SCHEMA_VERSION:
            self.migrate()  # (collects the steps' garbage itself, when steps ran)

    # -- connections and transactions ------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool, snapshot: bool = False) -> Iterator[Connection]:
        with mapped_errors(self._display), self._engine.connect() as conn:
            if write:
                conn = conn.execution_options(stepwise_write=True)
            elif snapshot:
                conn = self._backend.snapshot_reading(conn)
            else:
                conn = self._backend.reading(conn)
            with conn.begin():
                yield conn

    def _read(self) -> AbstractContextManager[Connection]:
        return self._transaction(write=False)

    def _snapshot_read(self) -> AbstractContextManager[Connection]:
        """A read whose statements all see one snapshot (`Backend.snapshot_reading`)."""
        return self._transaction(write=False, snapshot=True)

    def _write(self) -> AbstractContextManager[Connection]:
        return self._transaction(write=True)

    def migrate(self) -> int:
        """Apply the missing migrations in one locked transaction; return the schema version.

        Safe to run from several processes at once. Raises StoreUnavailable if
        the database is unreachable or its schema is newer than this code.
        """
        try:
            with self._write() as conn:
                self._backend.lock_migrations(conn)
                # Run once per database: compiled into a cache of their own,
                # dropped afterwards, not the engine's LRU (~0.2 MB kept for good).
                version = schema.migrate(
                    conn.execution_options(compiled_cache={}), datetime.now(UTC)
                )
        except RuntimeError as exc:
            raise permanent(f"database {self._display}: {exc}") from None
        self._backend.found_schema(version)
        return version

    @property
    def _history_blocks(self) -> bool:
        """Whether the database has history_blocks (migration 18; see `blocks.py`)."""
        return self._backend.history_blocks

    def schema_version(self) -> int:
        """The highest migration applied to the database (0 when empty)."""
        with self._read() as conn:
            return schema.current_version(conn)

    def reset_connections(self) -> None:
        """Drop every pooled connection (after an outage), so the next call connects afresh."""
        self._engine.dispose()

    def close(self) -> None:
        """Close every connection the store holds. The store is unusable afterwards."""
        self._waker.close()
        self._engine.dispose()

    # -- wake-ups ---------------------------------------------------------

    def notify(self) -> None:
        """Wake workers in wait_for_work: every process on PostgreSQL, this one on SQLite."""
        if self._backend.wakes_other_processes:
            with self._write() as conn:
                self._backend.notify_in(conn)
        self._waker.wake_local()

    def wait_for_work(self, timeout: float) -> None:
        """Block until work may be due or `timeout` seconds pass (SQLite: at most one poll).

        May return early without work being due; callers claim and wait again.
        Raises StoreUnavailable if the PostgreSQL listener cannot connect.
        """
        self._waker.wait(timeout)


def _sqlite_path(parsed: URL) -> Path | None:
    """The file a SQLite URL names, or None (another backend, memory, a file: URI)."""
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _refuse_missing_directory(parsed: URL, display_url: str) -> None:
    """A SQLite file in a directory that does not exist is a typo, not an outage: say so."""
    path = _sqlite_path(parsed)
    if path is not None and not path.parent.is_dir():
        raise permanent(
            f"database {display_url} is unavailable: unable to open database file "
            f"(the directory {str(path.parent)!r} does not exist)"
        )


def _refuse_missing_file(parsed: URL, display_url: str) -> None:
    """For a store that must not create anything: a SQLite file has to exist already."""
    path = _sqlite_path(parsed)
    if path is not None and not path.is_file():
        raise permanent(
            f"no Stepwise database at {display_url}: the file does not exist "
            "(check --db; commands that write create it)"
        )
