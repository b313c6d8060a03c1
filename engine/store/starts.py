"""Starting executions: references resolved and a batch of starts recorded in one transaction.

`StartStore.start_executions` is what `Lifecycle.start` (through its
`StartBatcher`) calls: for each start it reads the machine's status
(unknown, DELETING or gone), resolves the reference — the latest revision,
a published version, or an alias's weighted pick — has the caller build
its ``ExecutionStarted`` event (`StartRequest.prepare`, so the lifecycle
stays the one builder of that event), and writes the executions row, the
event and the work row; all starts of the batch share one transaction and
one commit. Each start gets its own answer: a start whose machine does not
resolve, whose input was refused, or whose name is taken by another
execution fails alone (the names are checked inside the transaction, before
any row is written, so a taken name never aborts the others). The same name
with equal input while that execution is RUNNING returns it (StartExecution
is idempotent on AWS), within a batch too. On PostgreSQL another process may
take a name between the check and the insert; the batch then rolls back and
is recorded again in halves, until the start that collided stands alone,
where the unique key decides. A batch the database refuses for one start's
data (`UnstorableData`, e.g. an input it cannot store) is split the same
way: that start's answer is the refusal, the others are recorded. On
SQLite a batch first runs as one transaction on the sqlite3 connection the
group commit keeps (`StartStore._raw_batch`); whatever that path does not
decide alone, it rolls back and leaves to the path above. On
PostgreSQL a batch of names the engine drew (`StartRequest.fresh_name`)
reads the machines by the driver and writes without a name check
(`StartStore._fresh_batch`): the unique keys alone decide there.
`resolve_reference` is the same resolution as a read on its own.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect

from engine.store import rawstart
from engine.store.base import StoreBase
from engine.store.boundary import mapped_errors
from engine.store.checkpoints import event_row
from engine.store.errors import (
    ExecutionAlreadyExists,
    ResourceNotFound,
    StateMachineDeleting,
    StateMachineDoesNotExist,
    StoreUnavailable,
    UnstorableData,
)
from engine.store.records import Event, ExecutionRecord, ExecutionStatus, MachineVersion
from engine.store.rows import MACHINE_COLUMNS, execution_record, same_json
from engine.store.schema import (
    executions,
    history_events,
    machine_aliases,
    published_versions,
    state_machine_versions,
    state_machines,
    work_queue,
)
from statemachine.errors import StepwiseError

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "Resolved",
    "StartRequest",
    "StartResult",
    "StartStore",
    "pick_route",
    "wakes",
]


@dataclass(frozen=True)
class Resolved:
    """What a machine reference runs: a revision, and the version/alias it came through."""

    machine: MachineVersion
    version: int | None = None  # the published version number
    alias: str | None = None


@dataclass(frozen=True)
class StartRequest:
    """One start: the machine reference, the execution's name, input and the event builder.

    `qualifier` is a published version number (digits) or an alias name, or
    None for the latest revision. `draw` is called once, for an alias's
    weighted pick only. `prepare` gets the resolved machine and returns the
    execution's id and its ``ExecutionStarted`` event, or raises (its error
    is that start's answer; nothing of it is written).

    `lease_owner` set: the work row is written already leased to that
    worker until `lease_expires_at`, as a claim would lease it (the start
    is handed straight to a worker of this process: `Worker.take_started`);
    no wake-up is sent for it. None: the work row is due now, unleased.
    """

    machine: str
    qualifier: str | None
    name: str
    input: str
    start_date: datetime
    trace_id: str
    queue: str
    draw: Callable[[], float]
    prepare: Callable[[Resolved], tuple[str, Event]]
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    # True: `name` is a fresh UUID the engine drew (the caller gave none), so
    # no execution holds it or its id; PostgreSQL's batch then skips the name
    # check (`StartStore._fresh_batch`). The unique keys still decide.
    fresh_name: bool = False


@dataclass
class StartResult:
    """One start's answer: (record, created) or the error it raised.

    `machine` is the machine version a created execution runs (what a
    claim would load with it); None for an existing one or an error.
    """

    record: ExecutionRecord | None = None
    created: bool = False
    error: StepwiseError | None = None
    machine: MachineVersion | None = None


def pick_route(routes: Sequence[tuple[int, int]], draw: float) -> int:
    """The version an alias's weighted `routes` give for a `draw` in [0, 1)."""
    point = draw * 100
    for number, weight in routes:
        if point < weight:
            return number
        point -= weight
    return next(number for number, weight in reversed(routes) if weight > 0)


