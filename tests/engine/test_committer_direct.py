"""An idle Committer commits a lone checkpoint in its caller's task; under load it still groups.

A checkpoint that finds nothing queued and no commit under way is committed
by its caller directly (W1: one walk in flight). Checkpoints that arrive
while a commit is under way wait for it and then share one transaction, and
never two commits run at once.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from engine.clock import SystemClock
from engine.committer import Committer
from engine.store import Checkpoint, CommitResult, Event, Store

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'


def _claimed(store: Store, count: int) -> list[str]:
    machine = store.put_state_machine("m", DEFINITION)
    for n in range(count):
        store.create_execution(
            execution_id=f"e{n}",
            name=f"e{n}",
            machine=machine,
            input="{}",
            start_date=T0,
            trace_id="0" * 32,
            first_event=Event(1, 0, "ExecutionStarted", T0, {}),
        )
    return [i for i, _ in store.claim_due("w", limit=count, lease_seconds=3600, now=T0)]


def _checkpoint(execution_id: str) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[("k", "1")],
        events=[Event(2, 1, "PassStateEntered", T0, {"name": "A"})],
    )


def test_a_lone_checkpoint_commits_without_the_committers_task(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    (execution_id,) = _claimed(store, 1)

    async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=in_thread)
    try:
        # The serving task is never started: the caller commits its own checkpoint.
        result = anyio.run(committer.commit, _checkpoint(execution_id))
        assert result is CommitResult.OK
        assert (committer.commits, committer.checkpoints) == (1, 1)
        assert store.load(execution_id).journal == {"k": "1"}
    finally:
        store.close()


def test_checkpoints_arriving_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ids = _claimed(store, 5)
    release = threading.Event()
    running = 0
    most = 0
    calls: list[int] = []

    async def gated(fn: Any, checkpoints: list[Checkpoint], **kwargs: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        calls.append(len(checkpoints))
        try:
            if len(calls) == 1:  # the first commit waits until the others are queued
                await anyio.to_thread.run_sync(release.wait)
            return await anyio.to_thread.run_sync(lambda: fn(checkpoints, **kwargs))
        finally:
            running -= 1

    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=gated)
    results: dict[str, CommitResult] = {}

    async def commit(execution_id: str) -> None:
        results[execution_id] = await committer.commit(_checkpoint(execution_id))

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(committer.run)
            async with anyio.create_task_group() as commits:
                commits.start_soon(commit, ids[0])
                while not calls:
                    await anyio.sleep(0.01)
                for execution_id in ids[1:]:
                    commits.start_soon(commit, execution_id)
                while len(committer._queue) < len(ids) - 1:  # all four handed over
                    await anyio.sleep(0.01)
                release.set()
            group.cancel_scope.cancel()

    try:
        anyio.run(main)
        assert results == {i: CommitResult.OK for i in ids}
        assert calls == [1, 4]  # the lone one, then the four that queued meanwhile
        assert most == 1  # never two commits at once
        assert (committer.commits, committer.checkpoints) == (2, 5)
        assert all(store.load(i).journal == {"k": "1"} for i in ids)
    finally:
        store.close()
