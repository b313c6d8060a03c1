"""The store's error boundary: driver failures become `StoreUnavailable`, classified once.

Every transaction the store opens, and every raw psycopg call it makes (the
pipelined commit, the LISTEN connection), passes its failures through here.
A database that cannot be reached, drops a connection or refuses to start a
transaction becomes `StoreUnavailable` with the database's display URL
(never its password) and the driver's one-line reason, raised ``from None``:
users and workers see the store's error tree, never a chained
`sqlite3.OperationalError` or `psycopg` traceback with SQL text in it.
This is also the one place that decides whether a failure is *transient*
(connection refused or reset, a server restarting or failing over, too many
connections, a full disk, a read-only file, a lock or statement timeout:
retry it) or *permanent* (a bad password, a missing database, a file that
is not a database: a configuration error, reported at once), and it holds
the one retry policy for transient failures, `Backoff` (capped exponential
with jitter, DBOS's ``@db_retry()`` habit). Integrity errors are not
mapped here: each caller decides what a collision means.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import exc as sa_exc

from engine.store.errors import StoreUnavailable

__all__ = [
    "Backoff",
    "first_line",
    "is_transient",
    "mapped_errors",
    "permanent",
    "unavailable",
]

# Failures that mean "the database cannot serve this call now", whichever
# layer (SQLAlchemy or psycopg used directly) reports them. psycopg's two
# join only once psycopg is loaded (a PostgreSQL store loads it): a process
# on SQLite never imports the driver, and cannot meet its errors.
_SQLALCHEMY_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
)


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return _SQLALCHEMY_UNAVAILABLE
    return (*_SQLALCHEMY_UNAVAILABLE, psycopg.OperationalError, psycopg.InterfaceError)


# SQLSTATE classes and codes that no retry can fix: authentication (28),
# a missing database (3D000) or role, insufficient privilege (42501).
_PERMANENT_SQLSTATES = ("28", "3D000", "42501")
# The same failures as drivers word them when no SQLSTATE is attached
# (libpq reports connection-time refusals as text only).
_PERMANENT_WORDS = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "invalid dsn",
    "invalid connection option",
    "file is not a database",
    "database disk image is malformed",
)


def _not_pipeline_teardown(record: logging.LogRecord) -> bool:
    # psycopg warns when a pipeline cannot be closed on a connection that is
    # already lost; the StoreUnavailable raised for that loss says it once.
    return not (
        record.levelno == logging.WARNING
        and str(record.msg).startswith("error ignored terminating")
        and "connection is lost" in record.getMessage()
    )


logging.getLogger("psycopg").addFilter(_not_pipeline_teardown)


def first_line(exc: BaseException) -> str:
    """The driver's reason in one line: the wrapped DBAPI error's first line, else the class."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip()
    return text.splitlines()[0] if text else type(inner).__name__


def _is_permanent_driver_error(exc: BaseException) -> bool:
    inner = getattr(exc, "orig", None) or exc
    sqlstate = getattr(inner, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_PERMANENT_SQLSTATES):
        return True
    text = str(inner).lower()
    return any(words in text for words in _PERMANENT_WORDS)


def permanent(message: str) -> StoreUnavailable:
    """A StoreUnavailable that retrying cannot fix (a configuration error)."""
    error = StoreUnavailable(message)
    error.transient = False
    return error


def unavailable(display_url: str, exc: BaseException, *, doing: str = "") -> StoreUnavailable:
    """The StoreUnavailable for a driver failure (raise it ``from None``), classified."""
    if doing:
        message = f"{doing} on {display_url}: {first_line(exc)}"
    else:
        message = f"database {display_url} is unavailable: {first_line(exc)}"
    if _is_permanent_driver_error(exc):
        return permanent(message)
    return StoreUnavailable(message)


def is_transient(exc: BaseException) -> bool:
    """True for a store failure worth retrying: an outage, not a configuration error."""
    return isinstance(exc, StoreUnavailable) and exc.transient


_CORRUPT_WORDS = ("file is not a database", "database disk image is malformed")


@contextmanager
def mapped_errors(display_url: str, *, doing: str = "") -> Iterator[None]:
    """Run a block, raising StoreUnavailable (no chained cause) for any driver failure.

    A file that is not a SQLite database (or a damaged one) is a permanent
    StoreUnavailable too: one line naming the file, never a traceback.
    """
    try:
        yield
    except _unavailable_errors() as exc:
        raise unavailable(display_url, exc, doing=doing) from None
    except sa_exc.DatabaseError as exc:
        reason = first_line(exc)
        if not any(words in reason.lower() for words in _CORRUPT_WORDS):
            raise
        raise permanent(
            f"database {display_url} is not a usable Stepwise database: {reason}"
        ) from None


_JITTER = random.Random()
# A forked child (a pre-forking server that imported the engine first) draws
# its own jitter, not its parent's sequence: workers retry apart, not in step.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_JITTER.seed)


@dataclass
class Backoff:
    """The one retry policy for transient store failures: capped exponential, with jitter.

    `next_delay()` returns how long to wait before the next attempt: a random
    time between half of and all of ``first * 2**n`` seconds, never more than
    `cap`; `reset()` after a success starts again from `first`. The jitter
    keeps a fleet of workers that lost the same database from reconnecting
    in lockstep.
    """

    first: float = 0.1
    cap: float = 5.0
    attempts: int = 0
    # One shared generator: seeding a new one costs ~10 us, and a worker makes a Backoff per run.
    _random: random.Random = field(default_factory=lambda: _JITTER, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.first * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return self._random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempts = 0