# The machine's row with its latest revision (if any): status and the common
# NAME start in one read.
_HEAD = (
    sa.select(state_machines.c.id, state_machines.c.deleted_at, *MACHINE_COLUMNS[1:])
    .select_from(
        state_machines.outerjoin(
            state_machine_versions, state_machine_versions.c.machine_id == state_machines.c.id
        )
    )
    .order_by(state_machine_versions.c.version.desc())
    .limit(1)
)
_HEAD_BY_NAME = _HEAD.where(state_machines.c.name == sa.bindparam("name"))


class _Resolver:
    """Resolves references on one connection, remembering machines for the rest of a batch."""

    def __init__(self, conn: Connection, *, starting: bool) -> None:
        self.conn = conn
        # A start refuses a DELETING machine; a lookup still describes it.
        self._starting = starting
        self._heads: dict[str, Any] = {}
        # SQLite reads the machine through the driver (`rawstart.first_row`): the
        # same row, without SQLAlchemy's statement and result machinery.
        self._raw = conn.dialect.name == "sqlite"

    def resolve(self, name: str, qualifier: str | None, draw: Callable[[], float]) -> Resolved:
        conn = self.conn
        head = self._heads.get(name)
        if head is None:
            if self._raw:
                head = rawstart.first_row(conn, _HEAD_BY_NAME, name=name)
            else:
                head = conn.execute(_HEAD_BY_NAME, {"name": name}).first()
            if head is None:
                raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
            if head.deleted_at is not None:
                if not _running(conn, name):
                    raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
                if self._starting:
                    raise StateMachineDeleting(f"State machine '{name}' is being deleted")
            self._heads[name] = head
        if qualifier is None:
            if head.version is None:
                raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
            return Resolved(_machine(name, head))
        alias = None
        if qualifier.isdigit():
            number = int(qualifier)
        else:
            routes = conn.execute(
                sa.select(machine_aliases.c.routes).where(
                    machine_aliases.c.machine_id == head.id, machine_aliases.c.name == qualifier
                )
            ).scalar()
            if routes is None:
                raise ResourceNotFound(f"Resource not found: '{name}:{qualifier}'")
            decoded = msgspec.json.decode(str(routes), type=list[tuple[int, int]])
            number = pick_route(decoded, draw())
            alias = qualifier
        revision = conn.execute(
            sa.select(published_versions.c.revision).where(
                published_versions.c.machine_id == head.id,
                published_versions.c.number == number,
                published_versions.c.deleted_at.is_(None),
            )
        ).scalar()
        if revision is None:
            raise ResourceNotFound(f"Resource not found: '{name}:{number}'")
        row = conn.execute(
            sa.select(*MACHINE_COLUMNS[1:]).where(
                state_machine_versions.c.machine_id == head.id,
                state_machine_versions.c.version == revision,
            )
        ).first()
        if row is None:
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}:{revision}'")
        return Resolved(_machine(name, row), number, alias)


def _machine(name: str, row: Any) -> MachineVersion:
    return MachineVersion(
        name=name,
        version=row.version,
        definition=row.definition,
        content_hash=row.content_hash,
        machine_type=row.machine_type,
        created_at=row.created_at,
    )


def _running(conn: Connection, name: str) -> bool:
    """Whether any execution of machine `name` is RUNNING."""
    return (
        conn.execute(
            sa.select(executions.c.execution_id)
            .where(executions.c.machine == name, executions.c.status == "RUNNING")
            .limit(1)
        ).first()
        is not None
    )


class _Careful(Exception):
    """The raw start met a case only the careful path handles: it rolls back and hands over."""


