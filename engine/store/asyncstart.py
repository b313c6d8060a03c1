"""PostgreSQL's start batch sent from the event loop, on a connection of the starts' own.

On asyncio a start's store call leaves the loop for a store thread (the
hop `asynccommit.py` removed from the step commits). `start_on_loop` sends
the start path's statements for a batch of starts of machines' latest
revisions (no qualifier) on a `LoopCommit` of their own instead (not the
step commits' one: a commit arriving during a start would go to the
threads): the machine
lookup `startplan.PgResolver` reads (one statement per machine, in autocommit;
only for a machine `LoopHeads` has no row of: neither one started before
nor one this Engine just created or revised, `LoopHeads.seed`), the name check
`pgstart.any_taken` makes (only for starts given a name: a fresh UUID is
nobody's), and `pgstart`'s one statement writing the executions rows,
their ``ExecutionStarted`` events, the work rows and the NOTIFY — the very
statements and rows of `StartStore._fresh_batch` and
`StartStore._start_batch`, built by the same code — guarded: it writes
only while each machine is, in the write's own snapshot, still at the
revision the batch was planned with and not deleted
(`pgstart.guarded_statement`). So a start of a machine started before is
one round trip; a machine moved since (a new revision or a deletion, in
any process) writes nothing, is read again and the batch planned again. What this path does not
decide alone, it hands back to the store's threads with nothing written
(`Handed.THREADS`, then `Store.start_executions` as before): a qualifier, a
machine being deleted, a name already taken (the existing execution
decides there: the same running execution back, or ExecutionAlreadyExists),
a unique key's collision, a refusal of some start's data (`UnstorableData`:
the threads answer that start alone with it and record the others), a
connection in use by a commit or not to be had, and a connection that fails
before the write is sent (a server restart, `pg_terminate_backend`: dropped,
the next batch connects again).
A connection failing under the write raises StoreUnavailable, as the thread
path does (the start's outcome unknown).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import psycopg

from engine.store.asynccommit import Handed, LoopCommit
from engine.store.errors import StoreUnavailable, UnstorableData
from engine.store.pgstart import taken_query
from engine.store.records import MachineVersion
from engine.store.starts import StartRequest, StartResult, wakes
from engine.store.store import Store

__all__ = ["LoopHeads", "start_on_loop", "warm_starts"]


class LoopHeads:
    """The machine rows (`Store.head_query`'s) the start connection last read, by machine name.

    A start of a machine found here is planned with that row and sent as
    one statement, the guarded write (`Store.start_statement`), which
    writes nothing when the machine has moved since — a new revision or a
    deletion, by any process: the row is then dropped, read again and the
    batch planned again. Kept for machines a start was written for (not
    deleted, with a revision) and for machines this Engine has just put
    (`seed`); at most `limit` machines.
    """

    def __init__(self, limit: int = 256) -> None:
        self.rows: dict[str, Any] = {}
        self.limit = limit
        # Lookups sent, and guarded writes that found a head moved (observables).
        self.lookups = 0
        self.moved = 0

    def keep(self, name: str, row: Any) -> None:
        rows = self.rows
        if name not in rows and len(rows) >= self.limit:
            del rows[next(iter(rows))]  # the oldest
        rows[name] = row

    def seed(self, machine: MachineVersion) -> None:
        """Keep `machine`, which this Engine has just created or revised, as its name's head.

        The next start of it is then planned without a lookup — and checked
        by the guarded write like any kept row: a revision or a deletion
        since, by any process, writes nothing and has the machine read
        again. On the loop's thread (as every start). The row is the lookup's
        (`Store.head_query`: the machine not deleted, `machine` its latest
        revision) but for the machine's id, which a start never uses.
        """
        self.keep(
            machine.name,
            (
                None,  # state_machines.id
                None,  # deleted_at: a put undeletes
                machine.version,
                machine.definition,
                machine.content_hash,
                machine.machine_type,
                machine.created_at,
            ),
        )

    def forget(self, name: str) -> None:
        """Drop machine `name`'s row (deleted by this Engine: the next start reads it)."""
        self.rows.pop(name, None)


async def start_on_loop(
    on_loop: LoopCommit, store: Store, requests: Sequence[StartRequest], heads: LoopHeads
) -> list[StartResult] | Handed:
    """`Store.start_executions(requests)` on the loop's connection, or THREADS (nothing written).

    Raises StoreUnavailable when the connection fails under the call.
    """
    if not store.raw_start_writes or any(r.qualifier is not None for r in requests):
        return Handed.THREADS
    try:
        return await on_loop.run(functools.partial(_start, store, requests, heads))
    except _ReadFailed:
        # Nothing written (the connection is dropped): the threads start them.
        return Handed.THREADS
    except UnstorableData:
        # One statement refused for some start's data, nothing written: the
        # threads find which start it was (`Store.start_executions`).
        return Handed.THREADS


class _ReadFailed(Exception):
    """The connection failed before the write was sent: nothing of the batch is written."""


async def _start(
    store: Store,
    requests: Sequence[StartRequest],
    heads: LoopHeads,
    connection: psycopg.AsyncConnection[Any],
) -> list[StartResult] | Handed:
    names = list(dict.fromkeys(request.machine for request in requests))
    rows = {name: heads.rows[name] for name in names if name in heads.rows}
    while True:
        cached = bool(rows)
        await _look_up(store, heads, connection, [name for name in names if name not in rows], rows)
        planned = store.plan_read(requests, rows.__getitem__)
        if planned is None:
            return Handed.THREADS
        results, created = planned
        if not created:
            return results
        named = [plan.record for plan in created if not requests[plan.index].fresh_name]
        if named and await _any_taken(connection, named):
            return Handed.THREADS
        statement, params = store.start_statement(created, notify=wakes(created))
        try:
            cursor = await connection.execute(statement, params)
        except psycopg.errors.IntegrityError:
            return Handed.THREADS
        if await cursor.fetchone() is not None:
            for plan in created:
                heads.keep(plan.machine.name, rows[plan.machine.name])
            return store.answered(created, results)
        # A machine moved since its row was read (nothing written): read them all again.
        heads.moved += 1
        for name in names:
            heads.rows.pop(name, None)
        if not cached:
            return Handed.THREADS  # moved between this batch's own read and write
        rows = {}


async def _look_up(
    store: Store,
    heads: LoopHeads,
    connection: psycopg.AsyncConnection[Any],
    names: Sequence[str],
    rows: dict[str, Any],
) -> None:
    """Read the rows of machines `names` into `rows` (one statement each)."""
    if not names:
        return
    sql, fixed = store.head_query()
    try:
        for name in names:
            cursor = await connection.execute(sql, {**fixed, "name": name})
            rows[name] = await cursor.fetchone()
            heads.lookups += 1
    except (psycopg.OperationalError, psycopg.InterfaceError) as failure:
        raise _ReadFailed from failure


async def _any_taken(connection: psycopg.AsyncConnection[Any], named: list[Any]) -> bool:
    """Whether an execution holds a name or id of `named` (the threads then decide)."""
    taken, params = taken_query(named)
    try:
        cursor = await connection.execute(taken, params)
        return await cursor.fetchone() is not None
    except (psycopg.OperationalError, psycopg.InterfaceError) as failure:
        raise _ReadFailed from failure


async def warm_starts(on_loop: LoopCommit, store: Store) -> None:
    """Open `on_loop`'s connection, run the machine lookup once (no machine has no name)
    and the start's write once for no rows (writing nothing).

    An Engine's start calls it, so neither the server's fork nor the
    lookup's and the write's first planning lands in the first start. Failures are left for
    the first start to meet.
    """
    sql, fixed = store.head_query()

    write, params = store.warm_statement()

    async def lookup(connection: psycopg.AsyncConnection[Any]) -> None:
        await connection.execute(sql, {**fixed, "name": ""})
        # The start's write for no rows (nothing written): planned before the first start.
        await connection.execute(write, params)

    try:
        await on_loop.run(lookup)
    except (StoreUnavailable, psycopg.Error):
        pass
