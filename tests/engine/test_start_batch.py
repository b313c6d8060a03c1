"""Starts made at the same moment share one transaction, and each gets its own answer.

`Lifecycle.start` hands each start to its `StartBatcher`: while one batch
commits, the starts that arrive wait and go together in the next. One
start's error — a name taken with another input, a machine that does not
exist — must not fail the others of its batch; a start repeated with the
same name and input gets the running execution back, even from inside the
same batch. A start handed over while its caller is cancelled (an engine
closing) is carried through, and nothing is left waiting.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import pytest
import sqlalchemy as sa

from engine import Engine
from engine.clock import SystemClock
from engine.errors import (
    ExecutionAlreadyExists,
    InvalidExecutionInput,
    InvalidName,
    ResourceNotFound,
    StateMachineDoesNotExist,
)
from engine.lifecycle import Lifecycle
from engine.runner import execution_arn
from engine.store import ExecutionRecord, Store
from engine.store.schema import executions

T = TypeVar("T")

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = Store(db_url)
    store.put_state_machine("Machine", json.dumps(PASS), "STANDARD")
    yield store
    store.close()


def _lifecycle(store: Store) -> Lifecycle:
    return Lifecycle(store=store, clock=SystemClock(), run_db=in_thread)


async def _answers(life: Lifecycle, starts: list[tuple[str, Any, str]]) -> list[Any]:
    """Start all of `starts` (machine, input, name) at once; each one's record or error."""
    answers: list[Any] = [None] * len(starts)

    async def one(index: int, machine: str, input: Any, name: str) -> None:
        try:
            answers[index] = await life.start(machine, input, name=name)
        except Exception as error:  # each start's own answer is what is checked
            answers[index] = error

    async with anyio.create_task_group() as group:
        for index, (machine, input, name) in enumerate(starts):
            group.start_soon(one, index, machine, input, name)
    return answers


def test_a_taken_name_in_a_batch_fails_only_its_own_start(store: Store) -> None:
    life = _lifecycle(store)

    async def scenario() -> None:
        first = await life.start("Machine", {"n": 0}, name="taken")
        starts: list[tuple[str, Any, str]] = [("Machine", {"n": n}, f"e{n}") for n in range(1, 30)]
        starts.insert(7, ("Machine", {"n": "other"}, "taken"))  # another input: refused
        starts.insert(11, ("Machine", {"n": 0}, "taken"))  # the same input: the running one
        starts.insert(13, ("Nowhere", {}, "lost"))  # no such machine
        answers = await _answers(life, starts)
        assert isinstance(answers[7], ExecutionAlreadyExists)
        assert answers[11] == first
        assert isinstance(answers[13], StateMachineDoesNotExist)
        created = [a for i, a in enumerate(answers) if i not in (7, 11, 13)]
        assert all(isinstance(a, ExecutionRecord) for a in created)
        assert sorted(a.name for a in created) == sorted(f"e{n}" for n in range(1, 30))
        for record in created:
            assert await life.describe(record.execution_id) == record
            assert [e.type for e in await life.history(record)] == ["ExecutionStarted"]
        # They shared transactions: fewer commits than starts.
        assert life._starts.transactions < len(starts)

    anyio.run(scenario)


def test_one_name_twice_in_one_batch_is_one_execution(store: Store) -> None:
    life = _lifecycle(store)

    async def scenario() -> None:
        same, other = await _answers(
            life, [("Machine", {"a": 1}, "twin"), ("Machine", {"a": 1}, "twin")]
        )
        assert same == other  # the second is the idempotent restart of the first
        refused = await _answers(
            life, [("Machine", {"b": 1}, "pair"), ("Machine", {"b": 2}, "pair")]
        )
        assert isinstance(refused[0], ExecutionRecord)
        assert isinstance(refused[1], ExecutionAlreadyExists)
        records, _ = await life.list_executions(machine="Machine")
        assert sorted(r.name for r in records) == ["pair", "twin"]

    anyio.run(scenario)


