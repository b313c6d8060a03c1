"""The executions' lifecycle on both stores: paging newest first, idempotent starts, one run each.

`Lifecycle` is used here without an Engine, the way the HTTP API, the
scheduler and Distributed Map's child executions will use it: a store, a
clock and a way to call the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import pytest

from activities import Registry
from engine import Engine
from engine.errors import ExecutionAlreadyExists, InvalidExecutionInput, InvalidToken
from engine.lifecycle import InvalidNextToken, Lifecycle
from engine.store import Event, ExecutionRecord, Store

T = TypeVar("T")

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


class SteppedClock:
    """A clock that moves one second every `every` readings, so some starts share a time."""

    def __init__(self, every: int = 1) -> None:
        self.readings = 0
        self.every = every
        self.epoch = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self.readings += 1
        return self.epoch + timedelta(seconds=self.readings // self.every)

    async def sleep_until(self, when: datetime) -> None:  # pragma: no cover - unused here
        raise AssertionError("the lifecycle never sleeps")


async def call_store(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return fn(*args, **kwargs)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = Store(db_url)
    store.put_state_machine("Machine", json.dumps(PASS), "STANDARD")
    store.put_state_machine("Other", json.dumps(PASS), "STANDARD")
    yield store
    store.close()


def lifecycle(store: Store, *, every: int = 1, started: list[str] | None = None) -> Lifecycle:
    def on_started(record: ExecutionRecord, events: Sequence[Event]) -> None:
        assert [e.type for e in events] == ["ExecutionStarted"]
        if started is not None:
            started.append(record.name)

    return Lifecycle(
        store=store, clock=SteppedClock(every), run_db=call_store, on_started=on_started
    )


def test_25_executions_paged_by_7_come_once_each_newest_first(store: Store) -> None:
    # Three starts share each second, so the execution id must break the ties.
    life = lifecycle(store, every=3)

    async def scenario() -> None:
        started = [await life.start("Machine", {"n": n}, name=f"e{n:02}") for n in range(25)]
        await life.start("Other", {}, name="other")  # another machine's: filtered out
        pages: list[list[ExecutionRecord]] = []
        token: str | None = None
        while True:
            page, token = await life.list_executions(
                machine="Machine", max_results=7, next_token=token
            )
            pages.append(page)
            if token is None:
                break
        assert [len(p) for p in pages] == [7, 7, 7, 4]
        listed = [r.execution_id for p in pages for r in p]
        newest_first = sorted(started, key=lambda r: (r.start_date, r.execution_id), reverse=True)
        assert listed == [r.execution_id for r in newest_first]
        assert listed[0].endswith(":e24") and listed[-1].endswith(":e00")
        # A page that ends exactly at the last execution hands out no token.
        everything, token = await life.list_executions(max_results=26)
        assert len(everything) == 26 and token is None

    anyio.run(scenario)


def test_a_bad_next_token_is_a_clear_invalid_token_error(store: Store) -> None:
    life = lifecycle(store)

    async def scenario() -> None:
        for n in range(3):
            await life.start("Machine", {}, name=f"e{n}")
        _, token = await life.list_executions(machine="Machine", max_results=1)
        assert token is not None
        for bad in ("not a token", "eyJ4IjoxfQ", token[:-3]):
            with pytest.raises(InvalidToken, match="Invalid Token"):
                await life.list_executions(machine="Machine", max_results=1, next_token=bad)
        # A token pages only the listing that handed it out.
        with pytest.raises(InvalidNextToken, match="other filters"):
            await life.list_executions(machine="Other", max_results=1, next_token=token)
        for wrong in (0, 1001):
            with pytest.raises(ValueError, match="1 to 1000"):
                await life.list_executions(max_results=wrong)

    anyio.run(scenario)


def test_start_is_idempotent_by_name_and_checks_its_input(store: Store) -> None:
    started: list[str] = []
    life = lifecycle(store, started=started)

    async def scenario() -> None:
        first = await life.start("Machine", {"a": 1}, name="once")
        again = await life.start("Machine", {"a": 1}, name="once")
        assert again.execution_id == first.execution_id
        assert again.start_date == first.start_date
        with pytest.raises(ExecutionAlreadyExists):
            await life.start("Machine", {"a": 2}, name="once")
        history = await life.history(first.execution_id)
        assert [e.type for e in history] == ["ExecutionStarted"]
        assert history[0].details["stateMachineVersionArn"].endswith(":stateMachine:Machine:1")
        with pytest.raises(InvalidExecutionInput, match="over the 262144-byte limit"):
            await life.start("Machine", {"big": "x" * 262_144}, name="big")
        with pytest.raises(InvalidExecutionInput):
            await life.start("Machine", {"not json": object()}, name="odd")

    anyio.run(scenario)
    assert started == ["once"]  # the telemetry hook hears of each start once


def test_engine_lists_pages_through_the_lifecycle(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:
        engine.create_state_machine_sync("m", PASS)
        names = [engine.start_sync("m", {}, name=f"x{n}").name for n in range(5)]
        first, token = engine.list_executions_page_sync(machine="m", max_results=3)
        rest, end = engine.list_executions_page_sync(machine="m", max_results=3, next_token=token)
        assert end is None
        assert sorted(r.name for r in first + rest) == sorted(names)
        assert [r.name for r in engine.list_executions_sync(machine="m")] == [
            r.name for r in first + rest
        ]


def test_run_beside_the_in_process_worker_runs_each_execution_once(db_url: str) -> None:
    """Engine.run and the in-process worker race for the same executions; each step runs once."""
    calls: list[tuple[int, str]] = []

    def step(value: dict[str, Any]) -> None:
        calls.append((value["n"], value["step"]))

    registry = Registry()
    registry.register("step", step)
    definition = {
        "StartAt": "A",
        "States": {
            name: {
                "Type": "Task",
                "Resource": "step",
                "Parameters": {"n.$": "$.n", "step": name},
                "ResultPath": None,
                **({"Next": following} if following else {"End": True}),
            }
            for name, following in (("A", "B"), ("B", "C"), ("C", None))
        },
    }
    records: list[ExecutionRecord] = []

    async def scenario() -> None:
        async with Engine(db_url, registry=registry, concurrency=4, poll_seconds=0.05) as engine:

            async def run(n: int) -> None:
                records.append(await engine.run(definition, {"n": n}, name=f"r{n}"))

            async with anyio.create_task_group() as group:
                for n in range(12):
                    group.start_soon(run, n)
            for record in records:
                history = await engine.history(record)
                assert [e.type for e in history].count("TaskScheduled") == 3

    anyio.run(scenario)
    assert [r.status for r in records] == ["SUCCEEDED"] * 12
    assert sorted(calls) == sorted((n, s) for n in range(12) for s in "ABC")
