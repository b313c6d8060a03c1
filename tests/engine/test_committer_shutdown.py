"""A checkpoint handed to the Committer after its serving task stopped is still committed.

When an engine shuts down, its task group cancels the committer's task and
the activations at once. An activation that is finishing (a child aborted
by its parent's stop, say) hands its checkpoint over after the committer
has gone; it must be committed all the same, not wait forever — that wait
once hung `Engine.__exit__` and with it a whole CI run.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from engine.clock import SystemClock
from engine.committer import Committer
from engine.store import Checkpoint, CommitResult, Event, Store
from tests.engine.committing import T0, claimed, in_thread


def _checkpoint(execution_id: str) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[("k", '{"v":1,"e":0}')],
        events=[Event(2, 1, "SucceedStateEntered", T0, {"name": "A"})],
        last_event_id=2,
    )


@pytest.mark.parametrize("queued_before_stop", [False, True])
def test_a_checkpoint_is_committed_after_the_committer_stopped(
    tmp_path: Path, queued_before_stop: bool
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    (execution_id,) = claimed(store, 1)
    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=in_thread)
    results: list[CommitResult] = []

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(committer.run)
            await anyio.sleep(0)
            if queued_before_stop:
                # Handed over in the same instant the group is cancelled.
                group.start_soon(_commit)
            group.cancel_scope.cancel()
        if not queued_before_stop:
            await _commit()

    async def _commit() -> None:
        results.append(await committer.commit(_checkpoint(execution_id)))

    # In a thread of its own: a commit that waits forever fails the test
    # instead of hanging it (the wait is shielded from cancellation).
    runner = threading.Thread(target=anyio.run, args=(main,), daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the commit waited for a committer that had stopped"
    assert results == [CommitResult.OK]
    assert [e.type for e in store.history(execution_id)] == [
        "ExecutionStarted",
        "SucceedStateEntered",
    ]
    store.close()
