"""PostgreSQL's start batch sent from the event loop, on a connection of the starts' own.

On asyncio a start's store call leaves the loop for a store thread (the
hop `asynccommit.py` removed from the step commits). `start_on_loop` sends
the start path's statements for a batch of starts of machines' latest
revisions (no qualifier) on a `LoopCommit` of their own instead (not the
step commits' one: a commit arriving during a start would go to the
threads): the machine
lookup `_PgResolver` reads (one statement per machine, in autocommit),
the name check `pgstart.any_taken` makes (only for starts given a name: a
fresh UUID is nobody's), and `pgstart`'s one statement writing the
executions rows, their ``ExecutionStarted`` events, the work rows and the
NOTIFY — the very statements and rows of `StartStore._fresh_batch` and
`StartStore._start_batch`, built by the same code. What this path does not
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
from engine.store.starts import StartRequest, StartResult, wakes
from engine.store.store import Store

__all__ = ["start_on_loop", "warm_starts"]


async def start_on_loop(
    on_loop: LoopCommit, store: Store, requests: Sequence[StartRequest]
) -> list[StartResult] | Handed:
    """`Store.start_executions(requests)` on the loop's connection, or THREADS (nothing written).

    Raises StoreUnavailable when the connection fails under the call.
    """
    if not store.raw_start_writes or any(r.qualifier is not None for r in requests):
        return Handed.THREADS
    try:
        return await on_loop.run(functools.partial(_start, store, requests))
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
    store: Store, requests: Sequence[StartRequest], connection: psycopg.AsyncConnection[Any]
) -> list[StartResult] | Handed:
    sql, fixed = store.head_query()
    heads: dict[str, Any] = {}
    try:
        for name in dict.fromkeys(request.machine for request in requests):
            cursor = await connection.execute(sql, {**fixed, "name": name})
            heads[name] = await cursor.fetchone()
    except (psycopg.OperationalError, psycopg.InterfaceError) as failure:
        raise _ReadFailed from failure
    planned = store.plan_read(requests, heads.__getitem__)
    if planned is None:
        return Handed.THREADS
    results, created = planned
    if not created:
        return results
    named = [plan.record for plan in created if not requests[plan.index].fresh_name]
    if named:
        taken, params = taken_query(named)
        try:
            cursor = await connection.execute(taken, params)
            if await cursor.fetchone() is not None:
                return Handed.THREADS
        except (psycopg.OperationalError, psycopg.InterfaceError) as failure:
            raise _ReadFailed from failure
    statement, params = store.start_statement(created, notify=wakes(created))
    try:
        await connection.execute(statement, params)
    except psycopg.errors.IntegrityError:
        return Handed.THREADS
    return store.answered(created, results)


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
