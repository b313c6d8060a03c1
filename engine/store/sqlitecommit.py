"""SQLite's group commit through the raw driver: the careful path's rows, fewer Python steps.

On SQLite the careful path (`checkpoints.write_checkpoints`) spends most of a
commit's time in Python, having SQLAlchemy build, compile and bind its
statements (`benchmarks/PROFILE.md`). Here the same transaction runs on the
pool's sqlite3 connection with SQL text built once: BEGIN IMMEDIATE (the
database's write lock), the lease check — every lease of the group held by
this worker and unexpired at `now`, counted inside the transaction before
anything is written — then one executemany per table and COMMIT. Every value
goes through its column type's own bind processor, as in `rawstart.py`, so
the rows written are exactly the careful path's
(`tests/engine/test_commit_raw_rows.py` compares them). A lease not held or a
row that collides (another worker recorded the step) rolls everything back
and returns None: the careful path then decides LEASE_LOST or CONFLICT per
checkpoint, so this path never decides either by itself. Batches the careful
path must see whole — task tokens, ends that Map Runs count — never come here.
A finishing checkpoint whose record is wanted back (`raw_commit_reading`) is
read in the same transaction, after its writes and before COMMIT: the write
lock keeps every other writer out until then, so it is the record a describe
reads once the commit is done, without a read transaction of its own.
The commit path keeps its connection between commits (`HeldSqlite`), sparing
the pool's checkout and check-in each time, and lets go of it when the engine
is disposed. The WAL is checkpointed off that path (`WalCheckpointer`): every
few write transactions a thread of its own runs a PASSIVE checkpoint, so the
commit that crosses SQLite's auto-checkpoint threshold (1,000 pages) rarely
has to copy the pages and fsync while every start and commit waits for it.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.pool import QueuePool, StaticPool

from engine.store.blocks import block_values, commit_blocks, commit_progress
from engine.store.codec import PayloadCodec, escape_clear
from engine.store.held import HeldPooled
from engine.store.map_run_hook import takes_hook
from engine.store.outbox_hook import ENQUEUE_SQL
from engine.store.rawstart import raw_first_on, row_of, utc_time_processor
from engine.store.records import (
    Checkpoint,
    CommitResult,
    ExecutionRecord,
    ExecutionStatus,
    TokenStatus,
)
from engine.store.rows import EXECUTION_BY_ID, execution_record

__all__ = [
    "REFUSED",
    "HeldSqlite",
    "WalCheckpointer",
    "commit_within",
    "raw_commit",
    "raw_commit_reading",
    "raw_commits",
    "records_of",
]

log = logging.getLogger("stepwise.store")

_JOURNAL = "INSERT INTO journal (execution_id, key, value, recorded_at) VALUES (?, ?, ?, ?)"
_EVENTS = (
    "INSERT INTO history_events "
    "(execution_id, event_id, previous_event_id, type, timestamp, details) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_BLOCKS = (
    "INSERT INTO history_blocks (execution_id, first_event_id, last_event_id, events) "
    "VALUES (?, ?, ?, ?)"
)
# Never backwards: a checkpoint without events carries the walk's last id.
_PROGRESS = "UPDATE executions SET last_event_id = max(last_event_id, ?) WHERE execution_id = ?"
# A block's compare-and-set (`blocks.commit_progress`): no row updated is a collision.
_ADVANCE = "UPDATE executions SET last_event_id = ? WHERE execution_id = ? AND last_event_id < ?"
_FINISH = (
    "UPDATE executions SET status = ?, output = ?, error = ?, cause = ?, stop_date = ? "
    "WHERE execution_id = ?"
)
# An end with a block of its own: `_FINISH` and its block's `_ADVANCE` as one
# statement on the row (one b-tree descent and row rewrite, not two).
_FINISH_ADVANCE = (
    "UPDATE executions SET status = ?, output = ?, error = ?, cause = ?, stop_date = ?, "
    "last_event_id = ? WHERE execution_id = ? AND last_event_id < ?"
)
_ENQUEUE = (
    ENQUEUE_SQL.replace("%(execution)s", ":execution")
    .replace("%(status)s", ":status")
    .replace("%(now)s", ":now")
    .replace("%%", "%")
)
# Whether any alert could match: without one the outbox's INSERT ... SELECT
# (~20 µs of SQLite's work a finished execution) has nothing to write; and
# whether any token row is there for an end to close (`HeldSqlite.end_checks`).
_END_CHECKS = (
    "SELECT EXISTS (SELECT 1 FROM alerts WHERE paused = 0), EXISTS (SELECT 1 FROM task_tokens)"
)
_CLOSE_TOKENS = "UPDATE task_tokens SET status = ? WHERE execution_id = ? AND status = ?"
# A callback or stop that arrived while the lease was held (wakeups moved
# since the claim) makes the work due now, whatever due time was asked for
# (`checkpoints.release_work`); every right-hand side sees the row before the update.
_RELEASE = (
    "UPDATE work_queue SET lease_owner = NULL, lease_expires_at = NULL, "
    "due_at = CASE WHEN wakeups <> wakeups_seen THEN min(coalesce(:due, :now), :now) "
    "ELSE :due END, wakeups_seen = wakeups WHERE execution_id = :id RETURNING due_at"
)


# The work rows leased to the committing worker (its id, now): the lease check.
_LEASED = "AND lease_owner = ? AND lease_expires_at > ?"


@functools.cache
def _lease_check(count: int) -> str:
    return f"SELECT count(*) FROM work_queue WHERE {_work_rows(count)} {_LEASED}"


@functools.cache
def _done(count: int, *, leased: bool = False) -> str:
    """The DELETE of `count` work rows; `leased`: only those leased to the worker."""
    statement = f"DELETE FROM work_queue WHERE {_work_rows(count)}"
    return f"{statement} {_LEASED}" if leased else statement


def _work_rows(count: int) -> str:
    return f"execution_id IN ({', '.join(['?'] * count)})"


def _time_processor(dialect: Dialect) -> Callable[[datetime], Any]:
    """What SQLAlchemy stores for a time on this dialect (see `rawstart.utc_time_processor`)."""
    return utc_time_processor(dialect)


# The auto-checkpoint threshold of the commit path's kept connection while a
# `WalCheckpointer` runs: SQLite's default is 1,000 pages; the thread copies
# the log back at about 400-900, so this one acts only as the fallback.
_COMMIT_PATH_CHECKPOINT_PAGES = 4000


class WalCheckpointer:
    """Runs SQLite's WAL checkpoints on a thread of its own, every few write transactions.

    In WAL mode the connection whose commit takes the log past 1,000 pages
    checkpoints it then and there: copies the pages into the database file
    and fsyncs both (synchronous=NORMAL fsyncs only there), tens of
    milliseconds during which the store thread, and so every start and
    commit, waits. Here a PASSIVE checkpoint (it takes no lock a reader or
    writer waits for) runs on a pooled connection of the same engine, so the
    log is copied back before it reaches the threshold and the next write
    transaction starts it over. Nothing depends on it: when it falls behind
    or fails, the committing connection's own auto-checkpoint does the work
    as before, and what is committed and when it is durable are unchanged.
    The thread starts at the first signal and ends when the engine is
    disposed (`stop`); a later signal starts a new one. How many
    transactions make a signal adapts to their size: each checkpoint says
    how long the log is, so how many pages were written since the last one,
    and the interval doubles below `_FEW_PAGES` and halves above
    `_MANY_PAGES` (between `_MIN_EVERY` and `_MAX_EVERY`), so a checkpoint
    copies a few hundred pages, well before the committer's own would start.
    """

    _FEW_PAGES = 400
    _MANY_PAGES = 900
    _MIN_EVERY = 4
    _MAX_EVERY = 512

    def __init__(self, engine: Engine, every: int = 32) -> None:
        self._engine = engine
        self._every = every
        self._count = 0
        self._log_pages = 0  # the log's length in pages at the last checkpoint
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # PASSIVE checkpoints run, for tests and benchmarks

    def wrote(self) -> None:
        """One write transaction ended on the commit path; every `every`-th wakes the thread."""
        self._count += 1
        if self._count < self._every:
            return
        self._count = 0
        with self._lock:
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop,),
                    name="stepwise sqlite checkpoint",
                    daemon=True,
                )
                self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        """End the thread (after the checkpoint under way, if any)."""
        with self._lock:
            thread, stop, self._thread, self._stop = self._thread, self._stop, None, None
        if thread is None or stop is None:
            return
        stop.set()
        self._wake.set()
        if thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self, stop: threading.Event) -> None:
        while True:
            self._wake.wait()
            if stop.is_set():
                return
            self._wake.clear()
            self.checkpoint()

    def checkpoint(self) -> None:
        """One PASSIVE checkpoint now; a failure is logged and left to the next one."""
        try:
            pooled = self._engine.raw_connection()
            try:
                cursor = pooled.driver_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA wal_checkpoint(PASSIVE)"
                )
                row = cursor.fetchone()
            finally:
                pooled.close()
        except (sqlite3.Error, sa_exc.SQLAlchemyError) as error:
            log.debug("background WAL checkpoint failed: %s", error)
            return
        self.checkpoints += 1
        # (busy, pages in the log, pages copied); -1 pages when the file is not in WAL mode.
        log_pages = row[1] if row is not None else -1
        if log_pages < 0:
            return
        # The pages written since the last checkpoint: the log is started over
        # (by the next writer after a complete checkpoint) or grew since.
        last, self._log_pages = self._log_pages, log_pages
        pages = log_pages if log_pages < last else log_pages - last
        if pages < self._FEW_PAGES:
            self._every = min(self._every * 2, self._MAX_EVERY)
        elif pages > self._MANY_PAGES:
            self._every = max(self._every // 2, self._MIN_EVERY)


class _Seen:
    """What one kept connection read at one ``PRAGMA data_version`` (`HeldSqlite._snapshot`)."""

    __slots__ = ("driver", "end_checks", "heads", "version")

    def __init__(self, driver: sqlite3.Connection, version: int) -> None:
        self.driver = driver
        self.version = version
        self.heads: dict[str, Any] = {}  # machine name -> head row
        self.end_checks: tuple[bool, bool] | None = None


class HeldSqlite(HeldPooled):
    """The pool's sqlite3 connection kept checked out for the commit path's transactions."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        # An in-memory database has one connection (StaticPool) and no WAL: nothing to do.
        memory = isinstance(engine.pool, StaticPool)
        self.checkpointer = None if memory else WalCheckpointer(engine)
        # What the kept connection read while its data_version was unchanged
        # (`_snapshot`), and whether this transaction has read that version yet.
        self._seen: _Seen | None = None
        self._version_read = False
        # Only a QueuePool never hands the kept connection to another path: in
        # memory (StaticPool) or with a memory URI (SingletonThreadPool) the
        # careful path writes on this same connection, and its own writes (a
        # new revision, a deletion) would not change its data_version.
        self._keeps_own = isinstance(engine.pool, QueuePool)
        # Starts whose machine row was not read again (a batch's later starts
        # of one machine count too): an observable for tests and benchmarks.
        self.head_reuses = 0

    @property
    def keeps_own(self) -> bool:
        """Whether only the fast paths use the kept connection (a file's QueuePool).

        In memory (StaticPool) or with a memory URI (SingletonThreadPool)
        every path shares one connection, and may be inside a transaction on it.
        """
        return self._keeps_own

    def machine_heads(self, driver: sqlite3.Connection) -> dict[str, Any]:
        """The machine head rows raw starts may reuse on `driver`, inside its transaction.

        Only the kept connection keeps them, and only while its
        ``PRAGMA data_version`` is unchanged (`_snapshot`): the kept
        connection itself never writes a machine (only the raw starts,
        commits and reads run on it). Any other connection gets an empty
        dict of its own, kept nowhere.
        """
        seen = self._snapshot(driver)
        return {} if seen is None else seen.heads

    def end_checks(self, driver: sqlite3.Connection) -> tuple[bool, bool]:
        """(any unpaused alert, any task token row) as `driver`'s transaction sees them.

        An end enqueues its alerts only when an alert could match, and closes
        its tokens only when the table holds any. Read inside the commit's
        transaction, so an alert or a token committed before it is seen. The
        kept connection keeps the answer while its ``PRAGMA data_version`` is
        unchanged (`_snapshot`): it never writes an alert nor a token (a
        group with tokens goes the careful path, on another connection),
        and ends only close tokens. Other connections read it each time.
        """
        seen = self._snapshot(driver)
        if seen is not None and seen.end_checks is not None:
            return seen.end_checks
        alerting, tokens = driver.execute(_END_CHECKS).fetchone()
        checks = (bool(alerting), bool(tokens))
        if seen is not None:
            seen.end_checks = checks
        return checks

    def _snapshot(self, driver: sqlite3.Connection) -> _Seen | None:
        """What the kept connection read while no other connection committed; None elsewhere.

        ``PRAGMA data_version`` changes when any other connection (this
        process's careful paths, another process) commits; it is read once a
        transaction (`connection`), inside it, so what is kept is of the
        transaction's own snapshot. A connection given back to the pool
        loses it (`_drop`): any path may write on it then. Only a QueuePool
        never hands the kept connection to another path.
        """
        kept = self._pooled
        if not self._keeps_own or kept is None or kept.driver_connection is not driver:
            return None
        seen = self._seen
        if self._version_read and seen is not None:
            return seen
        (version,) = driver.execute("PRAGMA data_version").fetchone()
        self._version_read = True
        if seen is None or seen.driver is not driver or seen.version != version:
            seen = self._seen = _Seen(driver, version)
        return seen

    def _drop(self, *, invalidate: bool) -> None:
        self._seen = None  # back in the pool, any path may write on it
        super()._drop(invalidate=invalidate)

    def _on_disposed(self, engine: Engine) -> None:
        super()._on_disposed(engine)
        if self.checkpointer is not None:
            self.checkpointer.stop()

    @contextmanager
    def connection(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The held connection for one transaction (a pooled one while another thread has it).

        The caller ends its transaction; a connection left inside one is
        dropped. A read (``write=False``) does not count toward the WAL
        checkpointer's write transactions.
        """
        if not self._take():
            pooled = self.engine.raw_connection()
            try:
                yield pooled.driver_connection  # type: ignore[misc]
            finally:
                pooled.close()
            return
        self._version_read = False  # a new transaction: `_snapshot` reads data_version again
        try:
            kept = self._kept()
            fresh = kept is None
            if kept is None:
                kept = self._checkout()
            driver: sqlite3.Connection = kept.driver_connection  # type: ignore[assignment]
            if fresh and self.checkpointer is not None:
                # The thread checkpoints first; this connection only when it falls far behind.
                driver.execute(f"PRAGMA wal_autocheckpoint={_COMMIT_PATH_CHECKPOINT_PAGES}")
            try:
                yield driver
            finally:
                if driver.in_transaction:
                    self._drop(invalidate=False)  # the pool's reset rolls it back
        finally:
            self._lock.release()
        if write and self.checkpointer is not None:
            self.checkpointer.wrote()


def raw_commit(
    held: HeldSqlite,
    checkpoints: Sequence[Checkpoint],
    worker_id: str,
    now: datetime,
    codec: PayloadCodec,
    *,
    blocks: bool = True,
) -> tuple[list[CommitResult], bool] | None:
    """Commit the group in one raw transaction; None when the careful path must decide.

    `blocks`: each execution's events as one history block (else, on a
    database older than migration 18, one row each), as the careful path.

    Returns (one OK per checkpoint, whether work became due now). Raises
    SQLAlchemy's OperationalError (or another DBAPIError) when the database
    fails, so the store's boundary maps it as for the careful path.
    """
    committed = raw_commit_reading(held, checkpoints, (), worker_id, now, codec, blocks=blocks)
    return None if committed is None else (committed[0], committed[1])


def raw_commit_reading(
    held: HeldSqlite,
    checkpoints: Sequence[Checkpoint],
    read_back: Collection[str],
    worker_id: str,
    now: datetime,
    codec: PayloadCodec,
    *,
    blocks: bool = True,
) -> tuple[list[CommitResult], bool, dict[str, ExecutionRecord]] | None:
    """`raw_commit`, and the records of `read_back`'s executions that end in the group.

    Each is read inside the commit's own transaction, after its writes
    (the lock is held: no other writer can come between the read and the
    COMMIT), so once COMMIT has succeeded it is what `Store.get_execution`
    would read then — without a transaction, a lock hand-off and a store
    call of its own. An execution of `read_back` that does not end here
    gets no record (the caller reads it).
    """
    if not raw_commits(checkpoints):
        return None
    with held.connection() as driver:
        try:
            driver.execute("BEGIN IMMEDIATE")
            try:
                written = commit_within(
                    driver, held, checkpoints, read_back, worker_id, now, codec, blocks=blocks
                )
                driver.execute("COMMIT" if written is not None else "ROLLBACK")
            except BaseException:
                if driver.in_transaction:
                    driver.execute("ROLLBACK")
                raise
        except REFUSED:
            return None
        except sqlite3.Error as error:
            raise sa_exc.DBAPIError.instance(
                "raw group commit", None, error, sqlite3.Error
            ) from error
    if written is None:
        return None
    wake, rows = written
    return [CommitResult.OK] * len(checkpoints), wake, records_of(held, rows, codec)


def raw_commits(checkpoints: Sequence[Checkpoint]) -> bool:
    """Whether this path may commit the group: no tokens, no end a Map Run counts."""
    if any(c.tokens for c in checkpoints):
        return False
    # Map Run children, unsuccessful parents: the careful path (map_run_hook).
    return not any(c.finish and takes_hook(c.execution_id, c.finish.status) for c in checkpoints)


def commit_within(
    driver: sqlite3.Connection,
    held: HeldSqlite,
    checkpoints: Sequence[Checkpoint],
    read_back: Collection[str],
    worker_id: str,
    now: datetime,
    codec: PayloadCodec,
    *,
    blocks: bool = True,
) -> tuple[bool, dict[str, Any]] | None:
    """The group's lease check, writes and read-backs inside the caller's write transaction.

    Returns (whether work became due now, the ending executions' rows of
    `read_back`), or None when a lease is not held (nothing written).
    Raises a `REFUSED` error when a lease is lost at an end's DELETE or a
    row collides: the caller rolls back what was written (the transaction,
    or its savepoint) and the careful path decides.
    """
    time = _time_processor(held.engine.dialect)
    now_stored = time(now)
    # A group of ends only: each work row's lease is checked by the DELETE
    # that removes it (`_write`), not read first — the same check, inside the
    # same transaction, one statement fewer.
    lease = (worker_id, now_stored)
    if not all(c.finish is not None for c in checkpoints):
        ids = sorted({c.execution_id for c in checkpoints})
        (leased,) = driver.execute(_lease_check(len(ids)), (*ids, *lease)).fetchone()
        if leased != len(ids):
            return None
        lease_at_end = None
    else:
        lease_at_end = lease
    wake = _write(driver, held, checkpoints, now_stored, time, codec, blocks, lease_at_end)
    dialect = held.engine.dialect
    rows = {
        c.execution_id: raw_first_on(driver, dialect, EXECUTION_BY_ID, ref=c.execution_id)
        for c in checkpoints
        if c.finish is not None and c.execution_id in read_back
    }
    return wake, rows


def records_of(
    held: HeldSqlite, rows: dict[str, Any], codec: PayloadCodec
) -> dict[str, ExecutionRecord]:
    """The records of the rows `commit_within` read, once their commit is durable."""
    records: dict[str, ExecutionRecord] = {}
    for execution_id, row in rows.items():
        if row is None:
            continue
        try:
            records[execution_id] = execution_record(
                row_of(held.engine.dialect, EXECUTION_BY_ID, row), codec
            )
        except Exception:  # e.g. a payload under a key not configured here
            # The commit is durable: left out, its caller describes it (and
            # meets the same error there), as when its own read fails.
            continue
    return records


class _LeaseLost(Exception):
    """A work row of the group is not (or no longer) leased to the committing worker."""


# What `commit_within` raises when the careful path must decide (a lease, a collision).
REFUSED = (sqlite3.IntegrityError, _LeaseLost)


def _recorded_already() -> sqlite3.IntegrityError:
    # A block at or below an execution's recorded events: they were recorded.
    return sqlite3.IntegrityError("history blocks: events already recorded")


def _write(
    driver: sqlite3.Connection,
    held: HeldSqlite,
    checkpoints: Sequence[Checkpoint],
    now_stored: Any,
    time: Callable[[datetime], Any],
    codec: PayloadCodec,
    blocks: bool,
    lease: tuple[str, Any] | None = None,
) -> bool:
    """Every write of the group, in the careful path's order; whether work became due now.

    `lease` (worker, now): the group's ends delete only work rows so leased,
    and raise `_LeaseLost` unless they delete every one.
    """
    journal_rows = [
        (c.execution_id, key, codec.seal(value), now_stored)
        for c in checkpoints
        for key, value in c.journal
    ]
    if journal_rows:
        driver.executemany(_JOURNAL, journal_rows)
    if blocks:
        # One history block per execution (`blocks.py`), as the careful path writes.
        planned = commit_blocks(checkpoints, codec)
        if planned is None:
            raise sqlite3.IntegrityError("history blocks: two of an execution's events share an id")
        pieces, guarded, plain = planned
        if pieces:
            driver.executemany(_BLOCKS, pieces)
    else:
        # A row's columns are a block item's (SQLite stores a time as that text).
        event_rows = [
            (c.execution_id, *values)
            for c in checkpoints
            for values in block_values(c.events, codec)
        ]
        if event_rows:
            driver.executemany(_EVENTS, event_rows)
        progress = commit_progress(checkpoints, [])
        assert progress is not None  # no blocks: no collision among them
        guarded, plain = progress
    ending = {c.execution_id for c in checkpoints if c.finish is not None}
    # An ending execution's compare-and-set is made by its `_FINISH_ADVANCE`.
    advance_at_end = {eid: (last, first) for eid, last, first in guarded if eid in ending}
    advances = [(last, eid, first) for eid, last, first in guarded if eid not in ending]
    if advances and driver.executemany(_ADVANCE, advances).rowcount != len(advances):
        raise _recorded_already()
    if plain:
        driver.executemany(_PROGRESS, [(last, eid) for eid, last in plain])
    finished: list[str] = []
    checks: tuple[bool, bool] | None = None  # read at the first end of the group
    for c in checkpoints:
        finish = c.finish
        if finish is None:
            continue
        if checks is None:
            checks = held.end_checks(driver)
        alerting, tokens = checks
        finished.append(c.execution_id)
        status = ExecutionStatus(finish.status).value
        stop_date = time(finish.stop_date)
        columns = (
            status,
            codec.seal_optional(finish.output),
            escape_clear(finish.error),
            codec.seal_optional(finish.cause),
            stop_date,
        )
        at_end = advance_at_end.pop(c.execution_id, None)
        if at_end is None:
            driver.execute(_FINISH, (*columns, c.execution_id))
        else:
            last, first = at_end
            moved = driver.execute(_FINISH_ADVANCE, (*columns, last, c.execution_id, first))
            if moved.rowcount != 1:
                raise _recorded_already()
        if alerting:
            # The outbox: alerts on this status change commit with it (engine/store/outbox.py).
            driver.execute(
                _ENQUEUE, {"execution": c.execution_id, "status": status, "now": stop_date}
            )
        if tokens:
            # Outstanding tokens become unusable when the execution closes.
            driver.execute(
                _CLOSE_TOKENS,
                (TokenStatus.TIMED_OUT.value, c.execution_id, TokenStatus.OPEN.value),
            )
    if finished:
        if lease is None:
            driver.execute(_done(len(finished)), finished)
        else:
            gone = sorted(set(finished))
            if driver.execute(_done(len(gone), leased=True), (*gone, *lease)).rowcount != len(gone):
                raise _LeaseLost
    wake = False
    ended = set(finished)
    for c in checkpoints:
        if c.release and c.execution_id not in ended:
            due = None if c.release_due_at is None else time(c.release_due_at)
            (due_at,) = driver.execute(
                _RELEASE, {"due": due, "now": now_stored, "id": c.execution_id}
            ).fetchone()
            wake = wake or (due_at is not None and due_at <= now_stored)
    return wake
