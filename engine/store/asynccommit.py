"""PostgreSQL's one-call group commit sent from the event loop itself, on its own connection.

On asyncio every store call leaves the loop for a store thread (a queue put,
a cold thread's wake-up, the answer handed back through the loop's
self-pipe): a large share of a Task step when the step's one store call is
its commit (`benchmarks/PROFILE.md`, session s8w1). `LoopCommit` sends the
committer's groups as the very call `fastcommit` sends — the same statement
and batch (`fastcommit.one_call_statement`), the same refusals, the same
pipelined read-back for `commit_reading` (BEGIN, the call, COMMIT, the read,
synced once) — on a `psycopg.AsyncConnection` the loop drives, opened lazily
with the pool's connection settings (the same conninfo: timeouts,
keepalives, server options; autocommit; psycopg's default prepare
threshold, as on the pool's). A call with no read-back goes through
`LoopWire` (`engine/store/loopwire.py`: libpq driven from a reader callback
registered for the connection's life, no psycopg machinery a wait); the
read-back's pipeline, the ping, a rollback and other work (`run`) use
psycopg, the wire detached meanwhile. Only that call moves: a group it may not
commit (tokens, a Map Run hook, a database without the function), a group
it finds the connection busy for, and anything while a reconnect is backing
off are handed back untouched (`Handed.THREADS`: the store's own commit on
its threads, as before); a refused call (a lease not held, a collision:
nothing written) is handed to the careful path (`Handed.CAREFUL`), which
alone decides LEASE_LOST or CONFLICT. Once sent, a call is waited for even
if its caller is cancelled (its outcome must be known), and a connection
that fails under it (a server restart, `pg_terminate_backend`) is dropped
and the failure raised as the thread path raises it — `StoreUnavailable`,
the outcome unknown, resolved as always by the replay and the unique keys;
the next commit connects again, or after a failed connect goes to the
threads for a backoff's while. It lets go of its connection when the pool is
disposed (an outage, `Store.reset_connections`) and when the Engine closes
(once the call in flight on it is done).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg.rows import dict_row
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine

from engine.store import connect
from engine.store.boundary import Backoff, mapped_errors
from engine.store.codec import PayloadCodec
from engine.store.fastclaim import EXECUTIONS_BY_ID, execution_records
from engine.store.fastcommit import (
    ONE_CALL_REFUSALS,
    call_version,
    one_call_may_commit,
    one_call_statement,
    warm_call_statement,
)
from engine.store.loopwire import LoopWire
from engine.store.pgraw import HeldConnection
from engine.store.records import Checkpoint, CommitResult, ExecutionRecord

__all__ = ["Committed", "Handed", "LoopCommit"]

T = TypeVar("T")

# One result per checkpoint, and the records read back with the commit.
Committed = tuple[list[CommitResult], dict[str, ExecutionRecord]]


class Handed(enum.Enum):
    """Why `LoopCommit.commit` did not commit a group itself."""

    # Nothing sent: commit it on the store's threads as before (`Store.commit`).
    THREADS = "threads"
    # Sent and refused, nothing written: the careful path decides (`Store.commit_carefully`).
    CAREFUL = "careful"


_Answer = tuple[Any, list[dict[str, Any]] | None]
# What `LoopCommit.commit` handles itself, past the store's boundary.
_PASSING = (*ONE_CALL_REFUSALS, psycopg.errors.UndefinedFunction)


class LoopCommit:
    """The group commit's one call on an AsyncConnection of the running event loop."""

    def __init__(
        self,
        engine: Engine,
        held: HeldConnection,
        *,
        conninfo: str,
        codec: PayloadCodec,
        display_url: str,
        wake_local: Callable[[], None],
        block_writes: Callable[[], bool] = lambda: False,
    ) -> None:
        # The thread path's held connection: which commit function the
        # database has (`function_version`), found out there.
        self._held = held
        # Whether commits write history blocks now (`Backend.block_writes`):
        # v3 then, else v2 or v1 (`fastcommit.call_version`).
        self._block_writes = block_writes
        self._conninfo = conninfo
        self._codec = codec
        self._display = display_url
        self._wake_local = wake_local
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._cursor: psycopg.AsyncCursor[Any] | None = None
        # The commit call's own way to the server on that connection.
        self._wire: LoopWire | None = None
        self._busy = False
        # Set when the call in flight is done: `aclose` waits for it.
        self._idle: anyio.Event | None = None
        self._closed = False
        self._disposed = False
        self._used_at = 0.0
        # After a failed connect, groups go to the threads until then.
        self._down_until = 0.0
        self._backoff = Backoff()
        # Groups committed here (an observable for tests and benchmarks).
        self.commits = 0
        sa_event.listen(engine, "engine_disposed", self._on_disposed)

    @property
    def backend_pid(self) -> int | None:
        """The server process of the open connection; None while there is none."""
        connection = self._connection
        return None if connection is None or connection.closed else connection.info.backend_pid

    async def commit(
        self,
        checkpoints: Sequence[Checkpoint],
        read_back: Sequence[str],
        *,
        worker_id: str,
        now: datetime,
    ) -> Committed | Handed:
        """Commit the group in one call, reading `read_back`'s records after it; or say why not.

        Raises StoreUnavailable when the connection fails under the call
        (the outcome is unknown, as on the thread path).
        """
        held = self._held
        if (
            self._closed
            or self._busy
            or held.without_function
            or held.careful_only
            or not checkpoints
            or not one_call_may_commit(checkpoints)
        ):
            return Handed.THREADS
        self._busy = True
        try:
            connection = await self._open()
            if connection is None:
                return Handed.THREADS
            version = call_version(held, self._block_writes())
            statement = one_call_statement(checkpoints, worker_id, now, self._codec, version)
            if statement is None:  # a collision within the group: nothing sent
                return Handed.CAREFUL
            call, params = statement
            try:
                # Refusals and a missing function leave unmapped: handled below.
                with mapped_errors(self._display, passing=_PASSING):
                    if read_back:
                        answer, rows = await _sent(self._send(connection, call, params, read_back))
                    else:
                        answer, rows = await self._call(call, params), None
            except ONE_CALL_REFUSALS:
                await self._restore(connection)
                return Handed.CAREFUL
            except psycopg.errors.UndefinedFunction:
                # Nothing written: the thread path finds out which function there is.
                await self._restore(connection)
                return Handed.THREADS
            except BaseException:
                if connection.closed or connection.broken or not _idle(connection):
                    await self._drop()
                raise
        finally:
            self._done_using()
        self.commits += 1
        if answer and answer[0]:
            self._wake_local()
        records = {} if rows is None else execution_records(rows, self._codec)
        return [CommitResult.OK] * len(checkpoints), records

    async def run(
        self, work: Callable[[psycopg.AsyncConnection[Any]], Coroutine[Any, Any, T]]
    ) -> T | Handed:
        """Await `work` on the connection (another store call sent from the loop), or THREADS.

        THREADS (nothing sent) when the connection is in use, closed, or
        cannot be opened now. `work` runs in autocommit and must leave the
        session idle. Raises StoreUnavailable when the connection fails
        under it (dropped; the next use connects again), and what `work`
        raises.
        """
        if self._closed or self._busy:
            return Handed.THREADS
        self._busy = True
        try:
            connection = await self._open()
            if connection is None:
                return Handed.THREADS
            try:
                with mapped_errors(self._display):
                    return await self._psycopg(work(connection))
            except BaseException:
                if connection.closed or connection.broken or not _idle(connection):
                    await self._drop()
                raise
        finally:
            self._done_using()

    async def connect(self, worker_id: str, now: datetime) -> None:
        """Open the connection now (an engine's start), unless it is open or in use.

        And call the commit function once with an empty group (no lease to
        check, nothing to write: a transaction that changes nothing), so the
        server compiles it in this session then, not in the first commit.
        Failures are left for the first commit to meet.
        """
        if self._busy or self._closed:
            return
        self._busy = True
        try:
            # Shielded: a connection opened must be kept (and closed at the
            # Engine's exit), not dropped by a cancellation on its way back.
            with anyio.CancelScope(shield=True):
                await self._warm(worker_id, now)
        finally:
            self._done_using()

    async def _warm(self, worker_id: str, now: datetime) -> None:
        connection = await self._open()
        if connection is not None and not (self._held.without_function or self._held.careful_only):
            version = call_version(self._held, self._block_writes())
            statement = one_call_statement((), worker_id, now, self._codec, version)
            assert statement is not None  # an empty group has no collision
            call, params = statement
            try:
                await self._call(call, params)
                if version >= 2:
                    await self._psycopg(self._warm_branches(connection, version, worker_id, now))
            except psycopg.Error:
                if connection.broken or not _idle(connection):
                    await self._drop()

    async def _warm_branches(
        self, connection: psycopg.AsyncConnection[Any], version: int, worker_id: str, now: datetime
    ) -> None:
        """The function's progress, finish and release statements planned too, nothing written.

        The empty group's call skips their loops; a fresh Engine's first
        Map (W2) would plan them in its first commits. Rolled back.
        """
        call, params = warm_call_statement(worker_id, now, version)
        await connection.execute("BEGIN")
        try:
            await connection.execute(call, params)
        finally:
            await connection.rollback()

    async def aclose(self) -> None:
        """Close the connection once the call in flight on it is done; then all go to the threads.

        A start or commit being sent (from outside the Engine's task group:
        `start_sync` from another thread, a web handler) is answered first,
        not failed by its connection closing under it.
        """
        self._closed = True
        if self._busy:
            idle = self._idle = anyio.Event()
            with anyio.CancelScope(shield=True):
                await idle.wait()
        await self._drop()

    def _done_using(self) -> None:
        self._busy = False
        self._used_at = time.monotonic()
        idle = self._idle
        if idle is not None:
            idle.set()

    async def _open(self) -> psycopg.AsyncConnection[Any] | None:
        """The connection, pinged if it sat idle, opened if there is none; None if it cannot be."""
        if self._disposed:
            self._disposed = False
            await self._drop()
        connection = self._connection
        if connection is not None and (connection.closed or connection.broken):
            await self._drop()
            connection = None
        if (
            connection is not None
            and time.monotonic() - self._used_at >= connect._PING_AFTER_IDLE_SECONDS
        ):
            try:
                await self._psycopg(connection.execute("SELECT 1"))
            except Exception:  # any failure means this connection is unusable
                await self._drop()
                connection = None
        if connection is not None:
            return connection
        if time.monotonic() < self._down_until:
            return None
        try:
            opened: psycopg.AsyncConnection[Any] = await _sent(
                psycopg.AsyncConnection.connect(self._conninfo, autocommit=True), self._kept
            )
        except psycopg.Error:
            # The threads commit (and report the outage) while this backs off.
            self._down_until = time.monotonic() + self._backoff.next_delay()
            return None
        self._kept(opened)
        return opened

    def _kept(self, opened: psycopg.AsyncConnection[Any]) -> None:
        """Use `opened` from now on (also one opened for a caller cancelled meanwhile)."""
        self._backoff.reset()
        self._connection, self._cursor = opened, opened.cursor()
        self._wire = LoopWire(opened)

    def _psycopg(self, work: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        """`work` (psycopg's, on the connection) stepped by `_sent`, the wire detached first."""
        if self._wire is not None:
            self._wire.detach()
        return _sent(work)

    async def _call(self, call: str, params: tuple[Any, ...]) -> tuple[bool]:
        """The call alone, through the wire (libpq driven from the loop's reader callback).

        Its answer row. Carried to its end if the caller is cancelled
        meanwhile (`LoopWire.call`), as `_sent` carries psycopg's calls.
        """
        wire = self._wire
        assert wire is not None
        name, statement = _prepared(call)
        result = await wire.call(name, statement, [_text(p, wire.encoding) for p in params])
        return (result.get_value(0, 0) == b"t",)

    async def _send(
        self,
        connection: psycopg.AsyncConnection[Any],
        call: str,
        params: tuple[Any, ...],
        read_back: Sequence[str],
    ) -> _Answer:
        """The call and the read after its COMMIT: its answer row and the rows read.

        psycopg's pipeline sends both (the wire detached meanwhile).
        """
        cursor, wire = self._cursor, self._wire
        assert cursor is not None and wire is not None
        wire.detach()
        if not read_back or not psycopg.AsyncPipeline.is_supported():
            await cursor.execute(call, params)
            return await cursor.fetchone(), None
        # As `fastcommit._call_then_read`: the call in its own transaction,
        # committed (WAL flushed) before the server runs the read; an error
        # in it skips the rest and raises here, the read never looked at.
        async with connection.pipeline():
            await connection.execute("BEGIN")
            await cursor.execute(call, params)
            await connection.execute("COMMIT")
            read = connection.cursor(row_factory=dict_row)
            await read.execute(EXECUTIONS_BY_ID, (list(read_back),))
        return await cursor.fetchone(), await read.fetchall()

    async def _restore(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """After a refused call: the session out of its failed transaction, or dropped.

        A refusal inside the read-back's explicit transaction (BEGIN, call,
        COMMIT, read) leaves the session in a failed transaction; the next
        group sent on it would fail on that, not on its own rows. As the
        thread path's held connection rolls back after any error.
        """
        if connection.closed or connection.broken:
            await self._drop()
        elif not _idle(connection):
            try:
                await self._psycopg(connection.rollback())
            except Exception:  # whatever is wrong with it, a new connection will do
                await self._drop()

    async def _drop(self) -> None:
        if self._wire is not None:
            self._wire.detach()
        connection, self._connection, self._cursor = self._connection, None, None
        self._wire = None
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # a lost connection's close has nothing to tell
                pass

    def _on_disposed(self, _engine: Engine) -> None:
        # The pool's connections are being closed (an outage, a reset): ours
        # goes too, at the next commit (this runs on a store thread).
        self._disposed = True


# A call's statement with psycopg's `%s` placeholders → its prepared name and `$n` text.
_PREPARED: dict[str, tuple[bytes, bytes]] = {}


def _prepared(call: str) -> tuple[bytes, bytes]:
    """The wire's prepared statement for `call`: a name per statement, `$1`… for `%s`."""
    known = _PREPARED.get(call)
    if known is None:
        pieces = call.split("%s")
        text = pieces[0] + "".join(f"${n}{piece}" for n, piece in enumerate(pieces[1:], 1))
        # Named by its text, not by a count: Engines on other loops of this
        # process fill this dict too, and one name must mean one statement.
        name = "stepwise_loop_" + hashlib.sha1(text.encode()).hexdigest()[:20]
        known = _PREPARED[call] = (name.encode(), text.encode())
    return known


def _text(param: Any, encoding: str) -> bytes:
    """A parameter in PostgreSQL's text format, in the connection's client encoding.

    A string as it is, a timestamp in ISO 8601. libpq measures a text
    parameter to its first NUL, so one with a NUL is refused (as psycopg
    refuses it) rather than cut short.
    """
    if isinstance(param, str):
        text = param.encode(encoding)
        if b"\0" in text:
            raise psycopg.DataError("a text parameter cannot contain NUL (0x00) bytes")
        return text
    if isinstance(param, datetime):
        return param.isoformat().encode()
    raise TypeError(f"no text format for a {type(param).__name__} parameter")


def _idle(connection: psycopg.AsyncConnection[Any]) -> bool:
    return connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def _sent(work: Coroutine[Any, Any, T], unclaimed: Callable[[T], None] | None = None) -> T:
    """Await `work` to its end even if the caller is cancelled meanwhile (then re-raise).

    What was sent must be answered before the connection can be used again
    and the outcome known: as the store threads wait for a started call.
    `unclaimed` gets what `work` returned to a caller so cancelled (a
    connection opened, to be kept rather than left for the collector).

    `work` runs in the caller's own task, stepped here: each future it
    waits on is awaited through a future of this call's (`_settle`), so a
    cancellation of the caller — asyncio's own `Task.cancel`, which cancels
    the future a task waits on, or an anyio scope's — cancels that one and
    never reaches `work` (no task and no `asyncio.shield` per call). After
    the first, the rest of the call runs in a shielded scope (anyio does not
    cancel it again meanwhile); the cancellation is raised once `work` is
    done, or its error retrieved (a KeyboardInterrupt or SystemExit from
    `work` is raised as itself).

    So `work` must never cancel its own task: a wait bounded by
    `asyncio.timeout` (or `wait_for` on Python 3.12+) would be taken for the
    caller's cancellation and its answer lost. psycopg's async waits from
    3.3.9 (pyproject's floor) wait on a future and a timer instead
    (`test_psycopgs_async_waits_never_cancel_their_own_task`).
    """
    cancelled: BaseException | None = None
    shield: anyio.CancelScope | None = None
    send = work.send
    try:
        while True:
            try:
                waited = send(None)
            except StopIteration as stop:
                result: T = stop.value
                break
            except BaseException as failure:
                if cancelled is not None and isinstance(
                    failure, (Exception, asyncio.CancelledError)
                ):
                    raise cancelled from None
                raise  # KeyboardInterrupt, SystemExit: as themselves
            if waited is not None:
                waited._asyncio_future_blocking = False  # as a task does when it is yielded
            while waited is None or not waited.done():
                try:
                    if waited is None:  # a bare yield (`asyncio.sleep(0)`)
                        await asyncio.sleep(0)
                        break
                    mine = waited.get_loop().create_future()
                    waited.add_done_callback(functools.partial(_settle, mine))
                    await mine
                except asyncio.CancelledError as failure:
                    cancelled = cancelled or failure
                    if shield is None:
                        shield = anyio.CancelScope(shield=True)
                        shield.__enter__()
    finally:
        if shield is not None:
            shield.__exit__(None, None, None)
    if cancelled is not None:
        if unclaimed is not None:
            unclaimed(result)
        raise cancelled
    return result


def _settle(mine: asyncio.Future[None], _waited: object) -> None:
    if not mine.done():  # cancelled with its caller: `_sent` waits on another
        mine.set_result(None)
