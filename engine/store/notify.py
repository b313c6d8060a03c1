"""Wake-ups between workers: PostgreSQL LISTEN/NOTIFY, or an in-process event on SQLite.

A worker with nothing to do blocks in `wait_for_work` instead of polling hard.
On PostgreSQL a dedicated autocommit psycopg connection LISTENs on
`stepwise_work`; the store sends NOTIFY inside the transaction that makes work
due now, so the wake-up is delivered exactly when the work is visible. Any
notification that arrives while nobody waits stays queued on the connection,
so the next wait returns at once: no wake-up is lost, some are spurious. On
SQLite there is no cross-process signal: a waiter sleeps at most the poll
interval, and work made due by the same process wakes it at once.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from engine.store.boundary import unavailable

if TYPE_CHECKING:
    import psycopg  # imported where a listener connects: SQLite never loads the driver

__all__ = ["CHANNEL", "PostgresListener", "SqliteWaker", "Waker"]

CHANNEL = "stepwise_work"


class Waker(Protocol):
    """What the store needs from a wake-up mechanism."""

    def wake_local(self) -> None:
        """Wake waiters in this process (after a commit made work due)."""

    def wait(self, timeout: float) -> None:
        """Block until woken or `timeout` seconds pass."""

    def close(self) -> None:
        """Release whatever the waker holds."""


class SqliteWaker:
    """Polling with an in-process short cut: `wait` returns early on `wake_local`."""

    def __init__(self, poll_interval: float) -> None:
        self._event = threading.Event()
        self._poll_interval = poll_interval

    def wake_local(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> None:
        self._event.wait(max(0.0, min(timeout, self._poll_interval)))
        self._event.clear()

    def close(self) -> None:
        self._event.set()


class PostgresListener:
    """A dedicated LISTEN connection, opened on first wait and reopened after a failure."""

    def __init__(self, conninfo: str, display_url: str) -> None:
        self._conninfo = conninfo
        self._display_url = display_url
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()

    def wake_local(self) -> None:
        # The NOTIFY sent inside the transaction reaches this process's own
        # listener too; nothing more to do.
        return None

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        import psycopg

        if self._connection is None or self._connection.closed:
            try:
                connection = psycopg.connect(self._conninfo, autocommit=True)
                connection.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error as exc:
                # Any failure of the listener's own connection means no wake-ups.
                raise unavailable(self._display_url, exc, doing="cannot listen for work") from None
            self._connection = connection
        return self._connection

    def wait(self, timeout: float) -> None:
        import psycopg

        with self._lock:
            connection = self._connect()
            try:
                for _ in connection.notifies(timeout=max(0.0, timeout), stop_after=1):
                    pass
            except psycopg.Error as exc:
                connection.close()
                self._connection = None
                raise unavailable(self._display_url, exc, doing="lost the work listener") from None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
