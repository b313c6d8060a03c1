"""Opening the database: URL parsing, connection timeouts and SQLAlchemy engine set-up.

PostgreSQL goes through psycopg 3 with a pre-pinged pool sized to keep the
sessions a busy worker uses open (`pool_size`), and every
connection (pooled or LISTEN) carries a connect timeout, TCP keepalives and
server-side statement and lock timeouts, so no call waits on a silent or
wedged server for longer than a few seconds (`Timeouts`: defaults, the
``STEPWISE_*_TIMEOUT`` environment variables, or the URL's own
``connect_timeout``, ``statement_timeout`` and ``lock_timeout`` query
parameters, in seconds). SQLite is set up so
Stepwise, not the sqlite3 module, issues BEGIN: writes take the database lock
up front (BEGIN IMMEDIATE), which with WAL, a busy timeout, foreign keys on
and synchronous=NORMAL lets several processes share one file without
deadlocking on a read-to-write lock upgrade.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from engine.store.boundary import permanent

__all__ = [
    "Timeouts",
    "create_engine",
    "create_postgres_engine",
    "create_sqlite_engine",
    "parse_url",
    "pool_size",
    "postgres_url_with_timeouts",
]

_BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Timeouts:
    """How long one database call may wait, in seconds (0 turns a server-side one off).

    `connect`: reaching the server and logging in (libpq's minimum is 2 s).
    `statement`: one SQL statement on PostgreSQL. `lock`: waiting for a row
    or advisory lock on PostgreSQL. `busy`: SQLite's wait for the file's
    write lock. Read from ``STEPWISE_CONNECT_TIMEOUT``,
    ``STEPWISE_STATEMENT_TIMEOUT``, ``STEPWISE_LOCK_TIMEOUT`` and
    ``STEPWISE_SQLITE_BUSY_TIMEOUT`` by `from_env`.
    """

    connect: float = 5.0
    statement: float = 15.0
    lock: float = 5.0
    busy: float = _BUSY_TIMEOUT_MS / 1000

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Timeouts:
        """The defaults, overridden by the STEPWISE_*_TIMEOUT variables.

        An empty or unset variable keeps the default; any other value that is
        not a finite number of seconds ≥ 0 is refused (a permanent
        StoreUnavailable naming the variable), never silently replaced.
        """
        source = dict(os.environ) if env is None else env
        default = cls()

        def seconds(name: str, fallback: float) -> float:
            raw = source.get(name, "").strip()
            if not raw:
                return fallback
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not 0 <= value < float("inf"):
                raise permanent(f"{name} must be a number of seconds, 0 or more, not {raw!r}")
            return value

        return cls(
            connect=seconds("STEPWISE_CONNECT_TIMEOUT", default.connect),
            statement=seconds("STEPWISE_STATEMENT_TIMEOUT", default.statement),
            lock=seconds("STEPWISE_LOCK_TIMEOUT", default.lock),
            busy=seconds("STEPWISE_SQLITE_BUSY_TIMEOUT", default.busy),
        )


def postgres_url_with_timeouts(parsed: URL, timeouts: Timeouts | None = None) -> URL:
    """`parsed` with libpq options for every timeout, unless the URL sets them itself.

    ``statement_timeout``/``lock_timeout`` in the URL's query (seconds) are
    turned into the server options libpq understands; the rest of the query
    passes through to libpq unchanged.
    """
    timeouts = timeouts or Timeouts.from_env()
    query = dict(parsed.query)

    def take(name: str, fallback: float) -> float:
        raw = query.pop(name, None)
        try:
            return float(raw) if isinstance(raw, str) else fallback
        except ValueError:
            return fallback

    statement = take("statement_timeout", timeouts.statement)
    lock = take("lock_timeout", timeouts.lock)
    if "connect_timeout" not in query and timeouts.connect > 0:
        query["connect_timeout"] = str(max(2, round(timeouts.connect)))
    # Keepalives notice a server that vanished without closing the socket.
    query.setdefault("keepalives", "1")
    query.setdefault("keepalives_idle", "5")
    query.setdefault("keepalives_interval", "2")
    query.setdefault("keepalives_count", "3")
    server = f"-c statement_timeout={int(statement * 1000)} -c lock_timeout={int(lock * 1000)}"
    existing = query.get("options")
    query["options"] = f"{existing} {server}" if isinstance(existing, str) else server
    return parsed.set(query=query)


def parse_url(url: str) -> tuple[URL, Literal["sqlite", "postgresql"]]:
    """Parse a database URL and pin its driver (pysqlite, psycopg 3); name the backend.

    Raises a permanent StoreUnavailable (a configuration error, never retried)
    for text that is not a URL or a backend Stepwise does not run on.
    """
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise permanent(f"not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite"), "sqlite"
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg"), "postgresql"
    raise permanent(
        f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)}: "
        "use sqlite:///path or postgresql://…"
    )


# A pooled connection unused this long is pinged before reuse (a server restart
# or an idle timeout may have closed it); busier ones skip the extra round trip.
_PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling without a round trip on every checkout.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one extra round
    trip per transaction on the hot path. Here only a connection that sat idle
    is pinged; a dead one raises DisconnectionError, which makes the pool
    replace it transparently. A connection that dies while in active use
    surfaces as StoreUnavailable to the caller, as with pre-ping.
    """

    @sa_event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["stepwise_idle_since"] = time.monotonic()

    @sa_event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("stepwise_idle_since")
        if idle_since is None or time.monotonic() - idle_since < _PING_AFTER_IDLE_SECONDS:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as exc:  # any failure means this connection is unusable
            raise sa_exc.DisconnectionError(str(exc)) from exc


def _enable_wal(cursor: Any, busy_timeout_ms: int) -> None:
    """Switch the file to WAL, waiting out other connections doing the same.

    Converting a fresh file takes an exclusive lock, and SQLite may answer
    SQLITE_BUSY for it without consulting the busy handler, so several
    processes opening a new database at once would fail at random. The mode
    persists in the file: once converted, this returns at the first try.
    """
    import sqlite3  # here, not at the top: a PostgreSQL process never loads it

    deadline = time.monotonic() + busy_timeout_ms / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def create_engine(parsed: URL, dialect: str) -> Engine:
    """A SQLAlchemy engine for a URL parsed by `parse_url`, set up for its backend."""
    makers = {"postgresql": create_postgres_engine, "sqlite": create_sqlite_engine}
    return makers[dialect](parsed)


# Sessions a process keeps open. A worker's store calls run on threads under
# the engine's database limiter (8 on PostgreSQL, whatever the worker's
# concurrency: `engine/api.py`), beside the committer, the lease keeper, the
# HTTP API's activity polls and SQL effects. A pool smaller than that peak
# closed each connection returned above its size and opened a new one at the
# next peak: 11-16 new server sessions per second under load (docs/SCALING.md).
_POOL_SIZE = 16


def pool_size(env: Mapping[str, str] | None = None) -> int:
    """Pooled PostgreSQL sessions a process keeps (``STEPWISE_PG_POOL_SIZE``, default 16).

    As many again may be opened for a burst above it, and closed after.
    """
    raw = (os.environ if env is None else env).get("STEPWISE_PG_POOL_SIZE", "").strip()
    if not raw:
        return _POOL_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise permanent(f"STEPWISE_PG_POOL_SIZE must be a positive integer, not {raw!r}")
    return size


def create_postgres_engine(parsed: URL, timeouts: Timeouts | None = None) -> Engine:
    """A pooled psycopg 3 engine with timeouts, whose idle connections are pinged before reuse.

    A checkout waits at most the connect timeout for a free pooled connection.
    """
    timeouts = timeouts or Timeouts.from_env()
    size = pool_size()
    engine = sa.create_engine(
        postgres_url_with_timeouts(parsed, timeouts),
        # Opened lazily, so an idle process holds few; kept once opened, so a
        # busy worker never opens (forks) a new server session per call.
        pool_size=size,
        max_overflow=size,
        pool_timeout=max(timeouts.connect, 1.0) * 6,
        future=True,
    )
    _ping_when_idle(engine)
    return engine


def _create_private_file(path: str) -> None:
    """Create a missing database file readable by its owner only (0600).

    Payloads may hold secrets, so the file is never world-readable; SQLite
    gives its -wal and -shm files the database file's mode.
    """
    # An existing file keeps its mode; a missing directory or no permission
    # is left for SQLite to report in its own words.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def create_sqlite_engine(parsed: URL, timeouts: Timeouts | None = None) -> Engine:
    """A SQLite engine set up for WAL, a busy timeout and our own BEGIN (IMMEDIATE for writes).

    A database file that does not exist yet is created with mode 0600.
    """
    busy_ms = int((timeouts or Timeouts.from_env()).busy * 1000)
    memory = parsed.database in (None, "", ":memory:")
    if not memory and parsed.database and not parsed.query.get("uri"):
        _create_private_file(parsed.database)
    if memory:
        engine = sa.create_engine(
            parsed, connect_args={"check_same_thread": False}, poolclass=StaticPool
        )
    else:
        engine = sa.create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
        )

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN
        # is ours (BEGIN IMMEDIATE for writes) and DDL stays transactional.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        if not memory:
            _enable_wal(cursor, busy_ms)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("stepwise_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
