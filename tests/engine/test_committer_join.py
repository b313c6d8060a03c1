"""Checkpoints of one execution queued behind a commit join into one; a finish never joins.

A Map's iterations each checkpoint before their Task runs; while one commit
is under way the others queue, and those of the same execution become one
checkpoint of the next group (its rows in the order recorded, each caller
answered). A finishing or releasing checkpoint stays on its own, and what
queues after it does not join what queued before it. Also: the first
Engine started in a process freezes the heap it started with (`gc.freeze`).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from engine.clock import SystemClock
from engine.committer import Committer
from engine.store import Checkpoint, CommitResult, Event, ExecutionStatus, Finish, Store

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


def _step(execution_id: str, n: int, *, finish: bool = False) -> Checkpoint:
    """The checkpoint of step `n` (event n + 1), finishing the execution if `finish`."""
    return Checkpoint(
        execution_id,
        journal=[(f"k{n}", str(n))],
        events=[Event(n + 1, n, "PassStateEntered", T0, {"name": f"S{n}"})],
        finish=Finish(status=ExecutionStatus.SUCCEEDED, stop_date=T0, output="{}")
        if finish
        else None,
        last_event_id=n + 1,
    )


def _run_gated(
    store: Store, first: Checkpoint, queued: list[Checkpoint]
) -> tuple[list[CommitResult], list[int]]:
    """Commit `first` alone, and `queued` while its commit is held; results and group sizes."""
    release = threading.Event()
    calls: list[int] = []

    async def gated(fn: Any, checkpoints: list[Checkpoint], **kwargs: Any) -> Any:
        calls.append(len(checkpoints))
        if len(calls) == 1:  # the first commit waits until the others are queued
            await anyio.to_thread.run_sync(release.wait)
        return await anyio.to_thread.run_sync(lambda: fn(checkpoints, **kwargs))

    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=gated)
    results: dict[int, CommitResult] = {}

    async def commit(index: int, checkpoint: Checkpoint) -> None:
        results[index] = await committer.commit(checkpoint)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(committer.run)
            async with anyio.create_task_group() as commits:
                commits.start_soon(commit, -1, first)
                while not calls:
                    await anyio.sleep(0.01)
                for index, checkpoint in enumerate(queued):
                    # In order: each is handed over before the next starts.
                    commits.start_soon(commit, index, checkpoint)
                    await anyio.wait_all_tasks_blocked()
                release.set()
            group.cancel_scope.cancel()

    anyio.run(main)
    return [results[i] for i in range(-1, len(queued))], calls


def test_queued_checkpoints_of_one_execution_commit_as_one(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        a, b = _claimed(store, 2)
        queued = [_step(a, 2), _step(b, 2), _step(a, 3), _step(a, 4), _step(b, 3)]
        results, calls = _run_gated(store, _step(a, 1), queued)
        assert results == [CommitResult.OK] * 6  # every caller answered
        assert calls == [1, 2]  # the lone one, then one checkpoint per execution
        assert store.load(a).journal == {"k1": "1", "k2": "2", "k3": "3", "k4": "4"}
        assert store.load(b).journal == {"k2": "2", "k3": "3"}
        history = [(e.event_id, e.previous_event_id) for e in store.history(a)]
        assert history == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]
    finally:
        store.close()


def test_a_finishing_checkpoint_is_not_joined_nor_overtaken(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        (a,) = _claimed(store, 1)
        queued = [_step(a, 2), _step(a, 3, finish=True)]
        results, calls = _run_gated(store, _step(a, 1), queued)
        assert results == [CommitResult.OK] * 3
        assert calls == [1, 2]  # the step and the finish stay two checkpoints
        assert store.get_execution(a).status == ExecutionStatus.SUCCEEDED
        assert store.load(a).journal == {"k1": "1", "k2": "2", "k3": "3"}
    finally:
        store.close()


def test_the_first_engine_freezes_the_heap_it_started_with(tmp_path: Path) -> None:
    script = (
        "import gc, anyio\n"
        "from engine import Engine\n"
        "assert gc.get_freeze_count() == 0\n"
        "async def main():\n"
        f"    async with Engine('sqlite:///{tmp_path / 'db.sqlite'}'):\n"
        "        assert gc.get_freeze_count() > 0\n"
        "anyio.run(main)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
