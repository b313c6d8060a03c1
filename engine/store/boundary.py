"""The store's error boundary: the one policy that turns driver failures into `StoreUnavailable`.

Every transaction the store opens, and every raw psycopg call it makes (the
pipelined commit, the LISTEN connection), passes its failures through here.
A database that cannot be reached, drops a connection or refuses to start a
transaction becomes `StoreUnavailable` with the database's display URL
(never its password) and the driver's one-line reason, raised ``from None``:
users and workers see the store's error tree, never a chained
`sqlite3.OperationalError` or `psycopg` traceback with SQL text in it.
Integrity errors are not mapped here: each caller decides what a collision
means (an existing execution, a closed token, a commit conflict).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import exc as sa_exc

from engine.store.errors import StoreUnavailable

__all__ = ["UNAVAILABLE", "first_line", "mapped_errors", "unavailable"]

# Failures that mean "the database cannot serve this call now", whichever
# layer (SQLAlchemy or psycopg used directly) reports them.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def first_line(exc: BaseException) -> str:
    """The driver's reason in one line: the wrapped DBAPI error's first line, else the class."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip()
    return text.splitlines()[0] if text else type(inner).__name__


def unavailable(display_url: str, exc: BaseException, *, doing: str = "") -> StoreUnavailable:
    """The StoreUnavailable for a driver failure (raise it ``from None``)."""
    if doing:
        return StoreUnavailable(f"{doing} on {display_url}: {first_line(exc)}")
    return StoreUnavailable(f"database {display_url} is unavailable: {first_line(exc)}")


@contextmanager
def mapped_errors(display_url: str, *, doing: str = "") -> Iterator[None]:
    """Run a block, raising StoreUnavailable (no chained cause) for any driver failure."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise unavailable(display_url, exc, doing=doing) from None
