"""The durable store: every row Stepwise keeps, on SQLite or PostgreSQL, via SQLAlchemy Core.

`Store` is the one door to the database, and the only code that writes SQL.
It owns the transactions: recording an execution's start, handing out work
under leases, group-committing the checkpoints of many executions at once,
and the calls other processes make (stop, callbacks, activity polls, SQL
effects). Races between workers are settled by the database, not by luck: a
lease is checked under a row lock before every commit, and unique keys on
(execution, event id) and (execution, journal key) make it impossible to
record one step twice. The API is synchronous; the async engine calls it
from a worker thread.

`Store` is assembled from one mixin per job on `StoreBase` (connections,
transactions, migrations, wake-ups): `MachineStore` (state machines),
`StartStore` (starts: a reference resolved and a batch of starts recorded
in one transaction),
`WorkStore` (claims, leases, group commit), `TokenStore` (task tokens and
activity tasks), `EffectStore` (SQL effects), `RotationStore` (re-sealing
payloads under a new encryption key), `RedriveStore` (reopening a closed
execution), `VersionStore` (published versions and aliases), `ScheduleStore`
(schedules and their ticks), `AlertStore` (alerts and their outbox),
`ActivityStore` (the HTTP API's activities and tags), `MapRunStore` (Distributed
Map's Map Runs and child executions), and this module's executions:
start, describe, list, history (whole, or paged by event id so a reader
of any execution holds one page at a time), load, stop and purge (closed
executions older than a cutoff, with everything they own, one short
transaction per small batch). What differs between SQLite
and PostgreSQL lives in `sqlite.py` and `postgres.py`, not in branches here.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from engine.store import rawstart
from engine.store.activities import ActivityStore
from engine.store.blocks import history_events_of, history_page_of
from engine.store.boundary import mapped_errors
from engine.store.checkpoints import event_row, signal
from engine.store.codec import escape_clear, unescape_clear
from engine.store.effects import EffectStore
from engine.store.errors import (
    AmbiguousExecution,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    ExecutionNotRunning,
    StateMachineDoesNotExist,
    StoreUnavailable,
)
from engine.store.machines import MachineStore
from engine.store.map_runs import MapRunStore
from engine.store.outbox import AlertStore
from engine.store.records import (
    DEFAULT_QUEUE,
    Checkpoint,
    CommitResult,
    Event,
    ExecutionRecord,
    ExecutionStatus,
    LoadedExecution,
    MachineVersion,
)
from engine.store.redrive import RedriveStore
from engine.store.rotation import RotationStore
from engine.store.rows import (
    EXECUTION_BY_ID,
    MACHINE_COLUMNS,
    MACHINE_JOIN,
    execution_record,
    machine_version,
    same_json,
    token_record,
)
from engine.store.schedules import ScheduleStore
from engine.store.schema import (
    activity_tasks,
    executions,
    history_events,
    map_runs,
    sql_effects,
    state_machine_versions,
    state_machines,
    task_tokens,
    work_queue,
)
from engine.store.starts import StartStore
from engine.store.tokens import TokenStore
from engine.store.versions import VersionStore
from engine.store.work import WorkStore

if TYPE_CHECKING:
    from engine.store.asynccommit import LoopCommit

__all__ = ["HISTORY_PAGE_SIZE", "PURGE_BATCH_SIZE", "Store", "default_database_url"]

# Events per page when a reader pages through a history.
HISTORY_PAGE_SIZE = 1000
# Executions deleted per purge transaction: small, so no lock is held long.
PURGE_BATCH_SIZE = 50

# The tables whose rows a writer holds (locks) while it writes an
# execution's journal or history: the commit's work row, a token, an
# activity task, a SQL effect, a Distributed Map's run. Writers lock the
# work row first and the executions row after; the purge locks the
# executions row first, so it only ever tries these with SKIP LOCKED and
# leaves an execution with one held for a later run: it never waits on a
# writer, so it cannot deadlock with one. Deleting the executions row
# deletes the rest: these rows by their foreign keys, journal and history
# by their foreign keys on SQLite and by migration 17's trigger on
# PostgreSQL (migration 16 dropped their keys there).
_HELD_BY_WRITERS = (work_queue, task_tokens, activity_tasks, sql_effects, map_runs)


def _held_by_writers(conn: Connection, ids: list[str]) -> set[str]:
    """PostgreSQL: those of `ids` (executions rows this transaction locked) a writer holds a row of.

    Per table, the rows this transaction could lock (SKIP LOCKED) are
    counted against the rows there are, read after: one it could not lock
    (or one inserted meanwhile) marks its execution held.
    """
    held: set[str] = set()
    for table in _HELD_BY_WRITERS:
        mine = table.c.execution_id.in_(ids)
        locked = Counter(
            conn.execute(
                sa.select(table.c.execution_id).where(mine).with_for_update(skip_locked=True)
            ).scalars()
        )
        present = Counter(conn.execute(sa.select(table.c.execution_id).where(mine)).scalars())
        held.update(present - locked)
    return held


_DEFAULT_URL = "sqlite:///./stepwise.db"


def default_database_url() -> str:
    """The database to use when none is given: $STEPWISE_DATABASE_URL, else ./stepwise.db."""
    return os.environ.get("STEPWISE_DATABASE_URL") or _DEFAULT_URL


class Store(
    MachineStore,
    StartStore,
    VersionStore,
    WorkStore,
    TokenStore,
    EffectStore,
    RotationStore,
    RedriveStore,
    ScheduleStore,
    AlertStore,
    ActivityStore,
    MapRunStore,
):
    """The durable store on one database URL (SQLite file or PostgreSQL).

    Opening a store checks the connection and applies any missing migration,
    so a fresh database is ready at once. Raises StoreUnavailable (a message,
    never a traceback) when the database cannot be reached or is newer than
    this code. Every call raises StoreUnavailable, never a driver exception,
    when the database fails.
    """

    # Executions `get_execution` read on SQLite's kept connection (an
    # observable for tests: that fast path is taken).
    kept_reads: int = 0

    # -- the group commit from an event loop ------------------------------

    def loop_commit(self) -> LoopCommit | None:
        """The one-call group commit sent from the event loop itself; None but on PostgreSQL.

        For an asyncio engine's committer (`engine/store/asynccommit.py`):
        groups it refuses go to `commit_carefully`, groups it hands back to
        `commit`. Opens no connection until its first commit.
        """
        if self.dialect != "postgresql":
            return None
        from engine.store.postgres import PostgresBackend

        backend = self._backend
        assert isinstance(backend, PostgresBackend)
        return backend.loop_commit(self._engine, self._codec, self._display, self._waker.wake_local)

    def commit_carefully(
        self, checkpoints: Sequence[Checkpoint], *, worker_id: str, now: datetime
    ) -> list[CommitResult]:
        """`commit` on the careful path alone, which decides LEASE_LOST and CONFLICT.

        For a group the one call refused (having written nothing).
        """
        if not checkpoints:
            return []
        return self._careful_commit(checkpoints, worker_id, now)

    # -- executions -------------------------------------------------------

    def create_execution(
        self,
        *,
        execution_id: str,
        name: str,
        machine: MachineVersion,
        input: str,
        start_date: datetime,
        trace_id: str,
        first_event: Event,
        queue: str = DEFAULT_QUEUE,
        published_version: int | None = None,
        alias: str | None = None,
    ) -> tuple[ExecutionRecord, bool]:
        """Record a new execution, its ExecutionStarted event and its work, in one transaction.

        Its work goes on `queue`: only workers claiming from that queue take it.

        Returns (record, True) when created. Reusing a name of the same
        machine while that execution is RUNNING with equal input returns
        (existing, False), as StartExecution is idempotent on AWS; any other
        reuse raises ExecutionAlreadyExists.
        """
        record = ExecutionRecord(
            execution_id=execution_id,
            name=name,
            machine=machine.name,
            version=machine.version,
            status=ExecutionStatus.RUNNING,
            input=input,
            output=None,
            error=None,
            cause=None,
            start_date=start_date,
            stop_date=None,
            trace_id=trace_id,
            stop_requested=False,
            stop_requested_error=None,
            stop_requested_cause=None,
            last_event_id=first_event.event_id,
            queue=queue,
            published_version=published_version,
            alias=alias,
        )
        row = msgspec.structs.asdict(record)
        row["input"] = self._codec.seal(input)
        first_row = event_row(execution_id, first_event, self._codec)
        try:
            with self._write() as conn:
                conn.execute(sa.insert(executions).values(row))
                conn.execute(sa.insert(history_events).values(first_row))
                conn.execute(
                    sa.insert(work_queue).values(
                        execution_id=execution_id,
                        queue=queue,
                        due_at=start_date,
                        wakeups=0,
                        wakeups_seen=0,
                    )
                )
                self._backend.notify_in(conn)
        except sa_exc.IntegrityError:
            collided = True
        else:
            collided = False
        if collided:
            # Outside the except block: what the name's owner is decides the
            # answer, and the driver's IntegrityError (with its SQL) is no
            # part of it.
            return self._existing_execution(record), False
        self._waker.wake_local()
        return record, True

    def _existing_execution(self, wanted: ExecutionRecord) -> ExecutionRecord:
        with self._read() as conn:
            row = conn.execute(
                sa.select(executions).where(
                    executions.c.machine == wanted.machine, executions.c.name == wanted.name
                )
            ).first()
            if row is None:
                row = conn.execute(
                    sa.select(executions).where(executions.c.execution_id == wanted.execution_id)
                ).first()
        if row is None:  # pragma: no cover - the colliding row vanished; only deletion could
            raise StoreUnavailable("execution insert collided with a row that no longer exists")
        existing = execution_record(row, self._codec)
        if (
            existing.machine == wanted.machine
            and existing.name == wanted.name
            and existing.status == ExecutionStatus.RUNNING
            and same_json(existing.input, wanted.input)
        ):
            return existing
        raise ExecutionAlreadyExists(
            f"Execution Already Exists: '{existing.execution_id}'"
        ) from None

    def get_execution(self, ref: str) -> ExecutionRecord:
        """Return the execution whose id is `ref`, else the only one named `ref`.

        Raises ExecutionDoesNotExist when nothing matches and AmbiguousExecution
        when the name belongs to executions of several machines.
        """
        if self.dialect == "postgresql" and self.raw_start_writes:
            # By id through the driver, in autocommit (a quarter of the CPU).
            from engine.store.fastclaim import read_execution  # loads psycopg: PostgreSQL only

            with mapped_errors(self._display):
                record = read_execution(self._engine, ref, self._codec)
            if record is not None:
                return record
        if self.dialect == "sqlite" and self.raw_start_writes:
            record = self._sqlite_execution(ref)
            if record is not None:
                return record
        with self._read() as conn:
            row = (
                rawstart.first_row(conn, EXECUTION_BY_ID, ref=ref)
                if self.dialect == "sqlite"
                else conn.execute(EXECUTION_BY_ID, {"ref": ref}).first()
            )
            rows = (
                [row]
                if row is not None
                else list(
                    conn.execute(sa.select(executions).where(executions.c.name == ref).limit(11))
                )
            )
        if not rows:
            raise ExecutionDoesNotExist(f"Execution Does Not Exist: '{ref}'")
        if len(rows) > 1:
            ids = ", ".join(r.execution_id for r in rows[:10])
            raise AmbiguousExecution(
                f"execution name '{ref}' is used by {len(rows)}"
                f"{'+' if len(rows) > 10 else ''} executions ({ids}); give the execution id"
            )
        return execution_record(rows[0], self._codec)

    def _sqlite_execution(self, ref: str) -> ExecutionRecord | None:
        """SQLite: the execution with id `ref` read on the commit path's kept connection.

        One SELECT outside a transaction (its own snapshot of the last
        commit, as the careful path's one-statement transaction sees), no
        SQLAlchemy connection, BEGIN or pool checkout. None when there is no
        such id or no kept connection: the careful path answers (names, errors).
        """
        from engine.store.sqlite import SqliteBackend  # the backend that keeps the connection

        backend = self._backend
        held = backend.held_for(self._engine) if isinstance(backend, SqliteBackend) else None
        if held is None:
            return None
        with mapped_errors(self._display), held.connection(write=False) as driver:
            row = rawstart.first_row_read(driver, held.engine.dialect, EXECUTION_BY_ID, ref=ref)
        if row is None:
            return None
        self.kept_reads += 1
        return execution_record(row, self._codec)

    def list_executions(
        self,
        *,
        machine: str | None = None,
        status: str | None = None,
        limit: int = 1000,
        after: tuple[datetime, str] | None = None,
        redriven: bool | None = None,
        published_version: int | None = None,
        alias: str | None = None,
    ) -> list[ExecutionRecord]:
        """Return up to `limit` executions, newest first, optionally of one machine and/or status.

        Executions are ordered by (start_date, execution_id), descending, so
        the order is total and stable. `after` is a keyset cursor: the
        (start_date, execution_id) of the last execution of the previous
        page; only executions that sort after it are returned, so paging
        never repeats or skips one, even while new executions start.
        Raises StateMachineDoesNotExist for an unknown `machine`, ValueError
        for an unknown `status`. `redriven` True keeps executions redriven
        at least once, False those never redriven. `published_version` and
        `alias` keep only executions started through that version or alias.
        With no `machine`, a Distributed Map's child executions are left out.
        """
        query = sa.select(executions)
        if published_version is not None:
            query = query.where(executions.c.published_version == published_version)
        if alias is not None:
            query = query.where(executions.c.alias == alias)
        if redriven is not None:
            count = executions.c.redrive_count
            query = query.where(count > 0 if redriven else count == 0)
        if status is not None:
            query = query.where(executions.c.status == ExecutionStatus(status).value)
        if machine is not None:
            query = query.where(executions.c.machine == machine)
        else:
            # A Distributed Map's children (machine ``<machine>/<label>``) are
            # listed by their Map Run, not among all executions.
            query = query.where(executions.c.machine.not_like("%/%"))
        if after is not None:
            after_date, after_id = after
            query = query.where(
                sa.or_(
                    executions.c.start_date < after_date,
                    sa.and_(
                        executions.c.start_date == after_date,
                        executions.c.execution_id < after_id,
                    ),
                )
            )
        query = query.order_by(
            executions.c.start_date.desc(), executions.c.execution_id.desc()
        ).limit(limit)
        with self._read() as conn:
            if machine is not None:
                known = conn.execute(
                    sa.select(state_machines.c.id).where(state_machines.c.name == machine)
                ).first()
                if known is None:
                    raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{machine}'")
            return [execution_record(row, self._codec) for row in conn.execute(query)]

    def history(self, execution_id: str) -> list[Event]:
        """Return the execution's history events ordered by event id.

        Raises ExecutionDoesNotExist for an unknown execution.
        """
        with self._snapshot_read() as conn:
            events = history_events_of(conn, execution_id, self._codec, blocks=self._history_blocks)
            if not events:
                self._require_execution(conn, execution_id)
        return events

    def history_page(
        self,
        execution_id: str,
        *,
        after: int | None = None,
        limit: int = HISTORY_PAGE_SIZE,
        reverse: bool = False,
    ) -> list[Event]:
        """Up to `limit` events of the execution, keyset-paged by event id.

        In id order, those above `after` (newest first with `reverse`: those
        below it); None starts at the first (or, reversed, the last) event.
        Each page is an indexed range read of the (execution, event id) key
        of the rows and of the blocks (`blocks.history_page_of`), however
        long the history. Raises ExecutionDoesNotExist for an
        unknown execution.
        """
        with self._snapshot_read() as conn:
            events = history_page_of(
                conn,
                execution_id,
                self._codec,
                after=after,
                limit=limit,
                reverse=reverse,
                blocks=self._history_blocks,
            )
            if not events and after is None:
                self._require_execution(conn, execution_id)
        return events

    def iter_history(
        self, execution_id: str, *, page_size: int = HISTORY_PAGE_SIZE, reverse: bool = False
    ) -> Iterator[list[Event]]:
        """The execution's history one page at a time (see `history_page`), each its own read.

        Memory stays one page whatever the history's length. Raises
        ExecutionDoesNotExist for an unknown execution.
        """
        after: int | None = None
        while True:
            page = self.history_page(execution_id, after=after, limit=page_size, reverse=reverse)
            if page:
                yield page
            if len(page) < page_size:
                return
            after = page[-1].event_id

    def purge_executions(
        self,
        *,
        stopped_before: datetime,
        statuses: Sequence[str] | None = None,
        machine: str | None = None,
        limit: int = PURGE_BATCH_SIZE,
    ) -> list[str]:
        """Delete up to `limit` closed executions that stopped before `stopped_before`.

        Each goes with everything it owns (events, journal, tokens, activity
        tasks, SQL effects, work row), oldest first, in one short
        transaction; returns the deleted ids (fewer than `limit`: nothing
        more to purge now, skipped ones aside). Optionally only `statuses`
        and one `machine`. A RUNNING execution is never deleted. On PostgreSQL the purge never
        waits on a writer: an execution whose executions row, work row,
        token, activity task, SQL effect or Map Run another transaction holds
        is skipped (a later purge deletes it), so a purge neither waits on a
        worker's step nor deadlocks with a commit (see `_HELD_BY_WRITERS`).
        Raises ValueError for an unknown status or RUNNING.
        """
        wanted = [ExecutionStatus(s).value for s in statuses] if statuses else None
        if wanted is not None and ExecutionStatus.RUNNING.value in wanted:
            raise ValueError("RUNNING executions are never purged")
        query = sa.select(executions.c.execution_id).where(
            executions.c.stop_date < stopped_before,
            executions.c.status != ExecutionStatus.RUNNING.value,
        )
        if wanted is not None:
            query = query.where(executions.c.status.in_(wanted))
        if machine is not None:
            query = query.where(executions.c.machine == machine)
        query = (
            query.order_by(executions.c.stop_date).limit(limit).with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            ids = [row.execution_id for row in conn.execute(query)]
            if ids and conn.dialect.name == "postgresql":
                held = _held_by_writers(conn, ids)
                ids = [execution_id for execution_id in ids if execution_id not in held]
            if ids:
                # The foreign keys (and on PostgreSQL migration 17's trigger)
                # delete every row the executions own.
                conn.execute(sa.delete(executions).where(executions.c.execution_id.in_(ids)))
        return ids

    @staticmethod
    def _require_execution(conn: Connection, execution_id: str) -> Any:
        row = conn.execute(
            sa.select(executions).where(executions.c.execution_id == execution_id)
        ).first()
        if row is None:
            raise ExecutionDoesNotExist(f"Execution Does Not Exist: '{execution_id}'")
        return row

    def load(self, execution_id: str) -> LoadedExecution:
        """Return what a replay needs: the record, its machine version and all it journaled.

        Raises ExecutionDoesNotExist for an unknown execution.
        """
        with self._read() as conn:
            record = execution_record(self._require_execution(conn, execution_id), self._codec)
            machine_row = conn.execute(
                sa.select(*MACHINE_COLUMNS)
                .select_from(MACHINE_JOIN)
                .where(
                    state_machines.c.name == record.machine,
                    state_machine_versions.c.version == record.version,
                )
            ).first()
            if machine_row is None:
                raise StateMachineDoesNotExist(
                    f"State Machine Does Not Exist: '{record.machine}:{record.version}'"
                )
            open_value = self._codec.open
            journal_values = {
                key: open_value(value)
                for key, value in self._backend.journal_rows(conn, execution_id)
            }
            token_rows = conn.execute(
                sa.select(task_tokens).where(task_tokens.c.execution_id == execution_id)
            )
            token_values = {row.key: token_record(row) for row in token_rows}
        return LoadedExecution(
            record=record,
            machine=machine_version(machine_row),
            journal=journal_values,
            last_event_id=record.last_event_id,
            tokens=token_values,
        )

    # -- stop requests -----------------------------------------------------

    def request_stop(
        self, execution_id: str, *, error: str | None, cause: str | None, now: datetime
    ) -> ExecutionRecord:
        """Ask a RUNNING execution to stop (abort) and make its work due now.

        The worker that runs it next records ExecutionAborted with this
        error/cause. A repeated request keeps the first error and cause.
        Raises ExecutionDoesNotExist, or ExecutionNotRunning if it already closed.
        """
        with self._write() as conn:
            # Lock the work row before the executions row, as commit does.
            conn.execute(
                sa.select(work_queue.c.execution_id)
                .where(work_queue.c.execution_id == execution_id)
                .with_for_update()
            ).first()
            record = execution_record(self._require_execution(conn, execution_id), self._codec)
            if record.status != ExecutionStatus.RUNNING:
                raise ExecutionNotRunning(
                    f"execution '{execution_id}' is {record.status}, not RUNNING: "
                    "it cannot be stopped"
                )
            if not record.stop_requested:
                conn.execute(
                    sa.update(executions)
                    .where(executions.c.execution_id == execution_id)
                    .values(
                        stop_requested=True,
                        stop_requested_error=escape_clear(error),
                        stop_requested_cause=self._codec.seal_optional(cause),
                    )
                )
                record = msgspec.structs.replace(
                    record,
                    stop_requested=True,
                    stop_requested_error=error,
                    stop_requested_cause=cause,
                )
            signal(conn, execution_id, now)
            self._backend.notify_in(conn)
        self._waker.wake_local()
        return record

    def stop_requests(
        self, execution_ids: Sequence[str]
    ) -> dict[str, tuple[str | None, str | None]]:
        """Of `execution_ids`, those with a stop requested: id → (error, cause). One query."""
        if not execution_ids:
            return {}
        with self._read() as conn:
            rows = conn.execute(
                sa.select(
                    executions.c.execution_id,
                    executions.c.stop_requested_error,
                    executions.c.stop_requested_cause,
                ).where(
                    executions.c.execution_id.in_(list(execution_ids)),
                    executions.c.stop_requested.is_(True),
                )
            )
            return {
                row.execution_id: (
                    unescape_clear(row.stop_requested_error),
                    self._codec.open_optional(row.stop_requested_cause),
                )
                for row in rows
            }