class _RawResolver:
    """The common case of `_Resolver` on the sqlite3 connection itself: a name's latest revision.

    Raises what `_Resolver` raises for a machine that does not exist or has
    no revision; a qualifier (version or alias) or a machine being deleted
    raises `_Careful`, so `_Resolver` decides those.
    """

    def __init__(self, driver: sqlite3.Connection, dialect: Dialect) -> None:
        self._driver = driver
        self._dialect = dialect
        self._heads: dict[str, Any] = {}

    def resolve(self, name: str, qualifier: str | None, draw: Callable[[], float]) -> Resolved:
        if qualifier is not None:
            raise _Careful
        head = self._heads.get(name)
        if head is None:
            head = rawstart.first_row_on(self._driver, self._dialect, _HEAD_BY_NAME, name=name)
            if head is None:
                raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
            if head.deleted_at is not None:
                raise _Careful
            self._heads[name] = head
        if head.version is None:
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
        return Resolved(_machine(name, head))


class _PgResolver:
    """`_RawResolver` on a psycopg connection: a name's latest revision, one statement.

    The same row `_Resolver` reads (`_HEAD_BY_NAME`, compiled once per
    dialect, each value through its column type's result processor), without
    SQLAlchemy's connection, statement and result machinery. Raises what
    `_Resolver` raises for a machine that does not exist or has no revision;
    a qualifier or a machine being deleted raises `_Careful`.
    """

    def __init__(self, read_head: Callable[[str], Any], dialect: Dialect) -> None:
        # A machine name → its `_HEAD_BY_NAME` row (None: no such machine).
        self._read_head = read_head
        _, _, self._processors, self._make = _pg_head_shape(dialect)
        self._heads: dict[str, Any] = {}

    def resolve(self, name: str, qualifier: str | None, draw: Callable[[], float]) -> Resolved:
        if qualifier is not None:
            raise _Careful
        head = self._heads.get(name)
        if head is None:
            row = self._read_head(name)
            if row is None:
                raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
            head = self._make(
                *(
                    value if process is None else process(value)
                    for value, process in zip(row, self._processors, strict=True)
                )
            )
            if head.deleted_at is not None:
                raise _Careful
            self._heads[name] = head
        if head.version is None:
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
        return Resolved(_machine(name, head))


def wakes(created: Sequence[_Planned]) -> bool:
    """Whether writing `created` must wake the workers (NOTIFY).

    Work leased to a worker of this process needs no wake-up: it is handed
    to that worker; only due work makes workers look.
    """
    return any(plan.lease_owner is None for plan in created)


@functools.cache
def _pg_head_shape(dialect: Dialect) -> tuple[str, dict[str, Any], tuple[Any, ...], Any]:
    """`_HEAD_BY_NAME` for `dialect`: its SQL, fixed parameters, result processors, row type."""
    compiled = _HEAD_BY_NAME.compile(dialect=dialect)
    columns = list(_HEAD_BY_NAME.selected_columns)
    processors = tuple(column.type.result_processor(dialect, None) for column in columns)
    fixed = {key: value for key, value in compiled.params.items() if key != "name"}
    return str(compiled), fixed, processors, namedtuple("_Head", [str(c.key) for c in columns])


class _Collided(Exception):
    """A pipelined batch met a unique key: nothing was written (see `start_executions`)."""


# The work_queue row a start writes (`StartStore._rows`), column by column.
_WORK_COLUMNS = (
    "execution_id",
    "queue",
    "due_at",
    "lease_owner",
    "lease_expires_at",
    "wakeups",
    "wakeups_seen",
)


@dataclass
class _Planned:
    """A start that resolved, before its rows are written."""

    index: int
    record: ExecutionRecord
    first_event: Event
    machine: MachineVersion
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


