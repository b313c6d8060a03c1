"""`Walk.durable`: sibling children's checkpoints gather into one, and share its fate.

The checkpoint hook here is the runner's contract in small: it drains the
journal and commits what it drained (or refuses, as a lost lease does).
While several children walk, the first to ask yields once; whoever recorded
meanwhile joins, returns only once that one checkpoint has succeeded, and
raises its error when it failed; a step recorded after the drain is in a
checkpoint of its own. With one child walking, each asks alone.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import anyio
import pytest

from activities import Registry
from engine.clock import SystemClock
from engine.journal import Journal
from engine.states import run_state
from engine.store import LeaseLost
from engine.walk import Services, Walk
from statemachine import load

MACHINE = load({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}})


class Hook:
    """Drains the journal like the runner's checkpoint; fails when `refuse` is set."""

    def __init__(self, journal: Journal, refuse: bool = False) -> None:
        self.journal = journal
        self.refuse = refuse
        self.commits: list[list[str]] = []
        self.drained = anyio.Event()  # set once a checkpoint has drained the journal
        # One commit at a time, in the order asked, as the runner's committer does.
        self._turn = anyio.Lock()

    async def __call__(self) -> None:
        async with self._turn:
            rows, _events = self.journal.drain()
            self.drained.set()
            await anyio.sleep(0.01)  # the commit's round trip
            if self.refuse:
                raise LeaseLost("lease lost at commit")
            self.commits.append([key for key, _ in rows])


def _walk(refuse: bool = False) -> tuple[Walk, Hook]:
    clock = SystemClock()
    journal = Journal("e", {}, last_event_id=1, clock=clock)
    hook = Hook(journal, refuse)
    services = Services(
        store=None,  # type: ignore[arg-type]  # these walks read no store
        run_db=None,  # type: ignore[arg-type]
        committer=None,  # type: ignore[arg-type]
        clock=clock,
        registry=Registry(),
        worker_id="w",
        run_state=run_state,
    )
    walk = Walk(
        machine=MACHINE,
        journal=journal,
        services=services,
        execution_id="e",
        execution_name="e",
        machine_id="m",
        machine_name="m",
        execution_input={},
        start_time=datetime.now(UTC),
        checkpoint=hook,
        random_source=random.random,
    )
    return walk, hook


async def _children(walk: Walk, names: list[str], outcome: dict[str, str]) -> None:
    walk.children_running = len(names)

    async def child(name: str) -> None:
        walk.journal.record(name, name)
        try:
            await walk.durable()
        except LeaseLost:
            outcome[name] = "lease lost"
            return
        committed = {key for keys in hook_commits(walk) for key in keys}
        outcome[name] = "durable" if name in committed else "not durable"

    async with anyio.create_task_group() as group:
        for name in names:
            group.start_soon(child, name)


def hook_commits(walk: Walk) -> list[list[str]]:
    hook = walk.checkpoint
    assert isinstance(hook, Hook)
    return hook.commits


@pytest.mark.anyio
async def test_siblings_checkpoints_gather_into_one_and_each_returns_once_it_is_durable() -> None:
    walk, hook = _walk()
    outcome: dict[str, str] = {}
    await _children(walk, ["a", "b", "c"], outcome)
    assert [sorted(keys) for keys in hook.commits] == [["a", "b", "c"]]  # trio shuffles
    assert outcome == {"a": "durable", "b": "durable", "c": "durable"}


@pytest.mark.anyio
async def test_every_joiner_raises_the_gathered_checkpoints_error() -> None:
    walk, _hook = _walk(refuse=True)
    outcome: dict[str, str] = {}
    await _children(walk, ["a", "b", "c"], outcome)
    assert outcome == {"a": "lease lost", "b": "lease lost", "c": "lease lost"}


@pytest.mark.anyio
async def test_a_step_recorded_after_the_drain_gets_a_checkpoint_of_its_own() -> None:
    walk, hook = _walk()
    walk.children_running = 2
    late: list[str] = []

    async def first() -> None:
        walk.journal.record("a", 1)
        await walk.durable()

    async def second() -> None:
        await hook.drained.wait()  # after the first checkpoint drained, before it committed
        walk.journal.record("b", 2)
        await walk.durable()
        late.append("b")

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        group.start_soon(second)
    assert hook.commits == [["a"], ["b"]]
    assert late == ["b"]


@pytest.mark.anyio
async def test_a_lone_child_checkpoints_without_waiting_for_siblings() -> None:
    walk, hook = _walk()
    walk.children_running = 1
    walk.journal.record("a", 1)
    await walk.durable()
    assert hook.commits == [["a"]]


