"""SQLite: a start batch and a commit group waiting for the store thread share a transaction.

The `Committer` and the `StartBatcher` of one store hand their writes to
its `WritePairs`: a part that arrives while another part's store call has
not started joins it, and the two are written in one BEGIN IMMEDIATE …
COMMIT (`engine/store/sqlitejoint.py`). A part its fast path does not
decide alone — the commit's lease lost, a start's name taken — rolls the
joint transaction back and both go their usual way: the refused part gets
exactly its usual answer, the other still lands. Real SQLite files; the
first store call is held until the second part has joined it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.clock import SystemClock
from engine.committer import Committer
from engine.errors import ExecutionAlreadyExists, ExecutionDoesNotExist, StoreUnavailable
from engine.lifecycle import Lifecycle
from engine.store import Checkpoint, CommitResult, Event, ExecutionStatus, Finish, Store
from engine.storethreads import StoreThreads
from engine.writepairs import WritePairs
from tests.engine.committing import T0, claimed

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


class Gate:
    """A `run_db` whose first call waits (off the loop) until `release`; every call on a thread."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.calls = 0

    async def __call__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            await anyio.to_thread.run_sync(self.opened.wait)
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'pairs.db'}")
    store.put_state_machine("Machine", json.dumps(PASS), "STANDARD")
    yield store
    store.close()


def _end(execution_id: str) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[("k", "1")],
        events=[
            Event(2, 1, "PassStateEntered", T0, {"name": "A"}),
            Event(3, 2, "ExecutionSucceeded", T0, {"output": "{}"}),
        ],
        finish=Finish(ExecutionStatus.SUCCEEDED.value, stop_date=T0, output="{}"),
    )


def _together(
    store: Store,
    checkpoint: Checkpoint,
    starts: list[tuple[Any, str]],
    *,
    worker: str = "w",
    opening: Callable[[], None] = lambda: None,
) -> tuple[Any, list[Any], WritePairs]:
    """Commit `checkpoint` (read back) and start `starts` (input, name) while its call is held.

    `opening` runs just before the held call goes on. Returns the commit's
    (result, record) or error, each start's record or error, and the pairs.
    """
    gate = Gate()
    committer = Committer(store, worker_id=worker, clock=SystemClock(), run_db=gate)
    life = Lifecycle(store=store, clock=SystemClock(), run_db=gate)
    pairs = WritePairs.of(store, gate, "commit")
    assert pairs is not None and pairs.paired
    committed: list[Any] = []
    started: list[Any] = [None] * len(starts)

    async def start(index: int, input: Any, name: str) -> None:
        try:
            started[index] = await life.start("Machine", input, name=name)
        except Exception as error:  # each start's own answer is what is checked
            started[index] = error

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: _commit(committer, checkpoint, committed))
            while gate.calls == 0:
                await anyio.sleep(0.001)
            for index, (input, name) in enumerate(starts):
                group.start_soon(start, index, input, name)
            await anyio.wait_all_tasks_blocked()
            assert gate.calls == 1  # the starts joined the commit's call, none of their own
            opening()
            gate.opened.set()

    anyio.run(main)
    return committed[0], started, pairs


async def _commit(committer: Committer, checkpoint: Checkpoint, out: list[Any]) -> None:
    try:
        out.append(await committer.commit_reading(checkpoint))
    except Exception as error:  # the commit's own answer is what is checked
        out.append(error)


def test_a_start_and_an_end_waiting_together_share_one_transaction(store: Store) -> None:
    (execution_id,) = claimed(store, 1)
    (result, record), started, pairs = _together(store, _end(execution_id), [({"n": 1}, "s1")])
    assert result is CommitResult.OK
    assert record is not None and record.status == ExecutionStatus.SUCCEEDED
    assert record == store.get_execution(execution_id)  # read inside the transaction
    assert started[0].name == "s1"
    assert store.get_execution(started[0].execution_id).input == '{"n":1}'
    assert (pairs.tried, pairs.joint) == (1, 1)
    assert store.load(execution_id).journal == {"k": "1"}


def test_a_lost_lease_fails_only_the_commit_and_the_start_still_lands(store: Store) -> None:
    (execution_id,) = claimed(store, 1)  # leased to worker "w", committed by another
    (result, record), started, pairs = _together(
        store, _end(execution_id), [({"n": 1}, "s1")], worker="intruder"
    )
    assert result is CommitResult.LEASE_LOST and record is None
    assert store.get_execution(execution_id).status == ExecutionStatus.RUNNING
    assert store.load(execution_id).journal == {}
    assert store.get_execution(started[0].execution_id).name == "s1"
    assert (pairs.tried, pairs.joint) == (1, 0)