class StartStore(StoreBase):
    """The store's start calls (a part of `Store`)."""

    # On SQLite, a batch's name check and inserts skip SQLAlchemy's statement
    # building (`rawstart.py`); on PostgreSQL its writes are one pipelined
    # round trip (`pgstart.py`). False takes the careful path (tests compare).
    raw_start_writes: bool = True

    def resolve_reference(
        self, name: str, qualifier: str | None, draw: Callable[[], float]
    ) -> Resolved:
        """What an execution of machine `name` (`qualifier`: version or alias) runs; one read.

        Raises StateMachineDoesNotExist (unknown, or deleted with nothing
        running) and ResourceNotFound (no such version or alias); a DELETING
        machine still resolves (only a start refuses it).
        """
        with self._read() as conn:
            return _Resolver(conn, starting=False).resolve(name, qualifier, draw)

    def prepare_starts(self) -> None:
        """Do the start path's one-time work now (an engine about to start executions calls it).

        On PostgreSQL: load the pipelined writer (`pgstart`, imported on
        first use so SQLite never loads psycopg) and compile the machine
        lookup of `_PgResolver` (cached per dialect), ~1-2 ms of CPU a
        cold engine's first start paid. Nothing to do on SQLite. Touches no
        connection.
        """
        if self.raw_start_writes and self.dialect == "postgresql":
            import engine.store.pgstart  # noqa: F401  (loads psycopg: PostgreSQL only)

            _pg_head_shape(self._engine.dialect)

    def start_executions(self, requests: Sequence[StartRequest]) -> list[StartResult]:
        """Record every start of `requests` in one transaction; one answer per request, in order.

        An answer is (record, True) when created, (existing record, False)
        for the same name with equal input while that execution is RUNNING,
        or the error of that start alone: StateMachineDoesNotExist,
        StateMachineDeleting, ResourceNotFound, ExecutionAlreadyExists,
        UnstorableData (the database refused its data) or what `prepare`
        raised. Raises StoreUnavailable when the database fails (every start
        of the batch is then unknown to its caller).
        """
        try:
            fast = self._raw_batch(requests) if self._raw_start_writes() else None
            return self._start_batch(requests) if fast is None else fast
        except (sa_exc.IntegrityError, _Collided):
            if len(requests) == 1:
                # Another process took the name between the check and the
                # insert: the existing execution decides (read after the
                # failed transaction rolled back).
                return [self._collided(requests[0])]
        except UnstorableData as refused:
            if len(requests) == 1:
                return [StartResult(error=refused)]  # its data alone: its own answer
        # A batch refused, nothing written: each half again in a transaction
        # of its own, until the start refused stands alone.
        middle = len(requests) // 2
        results: list[StartResult] = []
        for half in (requests[:middle], requests[middle:]):
            try:
                results.extend(self.start_executions(half))
            except StoreUnavailable as error:
                results.extend(StartResult(error=error) for _ in half)
        return results

    def _start_batch(self, requests: Sequence[StartRequest]) -> list[StartResult]:
        # PostgreSQL: check in autocommit, then write in one pipelined round
        # trip; the unique keys decide a name taken in between.
        pipelined = self.raw_start_writes and self.dialect == "postgresql"
        if pipelined and all(r.fresh_name and r.qualifier is None for r in requests):
            fresh = self._fresh_batch(requests)
            if fresh is not None:
                return fresh
        results = [StartResult() for _ in requests]
        with self._read() if pipelined else self._write() as conn:
            resolver = _Resolver(conn, starting=True)
            planned: list[_Planned] = []
            for index, request in enumerate(requests):
                try:
                    planned.append(_plan(index, request, resolver))
                except StepwiseError as error:
                    results[index].error = error
            wanted_records = [plan.record for plan in planned]
            raw = self._raw_start_writes()
            if raw:
                free = not rawstart.any_taken(conn, wanted_records)
            elif pipelined:
                from engine.store.pgstart import any_taken  # loads psycopg: PostgreSQL only

                free = not any_taken(conn, wanted_records)
            else:
                free = False
            if free:
                taken: dict[Any, ExecutionRecord] = {}
            else:
                taken = self._taken(conn, wanted_records)
            created = _sort_out(planned, taken, results)
            wake = wakes(created)
            if created and not pipelined:
                self._insert(conn, created, raw=raw)
                if wake:
                    self._backend.notify_in(conn)
        if created and pipelined:
            self._insert_pipelined(created, notify=wake)
        return self.answered(created, results)

    def _fresh_batch(self, requests: Sequence[StartRequest]) -> list[StartResult] | None:
        """PostgreSQL: a batch of fresh names, each of a machine's latest revision; None: careful.

        The machines are read by the driver in autocommit (`_PgResolver`), as
        the careful path reads them; no name check (no execution holds a
        fresh UUID or its id), and the rows are written as the careful path
        writes them (`_insert_pipelined`): two round trips, none through
        SQLAlchemy. Should a name collide all the same, the unique keys abort
        the write and `start_executions` answers each start alone. A machine
        being deleted returns None before anything is written.
        """
        from engine.store.pgraw import pooled_psycopg  # loads psycopg: PostgreSQL only

        with mapped_errors(self._display), pooled_psycopg(self._engine, autocommit=True) as driver:
            sql, fixed = self.head_query()
            planned = self.plan_read(
                requests, lambda name: driver.execute(sql, {**fixed, "name": name}).fetchone()
            )
        if planned is None:
            return None
        results, created = planned
        if created:
            self._insert_pipelined(created, notify=wakes(created))
        return self.answered(created, results)

    def head_query(self) -> tuple[str, dict[str, Any]]:
        """PostgreSQL: the machine lookup `plan_read` wants rows of (SQL, fixed parameters).

        The caller adds ``name``; the row is the machine's status with its
        latest revision, None for no such machine.
        """
        sql, fixed, _, _ = _pg_head_shape(self._engine.dialect)
        return sql, fixed

    def plan_read(
        self, requests: Sequence[StartRequest], read_head: Callable[[str], Any]
    ) -> tuple[list[StartResult], list[_Planned]] | None:
        """Resolve `requests` by `read_head` (a name → its `pg_head_query` row); None: careful.

        PostgreSQL. Returns the answers so far (each start that does not
        resolve has its error) and the starts to create, a name repeated in
        the batch answered by its first start (`_sort_out`); None when a
        qualifier or a machine being deleted needs the careful path. The
        names are not checked against the database here.
        """
        results = [StartResult() for _ in requests]
        planned: list[_Planned] = []
        resolver = _PgResolver(read_head, self._engine.dialect)
        for index, request in enumerate(requests):
            try:
                planned.append(_plan(index, request, resolver))
            except _Careful:
                return None
            except StepwiseError as error:
                results[index].error = error
        return results, _sort_out(planned, {}, results)

    def start_statement(
        self, created: Sequence[_Planned], *, notify: bool
    ) -> tuple[str, list[str]]:
        """PostgreSQL: the one statement (and its parameters) writing `created`'s rows.

        Guarded (`pgstart.guarded_statement`): it writes only while each
        machine is still at the revision its starts were planned with.
        """
        from engine.store.pgstart import guarded_statement  # loads psycopg: PostgreSQL only

        (_, rows), (_, events), (_, work) = self._rows(created)
        heads = dict.fromkeys((p.machine.name, p.machine.version) for p in created)
        return guarded_statement(rows, events, work, list(heads), notify=notify)

    def warm_statement(self) -> tuple[str, list[str]]:
        """PostgreSQL: the write `start_statement` sends for starts handed to a worker, for no rows.

        It writes nothing; sent at a connection's start, the server has the
        three tables' insert parsed and planned before the first start.
        """
        from engine.store.pgstart import warm_statement  # loads psycopg: PostgreSQL only

        event = Event(0, 0, "", datetime.min)
        return warm_statement(
            ExecutionRecord.__struct_fields__, tuple(event_row("", event)), _WORK_COLUMNS
        )

    def _raw_batch(self, requests: Sequence[StartRequest]) -> list[StartResult] | None:
        """SQLite: the whole batch as one transaction on the kept sqlite3 connection, or None.

        BEGIN IMMEDIATE, the machines resolved (`_RawResolver`), the names
        checked, the careful path's rows inserted (`_rows`, bound as
        SQLAlchemy binds them), COMMIT. A start this path does not decide
        alone — a qualifier, a machine being deleted, a name or id already
        taken — or any error of the database rolls everything back and
        returns None: the careful path (`_start_batch`) then gives the
        answers, so both paths answer alike. A refusal that path would meet
        alike (the data, a collision: `rawstart.refusal`) is raised instead,
        so `start_executions` splits the batch at once. What `prepare`
        raises is that start's answer, as on the careful path.
        """
        import sqlite3  # only SQLite comes here; a PostgreSQL process never loads it

        from engine.store.sqlite import SqliteBackend  # the backend that keeps the connection

        backend = self._backend
        held = backend.held_for(self._engine) if isinstance(backend, SqliteBackend) else None
        if held is None:
            return None
        results = [StartResult() for _ in requests]
        with mapped_errors(self._display), held.connection() as driver:
            try:
                driver.execute("BEGIN IMMEDIATE")
                try:
                    created = self._raw_writes(driver, held.engine.dialect, requests, results)
                    driver.execute("COMMIT" if created is not None else "ROLLBACK")
                except BaseException:
                    if driver.in_transaction:
                        driver.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, _Careful) as error:
                refused = rawstart.refusal(error)
                if refused is None:
                    return None
                raise refused from None  # the careful path would meet it too: split at once
        if created is None:
            return None
        return self.answered(created, results)

    def answered(self, created: list[_Planned], results: list[StartResult]) -> list[StartResult]:
        """Each created start's answer in `results`; wakes this process's workers for due work.

        Work leased to a worker of this process is handed to it: no wake-up.
        """
        for plan in created:
            results[plan.index] = StartResult(plan.record, True, machine=plan.machine)
        if any(plan.lease_owner is None for plan in created):
            self._waker.wake_local()
        return results

    def _raw_writes(
        self,
        driver: sqlite3.Connection,
        dialect: Dialect,
        requests: Sequence[StartRequest],
        results: list[StartResult],
    ) -> list[_Planned] | None:
        """`_raw_batch`'s transaction body: the starts written, or None (nothing written)."""
        resolver = _RawResolver(driver, dialect)
        planned: list[_Planned] = []
        for index, request in enumerate(requests):
            try:
                planned.append(_plan(index, request, resolver))
            except StepwiseError as error:
                results[index].error = error
        if rawstart.any_taken_on(driver, [plan.record for plan in planned]):
            return None  # the careful path reads the executions holding them
        created = _sort_out(planned, {}, results)
        for table, table_rows in self._rows(created):
            rawstart.insert_rows_on(driver, dialect, table, table_rows)
        return created

    def _taken(
        self, conn: Connection, wanted: Sequence[ExecutionRecord]
    ) -> dict[Any, ExecutionRecord]:
        """The executions holding the names or ids of `wanted`, keyed by (machine, name) and id."""
        if not wanted:
            return {}
        by_machine: dict[str, set[str]] = {}
        for w in wanted:
            by_machine.setdefault(w.machine, set()).add(w.name)
        # Each arm an indexed lookup: (machine, name) is unique, execution_id the key.
        names = [
            sa.and_(executions.c.machine == machine, executions.c.name.in_(sorted(names)))
            for machine, names in by_machine.items()
        ]
        ids = sorted({w.execution_id for w in wanted})
        rows = conn.execute(
            sa.select(executions).where(sa.or_(*names, executions.c.execution_id.in_(ids)))
        )
        taken: dict[Any, ExecutionRecord] = {}
        for row in rows:
            record = execution_record(row, self._codec)
            taken[record.machine, record.name] = record
            taken[record.execution_id] = record
        return taken

    def _raw_start_writes(self) -> bool:
        """Whether this batch's check and inserts go through the raw driver (`rawstart.py`)."""
        return self.raw_start_writes and self.dialect == "sqlite"

    def _rows(self, planned: Sequence[_Planned]) -> list[tuple[sa.Table, list[dict[str, Any]]]]:
        """The executions rows, their ExecutionStarted events and work rows, payloads sealed."""
        codec = self._codec
        rows = []
        for plan in planned:
            row = msgspec.structs.asdict(plan.record)
            row["input"] = codec.seal(plan.record.input)
            rows.append(row)
        events = [event_row(p.record.execution_id, p.first_event, codec) for p in planned]
        # Leased from its first committed instant when handed to a worker of
        # this process: no other worker can claim it.
        work = [
            dict(
                zip(
                    _WORK_COLUMNS,
                    (
                        p.record.execution_id,
                        p.record.queue,
                        p.record.start_date,
                        p.lease_owner,
                        p.lease_expires_at,
                        0,
                        0,
                    ),
                    strict=True,
                )
            )
            for p in planned
        ]
        return [(executions, rows), (history_events, events), (work_queue, work)]

    def _insert(self, conn: Connection, planned: Sequence[_Planned], *, raw: bool) -> None:
        for table, table_rows in self._rows(planned):
            if raw:
                rawstart.insert_rows(conn, table, table_rows)
            else:
                conn.execute(sa.insert(table), table_rows)

    def _insert_pipelined(self, planned: Sequence[_Planned], *, notify: bool) -> None:
        """PostgreSQL: the batch's writes in one round trip (`pgstart.py`); _Collided if taken."""
        from engine.store.pgstart import pipelined_starts  # loads psycopg: PostgreSQL only

        (_, rows), (_, events), (_, work) = self._rows(planned)
        with mapped_errors(self._display):
            written = pipelined_starts(self._engine, rows, events, work, notify=notify)
        if not written:
            raise _Collided

    def _collided(self, request: StartRequest) -> StartResult:
        """The answer for a start whose insert collided with a row another process wrote."""
        try:
            with self._read() as conn:
                plan = _plan(0, request, _Resolver(conn, starting=True))
                existing = _owner(self._taken(conn, [plan.record]), plan.record)
        except StepwiseError as error:
            return StartResult(error=error)
        if existing is None:  # pragma: no cover - the colliding row vanished; only deletion could
            raise StoreUnavailable("execution insert collided with a row that no longer exists")
        return _answer(existing, plan.record)


