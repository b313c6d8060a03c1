"""Running Parallel branches and Map iterations as tasks of one group (`childtasks`).

Each child walks its own scope with its own line of events and its own
variable scope (reading the parent's). A child's end is journaled with its
output, so a replay skips finished children entirely. A child that must
wait long suspends without disturbing its siblings: once every child has
finished or suspended, the parent suspends until the earliest wake-up. The
first child failure cancels the others (AWS's fail-fast), unless the
caller tolerates failures (Distributed Map). The children launched and
not yet ended are counted on the walk (`Walk.children_running`), so that
their checkpoints gather into one commit (`Walk.durable`).

In a redriven Parallel or Map (`Frame.previous_keys`), a child that ended
in the last attempt of an older generation is not run again: its recorded
output is reused; a child that failed or was aborted there runs again,
replaying what it had finished (`_older_prefixes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from engine import keys
from engine.journal import MISSING, Suspend, Thread
from engine.states.childtasks import ChildTaskGroup, child_task_group
from engine.walk import FinalError, Frame, Variables, final, run_scope
from statemachine.errors import StatesError
from statemachine.model import Scope

__all__ = ["Child", "ChildOutcome", "run_children"]


@dataclass(slots=True)
class Child:
    """One Parallel branch or Map iteration: its scope, its input and its key prefix.

    A Map iteration names its Map (`map_name`) and its `index`: it has
    AWS's MapIteration* events around it (a Parallel branch has none),
    built only when recorded (`event`).
    """

    scope: Scope
    input: Any
    prefix: str
    map_name: str | None = None
    index: int = 0

    def event(self, outcome: str) -> tuple[str, dict[str, Any]] | None:
        """The iteration's ``MapIteration<outcome>`` event (None for a Parallel branch)."""
        if self.map_name is None:
            return None
        return (f"MapIteration{outcome}", {"name": self.map_name, "index": self.index})


@dataclass
class ChildOutcome:
    outputs: list[Any]
    failures: list[tuple[int, FinalError]] = field(default_factory=list)


def _abort_failed_task(raised: StatesError) -> None:
    """AWS's TaskStateAborted for a Task whose failure ended this branch or iteration.

    Recorded by AWS after the TaskFailed (a Parallel then writes
    ParallelStateFailed; a Map iteration writes it after MapIterationFailed).
    """
    task: Frame | None = getattr(raised, "failed_task", None)
    if task is None or keys.aborted(task.key) in task.walk.journal:
        return
    task.record_once(
        keys.aborted(task.key), lambda: (None, [("TaskStateAborted", {})]), thread=task.thread
    )


def _last_attempt(frame: Frame, old_key: str) -> int | None:
    """The last Parallel or Map attempt the frame made under `old_key` (None: none)."""
    journal = frame.walk.journal
    last = None
    number = 0
    while (
        keys.parallel_started(old_key, number) in journal
        or keys.map_started(old_key, number) in journal
    ):
        last = number
        number += 1
    return last


def _older_prefixes(frame: Frame, prefix: str) -> list[str]:
    """The child's prefixes in the last attempts of older generations, newest first."""
    older = []
    for old_key in frame.previous_keys:
        attempt = _last_attempt(frame, old_key)
        if attempt is not None:
            older.append(keys.rebase_child(prefix, frame.key, old_key, attempt))
    return older


