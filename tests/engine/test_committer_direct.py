"""An idle Committer commits a lone checkpoint in its caller's task; under load it still groups.

A checkpoint that finds nothing queued and no commit under way is committed
by its caller directly (W1: one walk in flight). Checkpoints that arrive
while a commit is under way wait for it and then share one transaction, and
never two commits run at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.clock import SystemClock
from engine.committer import Committer
from engine.store import Checkpoint, CommitResult, Event, Store
from tests.engine.committing import T0, claimed, commit_while_held, in_thread


def _checkpoint(execution_id: str) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[("k", "1")],
        events=[Event(2, 1, "PassStateEntered", T0, {"name": "A"})],
    )


def test_a_lone_checkpoint_commits_without_the_committers_task(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    (execution_id,) = claimed(store, 1)
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
    try:
        ids = claimed(store, 5)
        held = commit_while_held(store, _checkpoint(ids[0]), [_checkpoint(i) for i in ids[1:]])
        assert held.results == [CommitResult.OK] * 5
        assert held.groups == [1, 4]  # the lone one, then the four that queued meanwhile
        assert held.most_at_once == 1  # never two commits at once
        assert (held.committer.commits, held.committer.checkpoints) == (2, 5)
        assert all(store.load(i).journal == {"k": "1"} for i in ids)
    finally:
        store.close()


def test_a_large_queue_behind_a_lone_commit_goes_in_two_halves(tmp_path: Path) -> None:
    """Half of what is in play a group: the halves then commit while the other is walked.

    The lone commit's activation walks on as the queued ones commit; taking
    all of them at once (W1c: 63 behind 1) would leave the loop idle through
    that large commit, every step. As on PostgreSQL (`balanced`; a real
    store all the same, here SQLite's, whose committer is not balanced).
    """
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        ids = claimed(store, 21)
        rest = [_checkpoint(i) for i in ids[1:]]
        held = commit_while_held(store, _checkpoint(ids[0]), rest, balanced=True)
        assert held.results == [CommitResult.OK] * 21
        assert held.groups == [1, 11, 9]  # (20 queued + 1 walking) / 2, then the rest
        assert held.most_at_once == 1
        assert all(store.load(i).journal == {"k": "1"} for i in ids)
        # Too few to split into two groups of 8 or more: 12 go as one.
        more = claimed(store, 13, prefix="f")
        rest = [_checkpoint(i) for i in more[1:]]
        held = commit_while_held(store, _checkpoint(more[0]), rest, balanced=True)
        assert held.groups == [1, 12]
        assert all(store.load(i).journal == {"k": "1"} for i in more)
    finally:
        store.close()


def test_groups_are_balanced_where_the_loop_sends_them_to_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    async def balanced(url: str) -> bool:
        async with Engine(url) as engine:
            return engine.runtime.committer.balanced

    assert anyio.run(balanced, postgres_url) is True
    assert anyio.run(balanced, f"sqlite:///{tmp_path / 'db.sqlite'}") is False


@pytest.mark.timeout(60)  # a hang guard only
def test_asyncios_cancel_while_the_committer_takes_its_turn_gives_the_turn_back(
    tmp_path: Path,
) -> None:
    """The turn's one yield after taking it (as an anyio Lock's acquire) hands it back if cancelled.

    Else the next checkpoint would find a commit "under way" forever: queued
    for a serving task that is gone, its caller never answered.
    """
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    (execution_id,) = claimed(store, 1)
    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=in_thread)

    async def main() -> CommitResult:
        taking = asyncio.ensure_future(committer._take_turn())
        await asyncio.sleep(0)  # it took the turn and yields once
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking
        return await committer.commit(_checkpoint(execution_id))  # free: committed directly

    try:
        assert asyncio.run(main()) is CommitResult.OK
        assert store.load(execution_id).journal == {"k": "1"}
    finally:
        store.close()
