"""A Map's iterations schedule their Tasks in one commit, each durable before its handler runs.

While several children (Map iterations, Parallel branches) walk at once,
the first to checkpoint yields once so that its ready siblings record their
steps and join its commit (`Walk.durable`). What a user relies on stays:
every iteration's TaskScheduled is in the database before its handler is
called, the outputs are in item order, and the history is the same events
with the same ids and previousEventId chains; the many schedules now take
one commit, not one and then the rest.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from activities import Registry
from engine import Engine
from engine.committer import Committer
from engine.store import Checkpoint, CommitResult, ExecutionRecord, ExecutionStatus, Store
from engine.store.schema import history_blocks, history_events

ITEMS = 12

MAP = {
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemSelector": {"i.$": "$$.Map.Item.Value"},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Work",
                "States": {"Work": {"Type": "Task", "Resource": "work", "End": True}},
            },
            "End": True,
        }
    },
}


def _checking_work(reader: Store, seen: dict[int, bool]) -> Callable[[dict[str, Any]], Any]:
    """A `work` handler noting whether its own TaskScheduled was committed when it was called."""
    lock = threading.Lock()

    def work(value: dict[str, Any]) -> dict[str, Any]:
        index = value["i"]
        with reader._engine.connect() as conn:  # reading the table on purpose
            details = list(
                conn.execute(
                    sa.select(history_events.c.details).where(
                        history_events.c.type == "TaskScheduled"
                    )
                ).scalars()
            )
            # Since migration 18 a commit's events are one history_blocks row.
            for text in conn.execute(sa.select(history_blocks.c.events)).scalars():
                details.extend(e[4] for e in json.loads(text) if e[2] == "TaskScheduled")
            scheduled = [json.loads(json.loads(d)["parameters"]) for d in details]
        with lock:
            seen[index] = {"i": index} in scheduled
        return {"j": index * 2}

    return work


def _assert_each_handler_found_its_schedule(done: ExecutionRecord, seen: dict[int, bool]) -> None:
    assert done.status == ExecutionStatus.SUCCEEDED
    assert json.loads(done.output or "null") == [{"j": i * 2} for i in range(ITEMS)]
    # Checkpoint before effect: each handler found its own TaskScheduled committed.
    assert seen == dict.fromkeys(range(ITEMS), True)


def test_every_iteration_is_scheduled_durably_before_its_handler_in_one_commit(
    db_url: str,
) -> None:
    reader = Store(db_url)  # a connection of its own: sees only what is committed
    seen: dict[int, bool] = {}
    work = _checking_work(reader, seen)

    registry = Registry()
    registry.register("work", work)
    try:
        with Engine(db_url, registry=registry) as engine:
            engine.create_state_machine_sync("fan", json.dumps(MAP))
            committer = engine._runtime.committer  # type: ignore[union-attr]
            before = committer.commits
            done = engine.wait_sync(
                engine.start_sync("fan", {"items": list(range(ITEMS))}), timeout=60
            )
            commits = committer.commits - before
            history = engine.history_sync(done)
    finally:
        reader.close()

    _assert_each_handler_found_its_schedule(done, seen)
    # One commit schedules every iteration; one more ends the execution.
    assert commits == 2
    # Every event once, numbered 1…n, each chained on an earlier one.
    counts = Counter(e.type for e in history)
    for kind in ("MapIterationStarted", "TaskScheduled", "TaskSucceeded", "MapIterationSucceeded"):
        assert counts[kind] == ITEMS
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    assert all(0 <= e.previous_event_id < e.event_id for e in history)


def test_iterations_starting_while_the_start_commits_wait_for_the_commit_of_their_schedules(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under MaxConcurrency the iterations start a loop turn apart, while the early walk's start
    (engine/earlywalk.py) is held at a lock: the first checkpoints alone, the next ones gather,
    and all wait for the start. No handler runs before its own schedule is durable.

    A checkpoint drained the journal only once the start was durable: the first one took the
    others' rows too, and theirs, finding nothing left to commit, returned while those rows
    were still on their way (the commits made slow here so that the handlers' reads come first).
    """
    from tests.engine.test_refused_data import _HistoryLock
    from tests.engine.test_start_early_walk import _at_the_gate

    committing = Committer.commit
    results: list[CommitResult] = []

    async def slow_commit(self: Committer, checkpoint: Checkpoint) -> CommitResult:
        await anyio.sleep(0.3)  # the handlers' reads, if called now, come first
        results.append(await committing(self, checkpoint))
        return results[-1]

    monkeypatch.setattr(Committer, "commit", slow_commit)
    reader = Store(postgres_url)
    seen: dict[int, bool] = {}
    registry = Registry()
    registry.register("work", _checking_work(reader, seen))

    async def scenario() -> ExecutionRecord:
        async with Engine(postgres_url, registry=registry) as engine:
            await engine.create_state_machine(
                "fan", {**MAP, "States": {"Fan": {**MAP["States"]["Fan"], "MaxConcurrency": 4}}}
            )
            answer: list[ExecutionRecord] = []

            async def start() -> None:
                answer.append(await engine.start("fan", {"items": list(range(ITEMS))}))

            lock = _HistoryLock(postgres_url)  # the start's ExecutionStarted waits on it
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(start)
                    await _at_the_gate(engine)
                    await anyio.sleep(0.05)  # the other three iterations reach their schedules
                    lock.release()
            finally:
                lock.release()
            return await engine.wait(answer[0], timeout=60)

    try:
        done = anyio.run(scenario)
    finally:
        reader.close()
    _assert_each_handler_found_its_schedule(done, seen)
    # Each commit took its own rows and events: none refused as a conflict.
    assert set(results) == {CommitResult.OK}
