"""The benchmark workloads themselves: their state machines, handlers and timed bodies.

Each workload runs once against one fresh, empty database and returns a
`Measurement` (executions, steps, wall seconds). Wall time covers only the
work being measured — starting executions and waiting for them to end —
never opening the store, migrating the schema or registering the machine.
Every workload checks each execution's status and output before it
returns, so a figure is only ever printed for work that was done right:
a wrong answer raises `WorkloadFailed` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from activities.registry import Registry
from engine import Engine, ExecutionRecord
from engine.store.connect import create_engine, parse_url

__all__ = [
    "CONCURRENCY",
    "DEFAULT_EXECS",
    "INLINE_WORKLOADS",
    "MAP_ITEMS",
    "STEPS_PER_EXEC",
    "WORKLOADS",
    "Measurement",
    "WorkloadFailed",
    "increment",
    "map_machine",
    "pass_choice_chain",
    "run_workload",
    "task_chain",
]

# The in-process worker's concurrency for the workloads that start many
# executions at once (W1c, W3) and for the Map's iterations (W2).
CONCURRENCY = 64
MAP_ITEMS = 100
TASK_CHAIN_LENGTH = 10
PASS_CHOICE_LENGTH = 20
RESOURCE = "bench-increment"

WORKLOADS = ("W1", "W1i", "W1c", "W2", "W3", "ceiling")
# W1i is W1 with `increment` registered inline=True: it runs on the event
# loop, as a DBOS step runs in its workflow's own thread (issue 19).
INLINE_WORKLOADS = frozenset({"W1i"})
DEFAULT_EXECS = {"W1": 200, "W1i": 200, "W1c": 200, "W2": 1, "W3": 1000, "ceiling": 2000}
STEPS_PER_EXEC = {
    "W1": TASK_CHAIN_LENGTH,
    "W1i": TASK_CHAIN_LENGTH,
    "W1c": TASK_CHAIN_LENGTH,
    "W2": MAP_ITEMS,
    "W3": PASS_CHOICE_LENGTH,
    "ceiling": 1,
}


class WorkloadFailed(Exception):
    """An execution of a workload did not end as the workload expects."""


@dataclass(frozen=True)
class Measurement:
    """One timed run: how many executions and steps completed in `wall_s` seconds."""

    execs: int
    steps: int
    wall_s: float


def increment(value: dict[str, Any]) -> dict[str, Any]:
    """The Task handler every workload uses: ``{"v": n}`` → ``{"v": n + 1}``."""
    return {"v": value["v"] + 1}


def task_chain(length: int = TASK_CHAIN_LENGTH) -> dict[str, Any]:
    """`length` sequential Task states, each calling `increment`."""
    names = [f"Step{i}" for i in range(1, length + 1)]
    states: dict[str, Any] = {}
    for index, name in enumerate(names):
        state: dict[str, Any] = {"Type": "Task", "Resource": RESOURCE}
        if index + 1 < len(names):
            state["Next"] = names[index + 1]
        else:
            state["End"] = True
        states[name] = state
    return {"StartAt": names[0], "States": states}


def map_machine(max_concurrency: int = 0) -> dict[str, Any]:
    """One inline Map over ``$.items`` whose iteration is a single `increment` Task."""
    return {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": max_concurrency,
                "ItemSelector": {"v.$": "$$.Map.Item.Value"},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Add",
                    "States": {"Add": {"Type": "Task", "Resource": RESOURCE, "End": True}},
                },
                "End": True,
            }
        },
    }


def pass_choice_chain(length: int = PASS_CHOICE_LENGTH) -> dict[str, Any]:
    """`length` states alternating Choice and Pass; each Pass adds 1 to ``$.v``.

    Starts with a Choice and ends with a Pass (End), so with an even
    `length` an input ``{"v": 0}`` ends as ``{"v": length / 2}``.
    """
    names = [f"S{i}" for i in range(1, length + 1)]
    states: dict[str, Any] = {}
    for index, name in enumerate(names):
        following = names[index + 1] if index + 1 < len(names) else None
        if index % 2 == 0 and following is not None:
            states[name] = {
                "Type": "Choice",
                "Choices": [{"Variable": "$.v", "NumericGreaterThanEquals": 0, "Next": following}],
                "Default": "Negative",
            }
        else:
            state: dict[str, Any] = {
                "Type": "Pass",
                "Parameters": {"v.$": "States.MathAdd($.v, 1)"},
            }
            if following is None:
                state["End"] = True
            else:
                state["Next"] = following
            states[name] = state
    states["Negative"] = {"Type": "Fail", "Error": "Negative", "Cause": "v went below 0"}
    return {"StartAt": names[0], "States": states}


def _registry(*, inline: bool) -> Registry:
    registry = Registry()
    registry.register(RESOURCE, increment, inline=inline)
    return registry


def _check(record: ExecutionRecord, expected: Any) -> None:
    if record.status != "SUCCEEDED":
        raise WorkloadFailed(
            f"{record.execution_id} ended {record.status}: {record.error}: {record.cause}"
        )
    output = msgspec.json.decode(record.output or "null")
    if output != expected:
        raise WorkloadFailed(f"{record.execution_id} returned {output!r}, expected {expected!r}")


async def _w1(engine: Engine, execs: int) -> Measurement:
    await engine.create_state_machine("w1", task_chain())
    started = time.perf_counter()
    for _ in range(execs):
        record = await engine.start("w1", {"v": 0})
        _check(await engine.wait(record), {"v": TASK_CHAIN_LENGTH})
    wall = time.perf_counter() - started
    return Measurement(execs, execs * TASK_CHAIN_LENGTH, wall)


async def _all_at_once(
    engine: Engine, machine: str, definition: dict[str, Any], execs: int, expected: Any
) -> float:
    """Start `execs` executions back to back, then wait for all; the wall time of both."""
    await engine.create_state_machine(machine, definition)
    started = time.perf_counter()
    records = [await engine.start(machine, {"v": 0}) for _ in range(execs)]
    for record in records:
        _check(await engine.wait(record), expected)
    return time.perf_counter() - started


async def _w1c(engine: Engine, execs: int) -> Measurement:
    """`execs` executions started at once — concurrent callers, as the figure claims — then awaited.

    The starts are made by `execs` concurrent tasks (as many clients would),
    so they share the lifecycle's start transactions; W3 keeps starting one
    after another (`_all_at_once`).
    """
    await engine.create_state_machine("w1c", task_chain())
    records: list[ExecutionRecord] = []

    async def start() -> None:
        records.append(await engine.start("w1c", {"v": 0}))

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(execs):
            group.start_soon(start)
    for record in records:
        _check(await engine.wait(record), {"v": TASK_CHAIN_LENGTH})
    wall = time.perf_counter() - started
    return Measurement(execs, execs * TASK_CHAIN_LENGTH, wall)


async def _w2(engine: Engine, _execs: int) -> Measurement:
    await engine.create_state_machine("w2", map_machine())
    items = list(range(MAP_ITEMS))
    started = time.perf_counter()
    record = await engine.start("w2", {"items": items})
    _check(await engine.wait(record), [{"v": item + 1} for item in items])
    wall = time.perf_counter() - started
    return Measurement(1, MAP_ITEMS, wall)


async def _w3(engine: Engine, execs: int) -> Measurement:
    expected = {"v": PASS_CHOICE_LENGTH // 2}
    wall = await _all_at_once(engine, "w3", pass_choice_chain(), execs, expected)
    return Measurement(execs, execs * PASS_CHOICE_LENGTH, wall)


_ENGINE_WORKLOADS: dict[str, Callable[[Engine, int], Coroutine[Any, Any, Measurement]]] = {
    "W1": _w1,
    "W1i": _w1,  # the same body; only the handler's registration differs
    "W1c": _w1c,
    "W2": _w2,
    "W3": _w3,
}


def ceiling(database_url: str, rows: int) -> Measurement:
    """The database's own pace: `rows` single-row INSERT+COMMITs into a scratch table.

    Uses the connection set-up the store uses (same driver; on SQLite the
    same WAL, synchronous and BEGIN IMMEDIATE settings) on the raw DBAPI
    connection, so the figure is what the database and driver allow, with
    no SQLAlchemy statement building in the loop.
    """
    parsed, dialect = parse_url(database_url)
    sa_engine = create_engine(parsed, dialect)
    try:
        with sa_engine.connect() as connection:
            dbapi = connection.connection.dbapi_connection
            if dbapi is None:
                raise WorkloadFailed("no DBAPI connection")
            cursor = dbapi.cursor()
            if dialect == "sqlite":
                begin, insert = "BEGIN IMMEDIATE", "INSERT INTO bench_ceiling (v) VALUES (?)"
                cursor.execute("CREATE TABLE bench_ceiling (id INTEGER PRIMARY KEY, v INTEGER)")
            else:
                begin, insert = "", "INSERT INTO bench_ceiling (v) VALUES (%s)"
                cursor.execute("CREATE TABLE bench_ceiling (id BIGSERIAL PRIMARY KEY, v BIGINT)")
                dbapi.commit()
            started = time.perf_counter()
            for value in range(rows):
                if begin:
                    cursor.execute(begin)
                cursor.execute(insert, (value,))
                if dialect == "sqlite":
                    cursor.execute("COMMIT")
                else:
                    dbapi.commit()
            wall = time.perf_counter() - started
            cursor.execute("SELECT count(*) FROM bench_ceiling")
            row = cursor.fetchone()
            count = row[0] if row else 0
            if dialect != "sqlite":
                dbapi.commit()
            if count != rows:
                raise WorkloadFailed(f"ceiling wrote {count} rows, expected {rows}")
    finally:
        sa_engine.dispose()
    return Measurement(rows, rows, wall)


def run_workload(workload: str, database_url: str, execs: int) -> Measurement:
    """Run `workload` once on the empty database at `database_url` and time it.

    Raises WorkloadFailed when an execution fails or returns the wrong output,
    KeyError for an unknown workload.
    """
    if workload == "ceiling":
        return ceiling(database_url, execs)
    body = _ENGINE_WORKLOADS[workload]
    registry = _registry(inline=workload in INLINE_WORKLOADS)

    async def main() -> Measurement:
        async with Engine(database_url, registry=registry, concurrency=CONCURRENCY) as engine:
            return await body(engine, execs)

    return anyio.run(main)