@pytest.mark.anyio
async def test_a_walk_cancelled_as_a_sibling_gathers_commits_no_abort_rows() -> None:
    # A worker stopping while one iteration is ready to checkpoint and a
    # sibling waits on a long call: the sibling records its abort as it
    # unwinds (as `_record_aborted` does). Those rows must not ride a
    # commit — they go with the runner's finish or vanish with the stop —
    # so the gathering sibling, cancelled in its yield, commits nothing.
    walk, hook = _walk()
    walk.children_running = 2
    ready = anyio.Event()

    async def scheduling() -> None:
        await ready.wait()
        walk.journal.record("i0/1:t0:s", "scheduled")
        await walk.durable()

    async def waiting() -> None:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            walk.journal.record("i1/0:aborted", "TaskStateAborted")
            raise

    async with anyio.create_task_group() as group:
        group.start_soon(scheduling)
        group.start_soon(waiting)
        await anyio.sleep(0.05)
        ready.set()  # the iteration is ready to run ...
        group.cancel_scope.cancel()  # ... as the worker stops
    assert all("i1/0:aborted" not in keys for keys in hook.commits), hook.commits


@pytest.mark.anyio
async def test_joiners_of_an_abandoned_gathering_checkpoint_again() -> None:
    # The first sibling to ask is cancelled alone (its own scope) before it
    # drained anything: the siblings that joined it are not cancelled, so
    # they checkpoint again and return only once their rows are durable.
    walk, hook = _walk()
    walk.children_running = 3
    outcome: dict[str, str] = {}

    scope = anyio.CancelScope()
    gathering = anyio.Event()

    async def first() -> None:
        with scope:
            walk.journal.record("a", 1)
            gathering.set()
            await walk.durable()  # yields: the joiners join, then the cancel lands
        outcome["a"] = "cancelled"

    async def joiner(name: str) -> None:
        await gathering.wait()
        walk.journal.record(name, name)
        if name == "b":
            scope.cancel()  # lands when the first sibling's yield ends
        await walk.durable()
        committed = {key for keys in hook.commits for key in keys}
        outcome[name] = "durable" if name in committed else "not durable"

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        group.start_soon(joiner, "b")
        group.start_soon(joiner, "c")
    assert outcome == {"a": "cancelled", "b": "durable", "c": "durable"}
    # The rows were committed by a joiner's own gathering, once.
    assert sorted(key for keys in hook.commits for key in keys) == ["a", "b", "c"]


class _Ended(BaseException):
    """A non-Exception ending a task (as an interrupt would), not an error of the commit."""


class _LosingHook(Hook):
    """Drains, then loses the first commit's outcome to `ending` (the gatherer's own end)."""

    def __init__(self, journal: Journal, ending: BaseException) -> None:
        super().__init__(journal)
        self.ending: BaseException | None = ending

    async def __call__(self) -> None:
        if self.ending is None:
            await super().__call__()
            return
        ending, self.ending = self.ending, None
        self.journal.drain()
        await anyio.sleep(0.01)
        raise ending


async def _gather_losing(ending: BaseException) -> tuple[dict[str, str], _LosingHook]:
    """Three children checkpoint at once; the gatherer's commit ends with `ending`.

    Each child's outcome: "ended" (it left with `ending`'s class), else
    whether its row is durable when its checkpoint returned.
    """
    walk, plain = _walk()
    hook = _LosingHook(plain.journal, ending)
    walk.checkpoint = hook
    walk.children_running = 3
    outcome: dict[str, str] = {}

    async def child(name: str) -> None:
        walk.journal.record(name, name)
        try:
            await walk.durable()
        except type(ending):
            outcome[name] = "ended"
            return
        committed = {key for keys in hook.commits for key in keys}
        outcome[name] = "durable" if name in committed else "not durable"

    async with anyio.create_task_group() as group:
        for name in ["a", "b", "c"]:
            group.start_soon(child, name)
    return outcome, hook


@pytest.mark.anyio
async def test_joiners_of_a_gatherer_ended_mid_commit_checkpoint_their_rows_again() -> None:
    # The gatherer's commit outcome is lost with its own end (not an error of
    # the commit): the joiners neither report an outage nor go on as if their
    # rows were durable; the rows are put back and committed again.
    outcome, hook = await _gather_losing(_Ended())
    assert sorted(outcome.values()) == ["durable", "durable", "ended"]  # the gatherer ended
    # Every row, the gatherer's included, is committed again, once.
    assert sorted(key for keys in hook.commits for key in keys) == ["a", "b", "c"]


@pytest.mark.anyio
async def test_a_gatherer_cancelled_mid_commit_propagates_its_cancellation() -> None:
    # asyncio's own Task.cancel (no cancel scope's, which the shield holds back)
    # ending the gatherer mid-commit: it leaves as a cancellation, never as
    # a store outage, and the joiners checkpoint their rows again.
    import asyncio

    outcome, hook = await _gather_losing(asyncio.CancelledError())
    assert sorted(outcome.values()) == ["durable", "durable", "ended"]  # the gatherer cancelled
    assert sorted(key for keys in hook.commits for key in keys) == ["a", "b", "c"]