def test_errors_keep_their_order_and_kind(store: Store) -> None:
    life = _lifecycle(store)

    async def scenario() -> None:
        # An unknown machine is reported before a bad name or input, as before batching.
        with pytest.raises(StateMachineDoesNotExist):
            await life.start("Nowhere", "\ud800", name="bad name!")
        with pytest.raises(ResourceNotFound):
            await life.start("Machine:7", {})
        with pytest.raises(ResourceNotFound):
            await life.start("Machine:nope", {})
        with pytest.raises(InvalidName):
            await life.start("Machine", {}, name="bad name!")
        with pytest.raises(InvalidExecutionInput):
            await life.start("Machine", "\ud800")
        records, _ = await life.list_executions(machine="Machine")
        assert records == []

    anyio.run(scenario)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_starts_whose_callers_are_cancelled_are_still_recorded(store: Store, backend: str) -> None:
    life = _lifecycle(store)

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(functools.partial(life.start, "Machine", {}, name=f"c{n}"))
            await anyio.sleep(0)  # every start handed over (one committing, the rest queued)
            group.cancel_scope.cancel()
        records, _ = await life.list_executions(machine="Machine")
        assert sorted(r.name for r in records) == sorted(f"c{n}" for n in range(20))
        # Nothing is left holding the lead: the next start commits on its own.
        before = life._starts.transactions
        await life.start("Machine", {}, name="after")
        assert life._starts.transactions == before + 1

    anyio.run(scenario, backend=backend)


def test_a_start_as_the_engine_closes_completes(db_url: str) -> None:
    names = [f"s{n}" for n in range(12)]

    async def scenario() -> None:
        async with Engine(db_url, worker=False) as engine:
            await engine.create_state_machine("Machine", PASS)
            async with anyio.create_task_group() as group:
                for name in names:
                    group.start_soon(functools.partial(engine.start, "Machine", {}, name=name))
                await anyio.sleep(0)
                group.cancel_scope.cancel()
        # The engine closed with those starts in flight; each was committed.
        async with Engine(db_url, worker=False) as engine:
            listed = await engine.list_executions(machine="Machine")
            assert sorted(r.name for r in listed) == sorted(names)

    anyio.run(scenario)


def test_a_name_taken_by_another_process_mid_batch_fails_only_its_start(
    postgres_url: str,
) -> None:
    # Another process inserts "raced" after this batch checked the names and
    # commits while this batch's insert waits on the unique key: the batch
    # rolls back and each start is retried on its own.
    store = Store(postgres_url)
    other = Store(postgres_url)
    machine = store.put_state_machine("Machine", json.dumps(PASS), "STANDARD")
    life = _lifecycle(store)
    rival = _lifecycle(other)

    async def scenario() -> None:
        with other._engine.connect() as conn:
            rival_tx = conn.begin()
            conn.execute(
                sa.insert(executions).values(
                    execution_id=execution_arn("Machine", "raced"),
                    name="raced",
                    machine="Machine",
                    version=machine.version,
                    status="RUNNING",
                    input="{}",
                    start_date=datetime.now(UTC),
                    trace_id="0" * 32,
                    last_event_id=0,
                    queue="default",
                )
            )
            async with anyio.create_task_group() as group:
                answers: list[Any] = []

                async def batch() -> None:
                    answers.extend(
                        await _answers(
                            life,
                            [
                                ("Machine", {}, "a"),
                                ("Machine", {"x": 1}, "raced"),
                                ("Machine", {}, "b"),
                            ],
                        )
                    )

                group.start_soon(batch)
                while not _waiting_on_a_lock(other):
                    await anyio.sleep(0.01)
                rival_tx.commit()
        assert isinstance(answers[0], ExecutionRecord)
        assert isinstance(answers[1], ExecutionAlreadyExists)
        assert isinstance(answers[2], ExecutionRecord)
        listed, _ = await rival.list_executions(machine="Machine")
        assert sorted(r.name for r in listed) == ["a", "b", "raced"]

    try:
        anyio.run(scenario)
    finally:
        store.close()
        other.close()


def _waiting_on_a_lock(store: Store) -> bool:
    with store._engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar()
        )
