"""A checkpoint handed to the Committer after its serving task stopped is still committed.

When an engine shuts down, its task group cancels the committer's task and
the activations at once. An activation that is finishing (a child aborted
by its parent's stop, say) hands its checkpoint over after the committer
has gone; it must be committed all the same, not wait forever — that wait
once hung `Engine.__exit__` and with it a whole CI run.
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


async def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def _claimed_execution(store: Store, name: str) -> str:
    machine = store.put_state_machine("m", DEFINITION)
    record, _ = store.create_execution(
        execution_id=f"e-{name}",
        name=name,
        machine=machine,
        input="{}",
        start_date=T0,
        trace_id="0" * 32,
        first_event=Event(1, 0, "ExecutionStarted", T0, {}),
    )
    assert [i for i, _ in store.claim_due("w", limit=1, lease_seconds=60, now=T0)] == [
        record.execution_id
    ]
    return record.execution_id


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
    execution_id = _claimed_execution(store, "a")
    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=_in_thread)
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