async def run_children(
    frame: Frame,
    children: Sequence[Child],
    *,
    max_concurrency: int = 0,
    tolerate: Callable[[int], bool] | None = None,
) -> ChildOutcome:
    """Run every child; raise the first failure (or Suspend), unless `tolerate(failures)`."""
    walk = frame.walk
    outputs: list[Any] = [None] * len(children)
    failures: list[tuple[int, FinalError]] = []
    suspended: list[Suspend] = []
    limiter = anyio.CapacityLimiter(max_concurrency) if max_concurrency > 0 else None
    running: set[int] = set()

    # Children launched and not yet ended, counted on the walk too, so that
    # their checkpoints gather into one commit (`Walk.durable`).
    launched = ended = 0
    journal = walk.journal
    name = frame.state.name

    async def one(index: int, child: Child, group: ChildTaskGroup, slot: object | None) -> None:
        # One coroutine (one frame) a child: the child's end is replayed or
        # recorded here (`Journal.record_once_async` spelled out), its walk
        # inline; a failure is recorded under its own key.
        nonlocal ended
        try:
            failed = frame.replay(keys.child_failed(child.prefix), frame.thread)
            if failed is not MISSING:
                failures.append((index, FinalError(failed["error"], failed.get("cause"))))
                return
            ended_key = keys.child_ended(child.prefix)
            older = _older_prefixes(frame, child.prefix) if frame.previous_keys else []
            if older and ended_key not in journal:
                for prefix in older:
                    reused = frame.replay(keys.child_ended(prefix))
                    if reused is not MISSING:
                        outputs[index] = reused
                        return
            recorded = journal.replay(ended_key, frame.thread, state=name)
            if recorded is not MISSING:
                outputs[index] = recorded
                return
            thread = Thread(frame.thread.last_event_id)
            try:
                started = child.event("Started")
                if started is not None:  # `record_once` spelled out: no closure a child
                    started_key = keys.child_started(child.prefix)
                    if journal.replay(started_key, thread, state=name) is MISSING:
                        journal.record(
                            started_key, None, thread=thread, events=[started], state=name
                        )
                running.add(index)
                try:
                    output = await run_scope(
                        walk,
                        child.scope,
                        child.input,
                        prefix=child.prefix,
                        thread=thread,
                        variables=Variables(frame.variables),
                        previous=older,
                    )
                except anyio.get_cancelled_exc_class():
                    raise  # still running when a sibling's failure cancelled it: aborted below
                except BaseException:
                    running.discard(index)
                    raise
                running.discard(index)
                succeeded = child.event("Succeeded")
                outputs[index] = journal.record(
                    ended_key,
                    output,
                    thread=thread,
                    events=[succeeded] if succeeded is not None else (),
                    state=name,
                )
            except Suspend as signal:
                suspended.append(signal)
            except StatesError as raised:
                error = final(raised)
                failures.append((index, error))
                failed_event = child.event("Failed")
                frame.record(
                    keys.child_failed(child.prefix),
                    {"error": error.error, "cause": error.cause},
                    thread=thread,
                    events=[failed_event] if failed_event is not None else (),
                )
                _abort_failed_task(raised)
                if tolerate is None or not tolerate(len(failures)):
                    group.cancel_scope.cancel()
        finally:
            ended += 1
            walk.children_running -= 1
            if slot is not None:
                assert limiter is not None
                limiter.release_on_behalf_of(slot)

    try:
        async with child_task_group() as group:
            for index, child in enumerate(children):
                if limiter is None:
                    launched += 1
                    walk.children_running += 1
                    group.spawn(one, index, child, group, None)
                    continue
                # The slot is taken here, in item order, before the child starts:
                # the scheduler's order of new tasks is not the items' order (trio
                # randomises it), and AWS starts iterations in order under
                # MaxConcurrency. A failure cancels this loop, so no later child starts.
                slot = object()
                await limiter.acquire_on_behalf_of(slot)
                if group.cancel_scope.cancel_called:
                    limiter.release_on_behalf_of(slot)
                    break
                launched += 1
                walk.children_running += 1
                group.spawn(one, index, child, group, slot)
    finally:
        # A child cancelled before it began never counted itself out.
        walk.children_running -= launched - ended

    if failures and (tolerate is None or not tolerate(len(failures))):
        for index in sorted(running):
            aborted = children[index].event("Aborted")
            if aborted is not None:
                frame.record_once(
                    keys.child_aborted(children[index].prefix),
                    lambda aborted=aborted: (None, [aborted]),  # type: ignore[misc]
                    thread=frame.thread,
                )
        raise failures[0][1]
    if suspended:
        raise Suspend.earliest(suspended)
    return ChildOutcome(outputs=outputs, failures=failures)
