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
(`StartStore._fresh_batch`), and SQLite's raw batch checks only the names
it was given: the unique keys alone decide a drawn name.
`resolve_reference` is the same resolution as a read on its own. What a
start is and how it resolves (requests, answers, the resolvers, the planned
record) is `engine/store/startplan.py`'s; this module runs the transactions
and writes the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from engine.store import rawstart
from engine.store.base import StoreBase
from engine.store.boundary import mapped_errors
from engine.store.checkpoints import event_row
from engine.store.errors import StoreUnavailable, UnstorableData
from engine.store.records import Event, ExecutionRecord
from engine.store.rows import execution_record
from engine.store.schema import executions, history_events, work_queue
from engine.store.startplan import (
    Careful,
    PgResolver,
    Planned,
    RawResolver,
    Resolved,
    Resolver,
    StartRequest,
    StartResult,
    owner_of,
    pg_head_shape,
    pick_route,
    plan_start,
    sort_out,
    taken_answer,
    wakes,
)
from statemachine.errors import StepwiseError

if TYPE_CHECKING:
    import sqlite3

    from engine.store.sqlitecommit import HeldSqlite

__all__ = [
    "Resolved",
    "StartRequest",
    "StartResult",
    "StartStore",
    "pick_route",
    "wakes",
]


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
            return Resolver(conn, starting=False).resolve(name, qualifier, draw)

    def prepare_starts(self) -> None:
        """Do the start path's one-time work now (an engine about to start executions calls it).

        On PostgreSQL: load the pipelined writer (`pgstart`, imported on
        first use so SQLite never loads psycopg) and compile the machine
        lookup of `PgResolver` (cached per dialect), ~1-2 ms of CPU a
        cold engine's first start paid. Nothing to do on SQLite. Touches no
        connection.
        """
        if self.raw_start_writes and self.dialect == "postgresql":
            import engine.store.pgstart  # noqa: F401  (loads psycopg: PostgreSQL only)

            pg_head_shape(self._engine.dialect)

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
            resolver = Resolver(conn, starting=True)
            planned: list[Planned] = []
            for index, request in enumerate(requests):
                try:
                    planned.append(plan_start(index, request, resolver))
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
            created = sort_out(planned, taken, results)
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

        The machines are read by the driver in autocommit (`PgResolver`), as
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
        sql, fixed, _, _ = pg_head_shape(self._engine.dialect)
        return sql, fixed

    def plan_read(
        self, requests: Sequence[StartRequest], read_head: Callable[[str], Any]
    ) -> tuple[list[StartResult], list[Planned]] | None:
        """Resolve `requests` by `read_head` (a name → its `pg_head_query` row); None: careful.

        PostgreSQL. Returns the answers so far (each start that does not
        resolve has its error) and the starts to create, a name repeated in
        the batch answered by its first start (`sort_out`); None when a
        qualifier or a machine being deleted needs the careful path. The
        names are not checked against the database here.
        """
        results = [StartResult() for _ in requests]
        planned: list[Planned] = []
        resolver = PgResolver(read_head, self._engine.dialect)
        for index, request in enumerate(requests):
            try:
                planned.append(plan_start(index, request, resolver))
            except Careful:
                return None
            except StepwiseError as error:
                results[index].error = error
        return results, sort_out(planned, {}, results)

    def start_statement(self, created: Sequence[Planned], *, notify: bool) -> tuple[str, list[str]]:
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

        BEGIN IMMEDIATE, the machines resolved (`RawResolver`; on the kept
        connection a machine's row read by an earlier start is reused while
        no other connection has committed, `HeldSqlite.machine_heads`), the names
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
                    created = self.start_within(driver, held, requests, results)
                    driver.execute("COMMIT" if created is not None else "ROLLBACK")
                except BaseException:
                    if driver.in_transaction:
                        driver.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, Careful) as error:
                refused = rawstart.refusal(error)
                if refused is None:
                    return None
                raise refused from None  # the careful path would meet it too: split at once
        if created is None:
            return None
        return self.answered(created, results)

    def start_within(
        self,
        driver: sqlite3.Connection,
        held: HeldSqlite,
        requests: Sequence[StartRequest],
        results: list[StartResult],
    ) -> list[Planned] | None:
        """SQLite: `_raw_batch`'s work inside the caller's write transaction on `held`'s driver.

        The starts created (their answers then by `answered`), or None
        (nothing written: the careful path answers). Raises sqlite3's errors
        and `Careful`; the caller rolls back what was written.
        """
        resolver = RawResolver(driver, held.engine.dialect, held.machine_heads(driver))
        created = self._raw_writes(driver, resolver, requests, results)
        held.head_reuses += resolver.reused
        return created

    def answered(self, created: list[Planned], results: list[StartResult]) -> list[StartResult]:
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
        resolver: RawResolver,
        requests: Sequence[StartRequest],
        results: list[StartResult],
    ) -> list[Planned] | None:
        """`_raw_batch`'s transaction body: the starts written, or None (nothing written)."""
        dialect = resolver.dialect
        planned: list[Planned] = []
        for index, request in enumerate(requests):
            try:
                planned.append(plan_start(index, request, resolver))
            except StepwiseError as error:
                results[index].error = error
        # A name the engine drew (a fresh UUID) is held by no execution, nor its
        # id: only the others are checked; the unique keys decide all the same
        # (a collision is raised as `rawstart.refusal` says, then answered alone).
        asked = [plan.record for plan in planned if not requests[plan.index].fresh_name]
        if rawstart.any_taken_on(driver, asked):
            return None  # the careful path reads the executions holding them
        created = sort_out(planned, {}, results)
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

    def _rows(self, planned: Sequence[Planned]) -> list[tuple[sa.Table, list[dict[str, Any]]]]:
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

    def _insert(self, conn: Connection, planned: Sequence[Planned], *, raw: bool) -> None:
        for table, table_rows in self._rows(planned):
            if raw:
                rawstart.insert_rows(conn, table, table_rows)
            else:
                conn.execute(sa.insert(table), table_rows)

    def _insert_pipelined(self, planned: Sequence[Planned], *, notify: bool) -> None:
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
                plan = plan_start(0, request, Resolver(conn, starting=True))
                existing = owner_of(self._taken(conn, [plan.record]), plan.record)
        except StepwiseError as error:
            return StartResult(error=error)
        if existing is None:  # pragma: no cover - the colliding row vanished; only deletion could
            raise StoreUnavailable("execution insert collided with a row that no longer exists")
        return taken_answer(existing, plan.record)
