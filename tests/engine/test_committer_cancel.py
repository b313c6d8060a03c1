"""A checkpoint handed to the Committer is committed, and its caller told so, even if cancelled.

An activation is cancelled while its checkpoint commits when its lease is
lost, a stop or its deadline ends its walk, or the worker shuts down. The
checkpoint was drained from its journal when it was handed over, so its
outcome must be known before the activation moves on: the commit returns
its result to the caller, and the cancellation lands at the caller's next
await. Both ways a checkpoint is committed are covered: by its own caller
(the committer idle) and queued behind a commit under way.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.clock import SystemClock
from engine.committer import Committer
from engine.store import Checkpoint, CommitResult, Event, Store

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'


def _claimed(store: Store, count: int) -> list[str]:
    machine = store.put_state_machine("m", DEFINITION)
    for index in range(count):
        store.create_execution(
            execution_id=f"e-{index}",
            name=f"n-{index}",
            machine=machine,
            input="{}",
            start_date=T0,
            trace_id="0" * 32,
            first_event=Event(1, 0, "ExecutionStarted", T0, {}),
        )
    claimed = [i for i, _ in store.claim_due("w", limit=count, lease_seconds=60, now=T0)]
    assert sorted(claimed) == [f"e-{index}" for index in range(count)]
    return sorted(claimed)


def _checkpoint(execution_id: str) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[("k", '{"v":1,"e":0}')],
        events=[Event(2, 1, "SucceedStateEntered", T0, {"name": "A"})],
        last_event_id=2,
    )


def _gated_run_db() -> tuple[threading.Event, threading.Event, Any]:
    """A `run_db` whose first store call sets `entered`, then waits for `gate`."""
    entered, gate = threading.Event(), threading.Event()

    async def run_db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        def call() -> Any:
            if not entered.is_set():
                entered.set()
                gate.wait(timeout=30)
            return fn(*args, **kwargs)

        return await anyio.to_thread.run_sync(call)

    return entered, gate, run_db


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("queued", [False, True], ids=["committed-by-caller", "queued"])
def test_a_cancelled_caller_learns_its_checkpoints_outcome_before_the_cancellation(
    tmp_path: Path, queued: bool, backend: str
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    first, second = _claimed(store, 2)
    # The first commit to reach the store waits here, so the cancellation
    # below lands while a commit is under way.
    entered, gate, run_db = _gated_run_db()

    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=run_db)
    told: list[CommitResult] = []
    cancelled_after: list[bool] = []

    async def cancelled_caller(execution_id: str, scope: anyio.CancelScope) -> None:
        with scope:
            told.append(await committer.commit(_checkpoint(execution_id)))
            await anyio.sleep(30)  # the cancellation lands here
        cancelled_after.append(scope.cancelled_caught)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(committer.run)
            await anyio.sleep(0)
            scope = anyio.CancelScope()
            if queued:
                # Another execution's commit is under way; ours queues behind it.
                group.start_soon(committer.commit, _checkpoint(second))
                await anyio.to_thread.run_sync(entered.wait, 30)
                group.start_soon(cancelled_caller, first, scope)
            else:
                group.start_soon(cancelled_caller, first, scope)
                await anyio.to_thread.run_sync(entered.wait, 30)
            await anyio.sleep(0.05)  # the caller waits on its commit now
            scope.cancel()
            await anyio.sleep(0.05)
            gate.set()
            while not cancelled_after:
                await anyio.sleep(0.01)
            group.cancel_scope.cancel()

    runner = threading.Thread(
        target=anyio.run, args=(main,), kwargs={"backend": backend}, daemon=True
    )
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the commit or its caller never ended"
    assert told == [CommitResult.OK]
    assert cancelled_after == [True]
    for execution_id in (first, second) if queued else (first,):
        assert [e.type for e in store.history(execution_id)] == [
            "ExecutionStarted",
            "SucceedStateEntered",
        ]
    store.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_caller_cancelled_while_queued_does_not_disturb_the_others_of_its_group(
    tmp_path: Path, backend: str
) -> None:
    """Two checkpoints queue in one group; one caller's scope is cancelled: the other is only told.

    The group's callers share one anyio Event; a cancel scope cancels only
    the wait of the task it covers, so the caller nobody cancelled still
    gets its outcome (a shared asyncio future awaited directly would be
    cancelled for both).
    """
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    under_way, cancelled_one, bystander = _claimed(store, 3)
    entered, gate, run_db = _gated_run_db()

    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=run_db)
    told: dict[str, CommitResult | BaseException] = {}

    async def caller(execution_id: str, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                told[execution_id] = await committer.commit(_checkpoint(execution_id))
            except BaseException as error:
                told[execution_id] = error
                raise

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(committer.run)
            await anyio.sleep(0)
            group.start_soon(committer.commit, _checkpoint(under_way))
            await anyio.to_thread.run_sync(entered.wait, 30)
            scope = anyio.CancelScope()
            group.start_soon(caller, cancelled_one, scope)
            group.start_soon(caller, bystander, anyio.CancelScope())
            while committer.queued < 2:
                await anyio.sleep(0.01)
            scope.cancel()
            await anyio.sleep(0.05)
            gate.set()
            while len(told) < 2:
                await anyio.sleep(0.01)
            group.cancel_scope.cancel()

    runner = threading.Thread(
        target=anyio.run, args=(main,), kwargs={"backend": backend}, daemon=True
    )
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "a queued caller never learnt its outcome"
    assert told == {cancelled_one: CommitResult.OK, bystander: CommitResult.OK}
    for execution_id in (under_way, cancelled_one, bystander):
        assert [e.type for e in store.history(execution_id)] == [
            "ExecutionStarted",
            "SucceedStateEntered",
        ]
    store.close()
