"""Claimed executions and a held commit, for the tests that drive a Committer directly.

The committer's tests need executions whose lease worker `w` holds, with
only `ExecutionStarted` recorded, so that their own checkpoints are all that
is written (`claimed`); the store call on a thread as the Committer's
`run_db` (`in_thread`); and a first commit held open while more checkpoints
are handed over, to see how the queued ones are grouped (`commit_while_held`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from engine.clock import SystemClock
from engine.committer import Committer
from engine.store import Checkpoint, CommitResult, Event, Store

__all__ = ["DEFINITION", "T0", "Held", "claimed", "commit_while_held", "in_thread"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'


def claimed(store: Store, count: int, *, prefix: str = "e") -> list[str]:
    """Start `count` executions named `{prefix}0…` and claim them all as worker `w`."""
    machine = store.put_state_machine("m", DEFINITION)
    for n in range(count):
        store.create_execution(
            execution_id=f"{prefix}{n}",
            name=f"{prefix}{n}",
            machine=machine,
            input="{}",
            start_date=T0,
            trace_id="0" * 32,
            first_event=Event(1, 0, "ExecutionStarted", T0, {}),
        )
    ids = [i for i, _ in store.claim_due("w", limit=count, lease_seconds=3600, now=T0)]
    assert sorted(ids) == sorted(f"{prefix}{n}" for n in range(count))
    return ids


async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """The Committer's `run_db`: the store call on a worker thread."""
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


@dataclass
class Held:
    """What `commit_while_held` saw: each caller's result, each store call's group size.

    `queued`: `Committer.queued` once every checkpoint was handed over, the first held.
    """

    results: list[CommitResult]
    groups: list[int]
    most_at_once: int
    queued: int
    committer: Committer = field(repr=False)


def commit_while_held(
    store: Store, first: Checkpoint, queued: list[Checkpoint], *, balanced: bool = False
) -> Held:
    """Commit `first` alone and hand `queued` over, in order, while its commit is held open.

    `balanced`: the committer's groups balanced as on PostgreSQL (`Committer.balanced`).
    """
    release = threading.Event()
    groups: list[int] = []
    running = most = 0

    async def gated(fn: Any, checkpoints: list[Checkpoint], **kwargs: Any) -> Any:
        nonlocal running, most
        running += 1
        most = max(most, running)
        groups.append(len(checkpoints))
        try:
            if len(groups) == 1:  # the first commit waits until the others are queued
                await anyio.to_thread.run_sync(release.wait)
            return await anyio.to_thread.run_sync(lambda: fn(checkpoints, **kwargs))
        finally:
            running -= 1

    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=gated)
    committer.balanced = balanced
    results: dict[int, CommitResult] = {}
    queued_then: list[int] = []

    async def commit(index: int, checkpoint: Checkpoint) -> None:
        results[index] = await committer.commit(checkpoint)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(committer.run)
            async with anyio.create_task_group() as commits:
                commits.start_soon(commit, -1, first)
                while not groups:
                    await anyio.sleep(0.01)
                for index, checkpoint in enumerate(queued):
                    # In order: each is handed over before the next starts.
                    commits.start_soon(commit, index, checkpoint)
                    await anyio.wait_all_tasks_blocked()
                queued_then.append(committer.queued)
                release.set()
            group.cancel_scope.cancel()

    anyio.run(main)
    results_in_order = [results[i] for i in range(-1, len(queued))]
    return Held(results_in_order, groups, most, queued_then[0], committer)
