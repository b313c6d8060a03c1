"""More checkpoints queued than one group commit takes: each caller is answered by its own group.

The callers of a group's checkpoints wait on one event, set once when that
group's commit is done. What is left queued when a group is taken (more
than `max_batch` checkpoints) waits for a later group, and its callers are
never told an outcome before their own checkpoint has committed.
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
    return sorted(i for i, _ in store.claim_due("w", limit=count, lease_seconds=3600, now=T0))


def _checkpoint(execution_id: str) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[("k", "1")],
        events=[Event(2, 1, "PassStateEntered", T0, {"name": "A"})],
    )


def test_checkpoints_beyond_one_group_are_answered_by_their_own_commit(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ids = _claimed(store, 7)
    release = threading.Event()
    committed: set[str] = set()
    calls: list[int] = []
    early: list[str] = []

    async def gated(fn: Any, checkpoints: list[Checkpoint], **kwargs: Any) -> Any:
        calls.append(len(checkpoints))
        if len(calls) == 1:  # the first commit waits until the others are queued
            await anyio.to_thread.run_sync(release.wait)
        results = await anyio.to_thread.run_sync(lambda: fn(checkpoints, **kwargs))
        committed.update(c.execution_id for c in checkpoints)
        return results

    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=gated, max_batch=2)
    results: dict[str, CommitResult] = {}

    async def commit(execution_id: str) -> None:
        results[execution_id] = await committer.commit(_checkpoint(execution_id))
        if execution_id not in committed:
            early.append(execution_id)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(committer.run)
            async with anyio.create_task_group() as commits:
                commits.start_soon(commit, ids[0])
                while not calls:
                    await anyio.sleep(0.01)
                for execution_id in ids[1:]:
                    commits.start_soon(commit, execution_id)
                while committer.queued < len(ids) - 1:  # all six handed over
                    await anyio.sleep(0.01)
                release.set()
            group.cancel_scope.cancel()

    try:
        anyio.run(main)
        assert results == {i: CommitResult.OK for i in ids}
        assert early == []  # nobody was answered before its checkpoint committed
        assert calls == [1, 2, 2, 2]  # the lone one, then the six in groups of two
        assert all(store.load(i).journal == {"k": "1"} for i in ids)
    finally:
        store.close()