def test_a_taken_name_fails_only_its_start_and_the_commit_still_lands(store: Store) -> None:
    (execution_id,) = claimed(store, 1)
    existing = anyio.run(_start_alone, store, "taken")
    (result, record), started, pairs = _together(
        store, _end(execution_id), [({"n": 1}, "taken"), ({"n": 2}, "free")]
    )
    assert result is CommitResult.OK and record is not None
    assert store.get_execution(execution_id).status == ExecutionStatus.SUCCEEDED
    assert isinstance(started[0], ExecutionAlreadyExists)
    assert started[1].name == "free"
    assert store.get_execution("taken").execution_id == existing.execution_id
    assert (pairs.tried, pairs.joint) == (1, 0)


async def _start_alone(store: Store, name: str) -> Any:
    life = Lifecycle(store=store, clock=SystemClock(), run_db=_in_thread)
    return await life.start("Machine", {"n": 0}, name=name)


async def _in_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def test_an_engine_starting_one_after_another_pairs_ends_with_starts(tmp_path: Path) -> None:
    async def main() -> None:
        async with Engine(f"sqlite:///{tmp_path / 'engine.db'}") as engine:
            await engine.create_state_machine("chain", PASS)
            records = [await engine.start("chain", {"n": n}) for n in range(20)]
            for record in records:
                assert (await engine.wait(record)).status == ExecutionStatus.SUCCEEDED
            assert engine._runtime is not None
            pairs = engine._runtime.committer._pairs
            assert pairs is not None and pairs.joint > 0

    anyio.run(main)


def test_a_joint_transaction_that_cannot_begin_leaves_each_part_to_its_usual_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the write lock throughout: each part meets it alone; nothing lands."""
    monkeypatch.setenv("STEPWISE_SQLITE_BUSY_TIMEOUT", "0.05")
    path = tmp_path / "locked.db"
    store = Store(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        store.put_state_machine("Machine", json.dumps(PASS), "STANDARD")
        (execution_id,) = claimed(store, 1)

        # Taken just before the joint call runs, held until both have their answers.
        def lock() -> None:
            other.execute("BEGIN IMMEDIATE")

        answer, started, pairs = _together(
            store, _end(execution_id), [({"n": 1}, "s1")], opening=lock
        )
        other.execute("ROLLBACK")
        assert isinstance(answer, StoreUnavailable)
        assert isinstance(started[0], StoreUnavailable)
        assert (pairs.tried, pairs.joint) == (1, 0)
        assert store.load(execution_id).journal == {}
        with pytest.raises(ExecutionDoesNotExist):
            store.get_execution("s1")
    finally:
        other.close()
        store.close()


class LoopGate:
    """A `run_db` whose first call waits on the event loop (cancellable) until `release`."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.calls = 0

    async def __call__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            await self.release.wait()
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await anyio.sleep(0.001)


def test_a_commit_cancelled_before_its_paired_call_starts_leaves_it(store: Store) -> None:
    """The commit joined a start's call and is cancelled first: nothing of it is written."""
    (execution_id,) = claimed(store, 1)
    gate = LoopGate()
    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=gate)
    life = Lifecycle(store=store, clock=SystemClock(), run_db=gate)
    pairs = WritePairs.of(store, gate, "commit")
    assert pairs is not None

    async def main() -> None:
        start = asyncio.ensure_future(life.start("Machine", {"n": 1}, name="s1"))
        await _until(lambda: gate.calls == 1)  # the start leads; its call is held
        commit = asyncio.ensure_future(committer.commit(_end(execution_id)))
        await anyio.wait_all_tasks_blocked()
        assert gate.calls == 1  # the commit joined the start's call
        commit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await commit
        gate.release.set()
        assert (await start).name == "s1"

    anyio.run(main)
    assert (pairs.tried, pairs.joint) == (0, 0)
    assert store.get_execution(execution_id).status == ExecutionStatus.RUNNING
    assert store.load(execution_id).journal == {}
    assert store.get_execution("s1").input == '{"n":1}'


def test_a_leader_cancelled_before_its_call_starts_hands_the_others_on(store: Store) -> None:
    """The commit leads and is cancelled before its call runs: the start joined to it lands."""
    (execution_id,) = claimed(store, 1)
    gate = LoopGate()
    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=gate)
    life = Lifecycle(store=store, clock=SystemClock(), run_db=gate)
    pairs = WritePairs.of(store, gate, "commit")
    assert pairs is not None

    async def main() -> None:
        commit = asyncio.ensure_future(committer.commit(_end(execution_id)))
        await _until(lambda: gate.calls == 1)  # the commit leads; its call is held
        start = asyncio.ensure_future(life.start("Machine", {"n": 1}, name="s1"))
        await anyio.wait_all_tasks_blocked()
        assert gate.calls == 1  # the start joined the commit's call
        commit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await commit
        assert (await start).name == "s1"  # led again, in a call of its own
        assert gate.calls == 2

    anyio.run(main)
    assert (pairs.tried, pairs.joint) == (0, 0)
    assert store.load(execution_id).journal == {}
    assert store.get_execution("s1").input == '{"n":1}'


