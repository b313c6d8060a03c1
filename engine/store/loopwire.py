"""The loop's commit call driven through libpq itself, its socket registered with the loop once.

psycopg's async `execute` registers the connection's socket with the event
loop for every wait and removes it after (two `epoll_ctl`), arms a timer,
and runs its query conversion, parameter dumping, prepared-statement
bookkeeping and generator machinery around the one C call that sends: a
third of the loop's busy time in a W1 step on PostgreSQL
(`benchmarks/PROFILE.md`, s20c, s21a). `LoopWire` sends the group commit's
one statement as a prepared statement of its own (prepared once per
connection and statement, on first use) with text parameters, through
libpq's non-blocking calls (`send_query_prepared`, `flush`), and reads the
answer from a reader callback registered for as long as it holds the
socket (`consume_input`, `is_busy`, `get_result`). The statement, its
parameters and its answer are the ones psycopg sends and reads; a failed
statement raises the same psycopg error class (`error_from_result`), and a
lost connection the same `OperationalError`.

Whoever else uses the connection (psycopg, for anything else: the pipelined
read-back, a ping, a rollback, a start, `close`) must `detach` first:
psycopg's own waits register the same socket and remove it after. Input
that arrives while nothing waits (a server's termination message, then the
end of the stream) is consumed by the callback; a failure then leaves the
connection broken (`psycopg.AsyncConnection.broken`) and the socket
detached, and the wait of a call in flight ends with the failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import anyio
import psycopg
from psycopg import pq
from psycopg.errors import error_from_result

__all__ = ["LoopWire"]

_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)


class LoopWire:
    """One AsyncConnection's socket, read by a callback of the running loop while attached."""

    __slots__ = (
        "_attached",
        "_cancelled",
        "_complete",
        "_connection",
        "_encoding",
        "_failure",
        "_fd",
        "_loop",
        "_pgconn",
        "_prepared",
        "_results",
        "_shield",
        "_wake",
    )

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection
        self._pgconn = connection.pgconn
        self._encoding = connection.info.encoding
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._attached = False
        # Statement names prepared on this connection's session.
        self._prepared: set[bytes] = set()
        # The request in flight: its results so far, whether they are all
        # read, the failure that ended it, and the future its caller awaits.
        self._results: list[pq.abc.PGresult] = []
        self._complete = True
        self._failure: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None
        # A cancellation of the caller met while a call was in flight, and the
        # shielded scope the rest of the call then runs in (`_waited`).
        self._cancelled: BaseException | None = None
        self._shield: anyio.CancelScope | None = None

    def detach(self) -> None:
        """Stop reading the socket (before psycopg uses the connection, or it closes)."""
        if self._attached:
            self._attached = False
            self._loop.remove_reader(self._fd)

    @property
    def encoding(self) -> str:
        """The Python codec of the connection's client encoding: text parameters are sent in it."""
        return self._encoding

    async def call(self, name: bytes, statement: bytes, params: Sequence[bytes]) -> pq.abc.PGresult:
        """Run `statement` prepared as `name` with text `params`; its one result.

        Raises the psycopg error of a failed statement (the session back in
        autocommit's idle state) and OperationalError when the connection
        fails under it. Carried to its end even when its caller is cancelled
        meanwhile (its outcome must be known before the connection is used
        again), as `asynccommit._sent` carries psycopg's calls: the futures
        it waits on are its own (a cancellation cancels one, never the
        protocol), after the first the rest runs in a shielded anyio scope,
        and the cancellation is raised once the call is done (its result or
        error dropped; a KeyboardInterrupt or SystemExit raised as itself).
        """
        self._cancelled = None
        try:
            try:
                if name not in self._prepared:
                    self._pgconn.send_prepare(name, statement)
                    await self._answer()
                    self._prepared.add(name)
                self._pgconn.send_query_prepared(name, params)
                result = await self._answer()
            except Exception:
                if self._cancelled is None:
                    raise
        finally:
            shield, self._shield = self._shield, None
            if shield is not None:
                shield.__exit__(None, None, None)
        cancelled, self._cancelled = self._cancelled, None
        if cancelled is not None:
            raise cancelled
        return result

    async def _waited(self, wake: asyncio.Future[None]) -> None:
        """Await `wake`; a cancellation of the caller is kept for `call` and shields the rest."""
        try:
            await wake
        except asyncio.CancelledError as cancelled:
            # `wake` is cancelled with it: the caller makes a new one to wait on.
            if self._cancelled is None:
                self._cancelled = cancelled
                self._shield = anyio.CancelScope(shield=True)
                self._shield.__enter__()

    async def _answer(self) -> pq.abc.PGresult:
        """Flush what was sent, then wait for every result of it; the last one, checked."""
        pgconn = self._pgconn
        self._results, self._complete, self._failure = [], False, None
        try:
            self._attach()
            while pgconn.flush() != 0:  # rare: a large group and a full socket buffer
                await self._writable()
            self._read()
            while not self._complete:
                wake = self._wake = self._loop.create_future()
                await self._waited(wake)
        finally:
            self._wake = None
        if self._failure is not None:
            raise self._failure
        result = self._results[-1]
        for each in self._results:
            if each.status not in _OK:
                raise error_from_result(each, encoding=self._encoding)
        return result

    def _attach(self) -> None:
        if not self._attached:
            self._fd = self._pgconn.socket
            self._loop.add_reader(self._fd, self._read)
            self._attached = True

    def _read(self) -> None:
        """The reader callback: take what arrived; settle the request once it is all read."""
        pgconn = self._pgconn
        try:
            pgconn.consume_input()
            if self._complete:
                return  # nothing in flight: a notice, or nothing
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    self._complete = True
                    break
                self._results.append(result)
        except (psycopg.Error, OSError) as failure:
            # The connection is lost (broken now): stop reading its socket.
            self.detach()
            if self._complete:
                return
            self._complete, self._failure = True, _operational(failure)
        if self._complete:
            wake = self._wake
            if wake is not None and not wake.done():
                wake.set_result(None)

    async def _writable(self) -> None:
        wake = self._loop.create_future()
        fd = self._pgconn.socket
        self._loop.add_writer(fd, _settle, wake)
        try:
            await self._waited(wake)
        finally:
            self._loop.remove_writer(fd)


def _operational(failure: BaseException) -> BaseException:
    if isinstance(failure, psycopg.Error):
        return failure
    return psycopg.OperationalError(f"connection socket closed: {failure}")


def _settle(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
