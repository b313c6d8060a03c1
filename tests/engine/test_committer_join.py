"""Checkpoints of one execution queued behind a commit join into one; a finish never joins.

A Map's iterations each checkpoint before their Task runs; while one commit
is under way the others queue, and those of the same execution become one
checkpoint of the next group (its rows in the order recorded, each caller
answered). A finishing or releasing checkpoint stays on its own, and what
queues after it does not join what queued before it.
"""

from __future__ import annotations

from pathlib import Path

from engine.store import Checkpoint, CommitResult, Event, ExecutionStatus, Finish, Store
from tests.engine.committing import T0, claimed, commit_while_held


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


def test_queued_checkpoints_of_one_execution_commit_as_one(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        a, b = claimed(store, 2)
        queued = [_step(a, 2), _step(b, 2), _step(a, 3), _step(a, 4), _step(b, 3)]
        held = commit_while_held(store, _step(a, 1), queued)
        assert held.queued == 5  # handed over, waiting: the joined ones counted too
        assert held.results == [CommitResult.OK] * 6  # every caller answered
        assert held.groups == [1, 2]  # the lone one, then one checkpoint per execution
        assert store.load(a).journal == {"k1": "1", "k2": "2", "k3": "3", "k4": "4"}
        assert store.load(b).journal == {"k2": "2", "k3": "3"}
        history = [(e.event_id, e.previous_event_id) for e in store.history(a)]
        assert history == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]
    finally:
        store.close()


def test_a_finishing_checkpoint_is_not_joined_nor_overtaken(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        (a,) = claimed(store, 1)
        queued = [_step(a, 2), _step(a, 3, finish=True)]
        held = commit_while_held(store, _step(a, 1), queued)
        assert held.results == [CommitResult.OK] * 3
        assert held.groups == [1, 2]  # the step and the finish stay two checkpoints
        assert store.get_execution(a).status == ExecutionStatus.SUCCEEDED
        assert store.load(a).journal == {"k1": "1", "k2": "2", "k3": "3"}
    finally:
        store.close()