def test_postgresql_never_pairs(postgres_url: str) -> None:
    """PostgreSQL's starts and commits keep their own connections and calls."""
    store = Store(postgres_url)
    try:
        assert WritePairs.of(store, _in_thread, "commit") is None
        assert WritePairs.of(store, _in_thread, "start") is None
        assert store.write_pairs == {}
    finally:
        store.close()


def _lock_for(path: Path, seconds: float) -> tuple[sqlite3.Connection, threading.Timer]:
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(seconds, lambda: other.execute("ROLLBACK"))
    timer.start()
    return other, timer


def test_a_lock_held_past_one_busy_timeout_fails_no_paired_part_that_alone_would_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alone, a start meets the lock on its raw path, waits again on its careful path and lands.

    Paired, the joint BEGIN's one timeout must not fail it: each part then
    goes its usual way.
    """
    monkeypatch.setenv("STEPWISE_SQLITE_BUSY_TIMEOUT", "0.3")
    path = tmp_path / "locked.db"
    store = Store(f"sqlite:///{path}")
    store.put_state_machine("Machine", json.dumps(PASS), "STANDARD")
    (execution_id,) = claimed(store, 1)
    held: list[Any] = []
    try:
        _, started, pairs = _together(
            store,
            _end(execution_id),
            [({"n": 1}, "s1")],
            opening=lambda: held.extend(_lock_for(path, 0.45)),
        )
        assert not isinstance(started[0], BaseException), started[0]
        assert store.get_execution("s1").name == "s1"
        assert pairs.joint == 0
    finally:
        if held:
            held[1].join()
            held[0].close()
        store.close()


def test_a_start_joined_to_a_leader_cancelled_twice_mid_call_waits_for_its_answer(
    store: Store,
) -> None:
    """asyncio's second cancel ends the leader's store-call wait while the thread still writes."""
    (eid,) = claimed(store, 1)
    threads = StoreThreads(1)

    async def run_db(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return await threads.call(functools.partial(fn, *args, **kwargs))

    async def main() -> None:
        committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=run_db)
        life = Lifecycle(store=store, clock=SystemClock(), run_db=run_db)
        pairs = WritePairs.of(store, run_db, "commit")
        assert pairs is not None and pairs.paired
        inside, go, blocker = threading.Event(), threading.Event(), threading.Event()
        real = pairs._start_and_commit

        def slow(*args: Any, **kwargs: Any) -> Any:  # the joint transaction, taking a while
            inside.set()
            go.wait()
            return real(*args, **kwargs)

        pairs._start_and_commit = slow
        busy = asyncio.ensure_future(run_db(blocker.wait))  # the one store thread busy
        await asyncio.sleep(0.05)
        commit = asyncio.ensure_future(committer.commit(_end(eid)))  # leads; its call queued
        await asyncio.sleep(0.05)
        start = asyncio.ensure_future(life.start("Machine", {"n": 1}, name="s1"))  # joins
        await asyncio.sleep(0.05)
        blocker.set()
        await busy
        while not inside.is_set():
            await asyncio.sleep(0.001)
        commit.cancel()
        await asyncio.sleep(0.01)
        commit.cancel()
        await asyncio.sleep(0.05)
        early = start.done()
        go.set()
        answer = (await asyncio.gather(start, return_exceptions=True))[0]
        await asyncio.gather(commit, return_exceptions=True)
        threads.close()
        assert not early, answer  # not answered before the thread wrote it
        assert not isinstance(answer, BaseException), answer
        assert store.get_execution("s1").name == "s1"

    asyncio.run(main())


def test_a_start_by_version_never_pairs(tmp_path: Path) -> None:
    """A qualified start goes to the careful path: a joint transaction would only roll back."""

    async def main() -> None:
        async with Engine(f"sqlite:///{tmp_path / 'engine.db'}") as engine:
            await engine.create_state_machine("chain", PASS)
            await engine.publish_version("chain")
            records = [await engine.start("chain:1", {"n": n}) for n in range(10)]
            for record in records:
                assert (await engine.wait(record)).status == ExecutionStatus.SUCCEEDED
            assert engine._runtime is not None
            pairs = engine._runtime.committer._pairs
            assert pairs is not None and pairs.tried == 0

    anyio.run(main)
