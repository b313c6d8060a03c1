"""The durable store: every row Stepwise keeps, on SQLite or PostgreSQL, via SQLAlchemy Core.

`Store` owns the transactions: recording an execution's start, handing out
work under leases, group-committing the checkpoints of many executions at
once, and the calls other processes make (stop, callbacks). Races between
workers are settled by the database, not by luck: a lease is checked under a
row lock before every commit, and unique keys on (execution, event id) and
(execution, journal key) make it impossible to record one step twice. The API
is synchronous; the async engine calls it from a worker thread. SQLite runs in
WAL mode and takes its write lock up front (BEGIN IMMEDIATE) so transactions
never deadlock upgrading a read lock; PostgreSQL claims with
`FOR UPDATE SKIP LOCKED` and wakes workers with LISTEN/NOTIFY.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import msgspec
import psycopg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from engine.store import schema
from engine.store.checkpoints import (
    CLOSED_TOKEN,
    event_row,
    notify_in,
    open_token,
    release_work,
    signal,
    write_checkpoints,
)
from engine.store.connect import create_engine, parse_url
from engine.store.errors import (
    AmbiguousExecution,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    ExecutionNotRunning,
    InvalidToken,
    StateMachineDoesNotExist,
    StoreUnavailable,
    TaskTimedOut,
)
from engine.store.fastcommit import pipelined_commit
from engine.store.notify import PostgresListener, SqliteWaker, Waker
from engine.store.records import (
    Checkpoint,
    CommitResult,
    Event,
    ExecutionRecord,
    ExecutionStatus,
    LoadedExecution,
    MachineType,
    MachineVersion,
    TokenRecord,
    TokenStatus,
)
from engine.store.rows import (
    MACHINE_COLUMNS,
    MACHINE_JOIN,
    execution_record,
    first_line,
    hash_definition,
    machine_version,
    same_json,
    token_record,
)
from engine.store.schema import (
    executions,
    history_events,
    journal,
    state_machine_versions,
    state_machines,
    task_tokens,
    timers,
    work_queue,
)

__all__ = ["Store", "default_database_url"]

_DEFAULT_URL = "sqlite:///./stepwise.db"


def default_database_url() -> str:
    """The database to use when none is given: $STEPWISE_DATABASE_URL, else ./stepwise.db."""
    return os.environ.get("STEPWISE_DATABASE_URL") or _DEFAULT_URL


class Store:
    """The durable store on one database URL (SQLite file or PostgreSQL).

    Opening a store checks the connection and applies any missing migration,
    so a fresh database is ready at once. Raises StoreUnavailable (a message,
    never a traceback) when the database cannot be reached or is newer than
    this code.
    """

    url: str
    dialect: Literal["sqlite", "postgresql"]

    def __init__(self, url: str, *, poll_interval: float = 0.1, auto_migrate: bool = True) -> None:
        parsed, self.dialect = parse_url(url)
        self.url = parsed.render_as_string(hide_password=False)
        self._display = parsed.render_as_string(hide_password=True)
        self._engine = create_engine(parsed, self.dialect)
        self._waker: Waker
        if self.dialect == "postgresql":
            conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            self._waker = PostgresListener(conninfo, self._display)
        else:
            self._waker = SqliteWaker(poll_interval)
        try:
            with self._read() as conn:
                version = schema.current_version(conn)
        except StoreUnavailable:
            self._engine.dispose()
            raise
        if version > schema.SCHEMA_VERSION:
            self._engine.dispose()
            raise StoreUnavailable(
                f"database {self._display}: the schema is at version {version}, newer than "
                f"this Stepwise understands ({schema.SCHEMA_VERSION}); upgrade Stepwise"
            )
        if auto_migrate and version < schema.SCHEMA_VERSION:
            self.migrate()

    # -- connections and transactions ------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn = conn.execution_options(stepwise_write=True)
                with conn.begin():
                    yield conn
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise StoreUnavailable(
                f"database {self._display} is unavailable: {first_line(exc)}"
            ) from None

    def _read(self) -> AbstractContextManager[Connection]:
        return self._transaction(write=False)

    def _write(self) -> AbstractContextManager[Connection]:
        return self._transaction(write=True)

    def migrate(self) -> int:
        """Apply the missing migrations in one locked transaction; return the schema version.

        Safe to run from several processes at once. Raises StoreUnavailable if
        the database is unreachable or its schema is newer than this code.
        """
        try:
            with self._write() as conn:
                return schema.migrate(conn, datetime.now(UTC))
        except RuntimeError as exc:
            raise StoreUnavailable(f"database {self._display}: {exc}") from None

    def schema_version(self) -> int:
        """The highest migration applied to the database (0 when empty)."""
        with self._read() as conn:
            return schema.current_version(conn)

    def close(self) -> None:
        """Close every connection the store holds. The store is unusable afterwards."""
        self._waker.close()
        self._engine.dispose()

    # -- state machines ---------------------------------------------------

    def put_state_machine(
        self, name: str, definition: str, machine_type: str = MachineType.STANDARD
    ) -> MachineVersion:
        """Record `definition` as the next version of machine `name`, unless it is unchanged.

        The content hash covers the parsed definition and the type: when it
        equals the latest version's, that version is returned and nothing is
        written. Raises ValueError for a type other than STANDARD/EXPRESS.
        """
        machine_type = MachineType(machine_type).value
        content_hash = hash_definition(definition, machine_type)
        now = datetime.now(UTC)
        insert = pg_dialect.insert if self.dialect == "postgresql" else sqlite_dialect.insert
        with self._write() as conn:
            conn.execute(
                insert(state_machines)
                .values(name=name, type=machine_type, created_at=now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            # The row lock makes concurrent puts of one machine take turns.
            machine_id = conn.execute(
                sa.select(state_machines.c.id)
                .where(state_machines.c.name == name)
                .with_for_update()
            ).scalar_one()
            latest = conn.execute(
                sa.select(*MACHINE_COLUMNS)
                .select_from(MACHINE_JOIN)
                .where(state_machines.c.id == machine_id)
                .order_by(state_machine_versions.c.version.desc())
                .limit(1)
            ).first()
            if latest is not None and latest.content_hash == content_hash:
                return machine_version(latest)
            version = 1 if latest is None else latest.version + 1
            conn.execute(
                sa.insert(state_machine_versions).values(
                    machine_id=machine_id,
                    version=version,
                    definition=definition,
                    content_hash=content_hash,
                    machine_type=machine_type,
                    created_at=now,
                )
            )
            conn.execute(
                sa.update(state_machines)
                .where(state_machines.c.id == machine_id)
                .values(type=machine_type)
            )
        return MachineVersion(name, version, definition, content_hash, machine_type, now)

    def get_state_machine(self, name: str, version: int | None = None) -> MachineVersion:
        """Return one version of machine `name` (the latest when `version` is None).

        Raises StateMachineDoesNotExist when the machine or version is unknown.
        """
        query = sa.select(*MACHINE_COLUMNS).select_from(MACHINE_JOIN)
        query = query.where(state_machines.c.name == name)
        if version is None:
            query = query.order_by(state_machine_versions.c.version.desc()).limit(1)
        else:
            query = query.where(state_machine_versions.c.version == version)
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            what = name if version is None else f"{name}:{version}"
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{what}'")
        return machine_version(row)

    def list_state_machines(self) -> list[MachineVersion]:
        """Return the latest version of every state machine, ordered by name."""
        latest = (
            sa.select(
                state_machine_versions.c.machine_id,
                sa.func.max(state_machine_versions.c.version).label("version"),
            )
            .group_by(state_machine_versions.c.machine_id)
            .subquery()
        )
        query = (
            sa.select(*MACHINE_COLUMNS)
            .select_from(MACHINE_JOIN)
            .join(
                latest,
                sa.and_(
                    latest.c.machine_id == state_machine_versions.c.machine_id,
                    latest.c.version == state_machine_versions.c.version,
                ),
            )
            .order_by(state_machines.c.name)
        )
        with self._read() as conn:
            return [machine_version(row) for row in conn.execute(query)]

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
    ) -> tuple[ExecutionRecord, bool]:
        """Record a new execution, its ExecutionStarted event and its work, in one transaction.

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
        )
        try:
            with self._write() as conn:
                conn.execute(sa.insert(executions).values(msgspec.structs.asdict(record)))
                conn.execute(sa.insert(history_events).values(event_row(execution_id, first_event)))
                conn.execute(
                    sa.insert(work_queue).values(
                        execution_id=execution_id, due_at=start_date, wakeups=0, wakeups_seen=0
                    )
                )
                notify_in(conn)
        except sa_exc.IntegrityError:
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
        existing = execution_record(row)
        if (
            existing.machine == wanted.machine
            and existing.name == wanted.name
            and existing.status == ExecutionStatus.RUNNING
            and same_json(existing.input, wanted.input)
        ):
            return existing
        raise ExecutionAlreadyExists(f"Execution Already Exists: '{existing.execution_id}'")

    def get_execution(self, ref: str) -> ExecutionRecord:
        """Return the execution whose id is `ref`, else the only one named `ref`.

        Raises ExecutionDoesNotExist when nothing matches and AmbiguousExecution
        when the name belongs to executions of several machines.
        """
        with self._read() as conn:
            row = conn.execute(
                sa.select(executions).where(executions.c.execution_id == ref)
            ).first()
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
        return execution_record(rows[0])

    def list_executions(
        self,
        *,
        machine: str | None = None,
        status: str | None = None,
        limit: int = 1000,
        after: tuple[datetime, str] | None = None,
    ) -> list[ExecutionRecord]:
        """Return up to `limit` executions, newest first, optionally of one machine and/or status.

        Executions are ordered by (start_date, execution_id), descending, so
        the order is total and stable. `after` is a keyset cursor: the
        (start_date, execution_id) of the last execution of the previous
        page; only executions that sort after it are returned, so paging
        never repeats or skips one, even while new executions start.
        Raises StateMachineDoesNotExist for an unknown `machine`, ValueError
        for an unknown `status`.
        """
        query = sa.select(executions)
        if status is not None:
            query = query.where(executions.c.status == ExecutionStatus(status).value)
        if machine is not None:
            query = query.where(executions.c.machine == machine)
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
            return [execution_record(row) for row in conn.execute(query)]

    def history(self, execution_id: str) -> list[Event]:
        """Return the execution's history events ordered by event id.

        Raises ExecutionDoesNotExist for an unknown execution.
        """
        query = (
            sa.select(history_events)
            .where(history_events.c.execution_id == execution_id)
            .order_by(history_events.c.event_id)
        )
        with self._read() as conn:
            rows = list(conn.execute(query))
            if not rows:
                self._require_execution(conn, execution_id)
        return [
            Event(
                event_id=row.event_id,
                previous_event_id=row.previous_event_id,
                type=row.type,
                timestamp=row.timestamp,
                details=msgspec.json.decode(row.details),
            )
            for row in rows
        ]

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
            record = execution_record(self._require_execution(conn, execution_id))
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
            entries = conn.execute(
                sa.select(journal.c.key, journal.c.value).where(
                    journal.c.execution_id == execution_id
                )
            )
            journal_values = {row.key: row.value for row in entries}
            timer_rows = conn.execute(
                sa.select(timers.c.key, timers.c.fire_at).where(
                    timers.c.execution_id == execution_id
                )
            )
            timer_values = {row.key: row.fire_at for row in timer_rows}
            token_rows = conn.execute(
                sa.select(task_tokens).where(task_tokens.c.execution_id == execution_id)
            )
            token_values = {row.key: token_record(row) for row in token_rows}
        return LoadedExecution(
            record=record,
            machine=machine_version(machine_row),
            journal=journal_values,
            last_event_id=record.last_event_id,
            timers=timer_values,
            tokens=token_values,
        )

    # -- work and leases --------------------------------------------------

    def claim(
        self, worker_id: str, *, limit: int, lease_seconds: float, now: datetime
    ) -> list[str]:
        """Lease up to `limit` executions whose work is due, oldest due first.

        Only rows that are due (`due_at <= now`) and unleased or whose lease
        expired are taken; on PostgreSQL rows another claimer has locked are
        skipped, so two claimers never get the same execution.
        """
        return [
            execution_id
            for execution_id, _due in self.claim_due(
                worker_id, limit=limit, lease_seconds=lease_seconds, now=now
            )
        ]

    def claim_due(
        self, worker_id: str, *, limit: int, lease_seconds: float, now: datetime
    ) -> list[tuple[str, datetime]]:
        """`claim`, also returning when each claimed execution's work fell due (queue lag)."""
        if limit <= 0:
            return []
        expires = now + timedelta(seconds=lease_seconds)
        free = sa.or_(work_queue.c.lease_expires_at.is_(None), work_queue.c.lease_expires_at <= now)
        query = (
            sa.select(work_queue.c.execution_id, work_queue.c.due_at)
            .where(work_queue.c.due_at <= now, free)
            .order_by(work_queue.c.due_at, work_queue.c.execution_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            claimed = [(row.execution_id, row.due_at) for row in conn.execute(query)]
            ids = [execution_id for execution_id, _due in claimed]
            if ids:
                conn.execute(
                    sa.update(work_queue)
                    .where(work_queue.c.execution_id.in_(ids))
                    .values(
                        lease_owner=worker_id,
                        lease_expires_at=expires,
                        wakeups_seen=work_queue.c.wakeups,
                    )
                )
        return claimed

    def claim_execution(
        self, execution_id: str, worker_id: str, *, lease_seconds: float, now: datetime
    ) -> bool:
        """Lease one execution whether or not it is due, if its lease is free, expired or ours.

        Returns False when another worker holds the lease or the execution
        has no work row (it finished).
        """
        with self._write() as conn:
            row = conn.execute(
                sa.select(work_queue.c.lease_owner, work_queue.c.lease_expires_at)
                .where(work_queue.c.execution_id == execution_id)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return False
            held = row.lease_expires_at is not None and row.lease_expires_at > now
            if held and row.lease_owner != worker_id:
                return False
            conn.execute(
                sa.update(work_queue)
                .where(work_queue.c.execution_id == execution_id)
                .values(
                    lease_owner=worker_id,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    wakeups_seen=work_queue.c.wakeups,
                )
            )
        return True

    def renew(
        self, worker_id: str, execution_ids: Sequence[str], *, lease_seconds: float, now: datetime
    ) -> set[str]:
        """Extend the worker's unexpired leases; return the ids it still holds.

        An id missing from the result was lost (expired, taken over, or the
        execution finished): the worker must stop working on it.
        """
        if not execution_ids:
            return set()
        mine = sa.and_(
            work_queue.c.execution_id.in_(list(execution_ids)),
            work_queue.c.lease_owner == worker_id,
            work_queue.c.lease_expires_at > now,
        )
        with self._write() as conn:
            held = {
                row.execution_id
                for row in conn.execute(
                    sa.select(work_queue.c.execution_id).where(mine).with_for_update()
                )
            }
            if held:
                conn.execute(
                    sa.update(work_queue)
                    .where(work_queue.c.execution_id.in_(held))
                    .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
                )
        return held

    def release(self, execution_id: str, worker_id: str, *, due_at: datetime | None) -> None:
        """Give back the worker's lease; the work is next due at `due_at` (None: on a signal).

        A callback or stop that arrived while the lease was held makes the
        work due now instead. Does nothing if the worker no longer holds the
        lease.
        """
        now = datetime.now(UTC)
        with self._write() as conn:
            row = conn.execute(
                sa.select(work_queue)
                .where(work_queue.c.execution_id == execution_id)
                .with_for_update()
            ).first()
            if row is None or row.lease_owner != worker_id:
                return
            due = release_work(conn, row, due_at, now)
            wake = due is not None and due <= now
            if wake:
                notify_in(conn)
        if wake:
            self._waker.wake_local()

    # -- group commit -----------------------------------------------------

    def commit(
        self, checkpoints: Sequence[Checkpoint], *, worker_id: str, now: datetime
    ) -> list[CommitResult]:
        """Write many executions' checkpoints in one transaction; one result per checkpoint.

        Each checkpoint is written only if `worker_id` still holds that
        execution's unexpired lease (checked under a row lock), else it is
        LEASE_LOST and nothing of it is written. If any row collides with one
        already recorded (same event id or journal key: another worker got
        there first), the group is rolled back and retried one checkpoint per
        transaction, so the others still commit and the colliding one is
        reported CONFLICT, never recorded twice. Raises StoreUnavailable when
        the database fails.
        """
        if not checkpoints:
            return []
        fast = (
            self._pipelined(checkpoints, worker_id, now) if self.dialect == "postgresql" else None
        )
        if fast is not None:
            results, wake = fast
            if wake:
                self._waker.wake_local()
            return results
        try:
            with self._write() as conn:
                results, wake = write_checkpoints(conn, checkpoints, worker_id, now)
                if wake:
                    notify_in(conn)
        except sa_exc.IntegrityError:
            results, wake = self._commit_one_by_one(checkpoints, worker_id, now)
        if wake:
            self._waker.wake_local()
        return results

    def _pipelined(
        self, checkpoints: Sequence[Checkpoint], worker_id: str, now: datetime
    ) -> tuple[list[CommitResult], bool] | None:
        """The two-round-trip commit (see fastcommit); None defers to the careful path."""
        try:
            return pipelined_commit(self._engine, checkpoints, worker_id, now)
        except (psycopg.OperationalError, sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise StoreUnavailable(
                f"database {self._display} is unavailable: {first_line(exc)}"
            ) from None

    def _commit_one_by_one(
        self, checkpoints: Sequence[Checkpoint], worker_id: str, now: datetime
    ) -> tuple[list[CommitResult], bool]:
        results: list[CommitResult] = []
        wake = False
        for checkpoint in checkpoints:
            try:
                with self._write() as conn:
                    (result,), woke = write_checkpoints(conn, [checkpoint], worker_id, now)
                    if woke:
                        notify_in(conn)
            except sa_exc.IntegrityError:
                result, woke = CommitResult.CONFLICT, False
            results.append(result)
            wake = wake or woke
        return results, wake

    # -- stop and callbacks -----------------------------------------------

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
            record = execution_record(self._require_execution(conn, execution_id))
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
                        stop_requested_error=error,
                        stop_requested_cause=cause,
                    )
                )
                record = msgspec.structs.replace(
                    record,
                    stop_requested=True,
                    stop_requested_error=error,
                    stop_requested_cause=cause,
                )
            signal(conn, execution_id, now)
        self._waker.wake_local()
        return record

    def complete_token(
        self, token: str, *, journal_key: str, value: str, status: str, now: datetime
    ) -> None:
        """Close an OPEN task token with `status`, journal its answer and wake its execution.

        One transaction: the token goes OPEN → status, `value` is recorded
        under (execution, `journal_key`) and the work becomes due now. Raises
        InvalidToken for an unknown token, TaskTimedOut when it is already
        closed or its execution ended, TaskDoesNotExist when the execution is
        gone, ValueError for a status that is not a closing one.
        """
        closing = TokenStatus(status)
        if closing == TokenStatus.OPEN:
            raise ValueError("a token is completed with SUCCEEDED, FAILED or TIMED_OUT")
        try:
            with self._write() as conn:
                execution_id = open_token(conn, token, lock=False).execution_id
                # Work row first, then the token: the order commit takes them in.
                conn.execute(
                    sa.select(work_queue.c.execution_id)
                    .where(work_queue.c.execution_id == execution_id)
                    .with_for_update()
                ).first()
                open_token(conn, token, lock=True)
                conn.execute(
                    sa.update(task_tokens)
                    .where(task_tokens.c.token == token)
                    .values(status=closing.value, heartbeat_at=now)
                )
                conn.execute(
                    sa.insert(journal).values(
                        execution_id=execution_id, key=journal_key, value=value, recorded_at=now
                    )
                )
                signal(conn, execution_id, now)
        except sa_exc.IntegrityError:
            # The walk already recorded an outcome for this step (a timeout).
            raise TaskTimedOut(CLOSED_TOKEN) from None
        self._waker.wake_local()

    def heartbeat_token(self, token: str, *, now: datetime) -> None:
        """Record a heartbeat for an OPEN token.

        Raises InvalidToken, TaskTimedOut or TaskDoesNotExist as complete_token does.
        """
        with self._write() as conn:
            open_token(conn, token, lock=True)
            conn.execute(
                sa.update(task_tokens).where(task_tokens.c.token == token).values(heartbeat_at=now)
            )

    def get_token(self, token: str) -> TokenRecord:
        """Return a task token's record. Raises InvalidToken when it was never issued."""
        with self._read() as conn:
            row = conn.execute(sa.select(task_tokens).where(task_tokens.c.token == token)).first()
        if row is None:
            raise InvalidToken("Invalid Token: 'Invalid token'")
        return token_record(row)

    # -- wake-ups ---------------------------------------------------------

    def notify(self) -> None:
        """Wake workers in wait_for_work: every process on PostgreSQL, this one on SQLite."""
        if self.dialect == "postgresql":
            with self._write() as conn:
                notify_in(conn)
        self._waker.wake_local()

    def wait_for_work(self, timeout: float) -> None:
        """Block until work may be due or `timeout` seconds pass (SQLite: at most one poll).

        May return early without work being due; callers claim and wait again.
        Raises StoreUnavailable if the PostgreSQL listener cannot connect.
        """
        self._waker.wait(timeout)

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
                row.execution_id: (row.stop_requested_error, row.stop_requested_cause)
                for row in rows
            }

    def work_due_at(self, execution_id: str) -> tuple[bool, datetime | None]:
        """(queued, due_at) of one execution's work row; queued False when it has none."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(work_queue.c.due_at).where(work_queue.c.execution_id == execution_id)
            ).first()
        if row is None:
            return False, None
        return True, row.due_at

    def next_due_at(self) -> datetime | None:
        """The earliest due time among unleased work, so an idle worker knows how long to sleep."""
        with self._read() as conn:
            value: datetime | None = conn.execute(
                sa.select(sa.func.min(work_queue.c.due_at)).where(
                    work_queue.c.lease_owner.is_(None)
                )
            ).scalar()
        if value is None:
            return None
        # min() loses the column type on some backends; normalize as the column would.
        return cast(
            datetime, schema.UTCDateTime().process_result_value(value, self._engine.dialect)
        )
