"""What a start is and how it resolves, before any row is written: the planning half of starts.

A `StartRequest` (the machine reference, the execution's name and input,
the caller's builder of ``ExecutionStarted``) resolves to a machine
version — the latest revision, a published version, or an alias's weighted
pick (`pick_route`) — on whichever connection a batch runs: SQLAlchemy's
(`Resolver`, every case), the sqlite3 driver's (`RawResolver`) or
psycopg's (`PgResolver`), those two for the common NAME start only; a case
they do not decide raises `Careful`. `plan_start` turns a resolved request
into the execution's record (`Planned`), and `sort_out` answers the names
already taken (the running execution itself for an equal input, else
ExecutionAlreadyExists). `engine/store/starts.py` runs the transactions and
writes the rows; nothing here writes.
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
from sqlalchemy.engine import Connection, Dialect

from engine.store import rawstart
from engine.store.errors import (
    ExecutionAlreadyExists,
    ResourceNotFound,
    StateMachineDeleting,
    StateMachineDoesNotExist,
)
from engine.store.records import Event, ExecutionRecord, ExecutionStatus, MachineVersion
from engine.store.rows import MACHINE_COLUMNS, same_json
from engine.store.schema import (
    executions,
    machine_aliases,
    published_versions,
    state_machine_versions,
    state_machines,
)
from statemachine.errors import StepwiseError

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "HEAD_BY_NAME",
    "Careful",
    "PgResolver",
    "Planned",
    "RawResolver",
    "Resolved",
    "Resolver",
    "StartRequest",
    "StartResult",
    "owner_of",
    "pg_head_shape",
    "pick_route",
    "plan_start",
    "sort_out",
    "taken_answer",
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
    # no execution holds it or its id; PostgreSQL's batch (`StartStore._fresh_batch`)
    # and SQLite's raw one then skip its name check. The unique keys still decide.
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
HEAD_BY_NAME = _HEAD.where(state_machines.c.name == sa.bindparam("name"))


class Resolver:
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
                head = rawstart.first_row(conn, HEAD_BY_NAME, name=name)
            else:
                head = conn.execute(HEAD_BY_NAME, {"name": name}).first()
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


class Careful(Exception):
    """The raw start met a case only the careful path handles: it rolls back and hands over."""


class RawResolver:
    """The common case of `Resolver` on the sqlite3 connection itself: a name's latest revision.

    Raises what `Resolver` raises for a machine that does not exist or has
    no revision; a qualifier (version or alias) or a machine being deleted
    raises `Careful`, so `Resolver` decides those.
    """

    def __init__(
        self, driver: sqlite3.Connection, dialect: Dialect, heads: dict[str, Any] | None = None
    ) -> None:
        self._driver = driver
        self.dialect = dialect
        # Rows read before on this connection and still current
        # (`HeldSqlite.machine_heads`), else this batch's own.
        self._heads: dict[str, Any] = {} if heads is None else heads
        self.reused = 0  # resolutions answered without a read (tests, benchmarks)

    def resolve(self, name: str, qualifier: str | None, draw: Callable[[], float]) -> Resolved:
        if qualifier is not None:
            raise Careful
        head = self._heads.get(name)
        if head is None:
            head = rawstart.first_row_on(self._driver, self.dialect, HEAD_BY_NAME, name=name)
            if head is None:
                raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
            if head.deleted_at is not None:
                raise Careful
            self._heads[name] = head
        else:
            self.reused += 1
        if head.version is None:
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
        return Resolved(_machine(name, head))


class PgResolver:
    """`RawResolver` on a psycopg connection: a name's latest revision, one statement.

    The same row `Resolver` reads (`HEAD_BY_NAME`, compiled once per
    dialect, each value through its column type's result processor), without
    SQLAlchemy's connection, statement and result machinery. Raises what
    `Resolver` raises for a machine that does not exist or has no revision;
    a qualifier or a machine being deleted raises `Careful`.
    """

    def __init__(self, read_head: Callable[[str], Any], dialect: Dialect) -> None:
        # A machine name → its `HEAD_BY_NAME` row (None: no such machine).
        self._read_head = read_head
        _, _, self._processors, self._make = pg_head_shape(dialect)
        self._heads: dict[str, Any] = {}

    def resolve(self, name: str, qualifier: str | None, draw: Callable[[], float]) -> Resolved:
        if qualifier is not None:
            raise Careful
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
                raise Careful
            self._heads[name] = head
        if head.version is None:
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")
        return Resolved(_machine(name, head))


def wakes(created: Sequence[Planned]) -> bool:
    """Whether writing `created` must wake the workers (NOTIFY).

    Work leased to a worker of this process needs no wake-up: it is handed
    to that worker; only due work makes workers look.
    """
    return any(plan.lease_owner is None for plan in created)


@functools.cache
def pg_head_shape(dialect: Dialect) -> tuple[str, dict[str, Any], tuple[Any, ...], Any]:
    """`HEAD_BY_NAME` for `dialect`: its SQL, fixed parameters, result processors, row type."""
    compiled = HEAD_BY_NAME.compile(dialect=dialect)
    columns = list(HEAD_BY_NAME.selected_columns)
    processors = tuple(column.type.result_processor(dialect, None) for column in columns)
    fixed = {key: value for key, value in compiled.params.items() if key != "name"}
    return str(compiled), fixed, processors, namedtuple("_Head", [str(c.key) for c in columns])


@dataclass
class Planned:
    """A start that resolved, before its rows are written."""

    index: int
    record: ExecutionRecord
    first_event: Event
    machine: MachineVersion
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


def plan_start(
    index: int, request: StartRequest, resolver: Resolver | RawResolver | PgResolver
) -> Planned:
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
    return Planned(
        index,
        record,
        first,
        machine,
        lease_owner=request.lease_owner,
        lease_expires_at=request.lease_expires_at,
    )


def sort_out(
    planned: Sequence[Planned], taken: dict[Any, ExecutionRecord], results: list[StartResult]
) -> list[Planned]:
    """The starts of `planned` to create; the others' answers (a name taken) go in `results`."""
    created: list[Planned] = []
    for plan in planned:
        wanted = plan.record
        existing = owner_of(taken, wanted)
        if existing is None:
            created.append(plan)
            # A later start of this batch under the same name meets this one.
            taken[wanted.machine, wanted.name] = wanted
            taken[wanted.execution_id] = wanted
        else:
            results[plan.index] = taken_answer(existing, wanted)
    return created


def owner_of(taken: dict[Any, ExecutionRecord], wanted: ExecutionRecord) -> ExecutionRecord | None:
    """The execution holding `wanted`'s name (of its machine) or its id, if any."""
    return taken.get((wanted.machine, wanted.name)) or taken.get(wanted.execution_id)


def taken_answer(existing: ExecutionRecord, wanted: ExecutionRecord) -> StartResult:
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