def _plan(
    index: int, request: StartRequest, resolver: _Resolver | _RawResolver | _PgResolver
) -> _Planned:
    """Resolve `request`'s machine and have its caller build the first event (may raise)."""
    resolved = resolver.resolve(request.machine, request.qualifier, request.draw)
    execution_id, first = request.prepare(resolved)
    machine = resolved.machine
    record = ExecutionRecord(
        execution_id=execution_id,
        name=request.name,
        machine=machine.name,
        version=machine.version,
        status=ExecutionStatus.RUNNING,
        input=request.input,
        output=None,
        error=None,
        cause=None,
        start_date=request.start_date,
        stop_date=None,
        trace_id=request.trace_id,
        stop_requested=False,
        stop_requested_error=None,
        stop_requested_cause=None,
        last_event_id=first.event_id,
        queue=request.queue,
        published_version=resolved.version,
        alias=resolved.alias,
    )
    return _Planned(
        index,
        record,
        first,
        machine,
        lease_owner=request.lease_owner,
        lease_expires_at=request.lease_expires_at,
    )


def _sort_out(
    planned: Sequence[_Planned], taken: dict[Any, ExecutionRecord], results: list[StartResult]
) -> list[_Planned]:
    """The starts of `planned` to create; the others' answers (a name taken) go in `results`."""
    created: list[_Planned] = []
    for plan in planned:
        wanted = plan.record
        existing = _owner(taken, wanted)
        if existing is None:
            created.append(plan)
            # A later start of this batch under the same name meets this one.
            taken[wanted.machine, wanted.name] = wanted
            taken[wanted.execution_id] = wanted
        else:
            results[plan.index] = _answer(existing, wanted)
    return created


def _owner(taken: dict[Any, ExecutionRecord], wanted: ExecutionRecord) -> ExecutionRecord | None:
    """The execution holding `wanted`'s name (of its machine) or its id, if any."""
    return taken.get((wanted.machine, wanted.name)) or taken.get(wanted.execution_id)


def _answer(existing: ExecutionRecord, wanted: ExecutionRecord) -> StartResult:
    """A taken name: the running execution itself when the input is equal, else the error."""
    if (
        existing.machine == wanted.machine
        and existing.name == wanted.name
        and existing.status == ExecutionStatus.RUNNING
        and same_json(existing.input, wanted.input)
    ):
        return StartResult(existing, False)
    return StartResult(
        error=ExecutionAlreadyExists(f"Execution Already Exists: '{existing.execution_id}'")
    )
