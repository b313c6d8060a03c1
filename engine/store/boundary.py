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

It also decides whose fault a driver error is (`fault_of`), once for every
caller. An error the database raises about the *data* it was given
(SQLSTATE class 22, a data exception such as an untranslatable character
or a value out of range; 54000, a value over a program limit, though
psycopg files it under OperationalError; a driver's own DataError with no
SQLSTATE, e.g. psycopg's NUL in text or sqlite3's string too big; an
encoding error binding a value) is
the fault of whoever supplied that data: it leaves as `UnstorableData`,
which fails the one execution whose checkpoint it was (the committer
isolates it from its group-mates). Every other driver error — an
operational or interface error, a connection left in a failed transaction
(InFailedSqlTransaction), an internal or unexpected server error — is the
store's: it leaves as `StoreUnavailable`, which ends the activation as an
outage does (the execution is retried later), never failing an execution.
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

from engine.store.errors import StoreUnavailable, UnstorableData

__all__ = [
    "Backoff",
    "fault_of",
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
# SQLAlchemy's PendingRollbackError is one too: a statement sent on a
# connection that was lost (and so invalidated) inside its transaction — the
# store's fault, cured by a new connection, never the execution's poison.
_SQLALCHEMY_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.PendingRollbackError,
)


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return _SQLALCHEMY_UNAVAILABLE
    return (*_SQLALCHEMY_UNAVAILABLE, psycopg.OperationalError, psycopg.InterfaceError)


def _driver_errors() -> tuple[type[BaseException], ...]:
    """Every error class a driver raises: SQLAlchemy's, and psycopg's and sqlite3's once loaded."""
    found: list[type[BaseException]] = [sa_exc.DBAPIError]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        found.append(psycopg.Error)
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None:
        found.append(sqlite3.Error)
    return tuple(found)


def _is_integrity_error(exc: BaseException) -> bool:
    inner = getattr(exc, "orig", None) or exc
    if isinstance(exc, sa_exc.IntegrityError):
        return True
    sqlstate = getattr(inner, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("23")
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3 is not None and isinstance(inner, sqlite3.IntegrityError)


# SQLSTATEs that say the data given was refused: class 22 (data exception:
# an untranslatable character, a value out of range, bad JSON text) and
# 54000 (a value over a program limit, e.g. a row or jsonb too large).
_DATA_SQLSTATES = ("22", "54000")


def _is_data_error(exc: BaseException) -> bool:
    inner = getattr(exc, "orig", None) or exc
    if isinstance(inner, UnicodeError):
        return True  # a value the driver cannot encode (a lone surrogate)
    sqlstate = getattr(inner, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_DATA_SQLSTATES)
    if isinstance(exc, sa_exc.DataError):
        return True
    # A driver's own refusal of a value, before the server sees it (psycopg's
    # "text fields cannot contain NUL (0x00) bytes"): no SQLSTATE, still data.
    for driver in ("psycopg", "sqlite3"):
        module = sys.modules.get(driver)
        if module is not None and isinstance(inner, module.DataError):
            return True
    return False


def fault_of(exc: BaseException) -> str | None:
    """Whose fault a driver error is: "data", "collision", "store", or None (not a driver's).

    "data": the database refused the values it was given (their supplier's
    fault; `UnstorableData`). "collision": a unique key or constraint
    (each caller decides what it means). "store": anything else the driver
    raised, the database's or the connection's (`StoreUnavailable`).
    """
    if isinstance(exc, StoreUnavailable | sa_exc.PendingRollbackError):
        return "store"
    if isinstance(exc, UnstorableData):
        return "data"
    if isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError):
        # SQLAlchemy could not bind a value (it wraps the driver's refusal).
        return "data" if isinstance(exc.orig, UnicodeError) else None
    if not isinstance(exc, _driver_errors()):
        return None
    if _is_integrity_error(exc):
        return "collision"
    if _is_data_error(exc):
        return "data"
    return "store"


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
def mapped_errors(
    display_url: str, *, doing: str = "", passing: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Run a block, raising StoreUnavailable (no chained cause) for any driver failure.

    A file that is not a SQLite database (or a damaged one) is a permanent
    StoreUnavailable too: one line naming the file, never a traceback.
    Any other driver error is classified by `fault_of`: a refusal of the
    data given raises `UnstorableData`, anything else the driver raised
    StoreUnavailable; collisions, and the errors in `passing` (what the
    block's caller handles itself), leave unmapped.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, _unavailable_errors()) and not _is_data_error(exc):
            # An operational error is the store's; one a data SQLSTATE names
            # (54000, a program limit, is psycopg's OperationalError) is data.
            raise unavailable(display_url, exc, doing=doing) from None
        if passing and isinstance(exc, passing):
            raise
        fault = fault_of(exc)
        if fault is None or fault == "collision" or isinstance(exc, StoreUnavailable):
            raise
        reason = first_line(exc)
        if fault == "data":
            if isinstance(exc, UnstorableData):
                raise
            # No URL: the message may become a failed execution's cause.
            raise UnstorableData(f"the database refused a value: {reason}") from None
        if any(words in reason.lower() for words in _CORRUPT_WORDS):
            raise permanent(
                f"database {display_url} is not a usable Stepwise database: {reason}"
            ) from None
        raise unavailable(display_url, exc, doing=doing) from None


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
