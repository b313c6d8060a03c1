"""The journal key grammar: every key a walk records under is built here, and only here.

A key is the position of a step through branches, iterations and attempts.
The n-th state visited in a scope has the frame key ``<scope prefix><n>``; a
Parallel branch's scope prefix is ``<frame key>.a<attempt>.b<branch>/`` and a
Map iteration's ``<frame key>.a<attempt>.i<index>/``. A frame's records hang
off its key with a suffix (``:in``, ``:out``, ``:t<attempt>:r`` …), a
child's off its prefix (``start``, ``end``, ``failed``, ``aborted``). The
strings are the on-disk format of every recorded execution: changing one
breaks the replay of executions recorded before the change, so each
function here must keep producing exactly the same text.

A redrive starts a new generation: its top-level scope prefix is
``r<count>/`` (`redrive_prefix`; the first run's is empty, so its keys are
unchanged), and a redriven child's prefix hangs off the new frame key, so a
redriven step never writes under an older generation's key. The walk finds
what an older generation finished by looking under its keys
(`redrive_prefix`, `rebase_child`), and replays it instead of running it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "EXECUTION_END",
    "aborted",
    "activity_polled",
    "activity_registered",
    "activity_started",
    "attempt",
    "branch_prefix",
    "callback_answer",
    "child_aborted",
    "child_ended",
    "child_failed",
    "child_started",
    "entered",
    "execution_end",
    "exited",
    "idempotency_key",
    "is_map_run",
    "iteration_prefix",
    "map_failed",
    "map_items",
    "map_results",
    "map_run",
    "map_run_end",
    "map_started",
    "map_succeeded",
    "mock_use",
    "nondeterministic",
    "parallel_failed",
    "parallel_started",
    "rebase_child",
    "redrive_prefix",
    "redriven",
    "retry_timer",
    "step",
    "task_result",
    "task_started",
    "task_submitted",
    "task_token",
    "wait_due",
]

EXECUTION_END: Final = "execution:end"


def execution_end(redrive_count: int) -> str:
    """The execution's end in one generation (EXECUTION_END before any redrive)."""
    return EXECUTION_END if redrive_count == 0 else f"{EXECUTION_END}:r{redrive_count}"


def redriven(redrive_count: int) -> str:
    """The record of the `redrive_count`-th redrive (its ExecutionRedriven event's id)."""
    return f"redrive:r{redrive_count}"


def redrive_prefix(redrive_count: int) -> str:
    """The top-level scope prefix of generation `redrive_count` (empty for the first run)."""
    return "" if redrive_count == 0 else f"r{redrive_count}/"


# -- frames: one visit of one state ------------------------------------------------


def step(prefix: str, number: int) -> str:
    """The frame key of the `number`-th state visited in the scope at `prefix`."""
    return f"{prefix}{number}"


def entered(frame: str) -> str:
    """The state's entry (entered time; the ...StateEntered event)."""
    return f"{frame}:in"


def exited(frame: str) -> str:
    """The state's exit (output, next, assignments; the ...StateExited event)."""
    return f"{frame}:out"


def aborted(frame: str) -> str:
    """A state cancelled mid-flight (the ...StateAborted event)."""
    return f"{frame}:aborted"


def nondeterministic(frame: str, number: int, kind: str) -> str:
    """The frame's `number`-th draw of `kind` (uuid, random, now, evalfail)."""
    return f"{frame}:nd{number}:{kind}"


def retry_timer(frame: str, attempt_number: int) -> str:
    """The due time of the backoff after attempt `attempt_number` failed."""
    return f"{frame}:retry{attempt_number}"


def wait_due(frame: str) -> str:
    """A Wait state's due time."""
    return f"{frame}:wait"


# -- children: Parallel branches and Map iterations ---------------------------------


def branch_prefix(frame: str, attempt_number: int, branch: int) -> str:
    """The scope prefix of a Parallel branch in one attempt."""
    return f"{frame}.a{attempt_number}.b{branch}/"


def iteration_prefix(frame: str, attempt_number: int, index: int) -> str:
    """The scope prefix of a Map iteration in one attempt."""
    return f"{frame}.a{attempt_number}.i{index}/"


def rebase_child(prefix: str, frame: str, old_frame: str, old_attempt: int) -> str:
    """The prefix the child at `prefix` (of `frame`) had in `old_frame`'s attempt `old_attempt`.

    `prefix` is a `branch_prefix` or `iteration_prefix` of `frame`.
    """
    rest = prefix[len(frame) :]  # ".a<attempt>.b<branch>/" or ".a<attempt>.i<index>/"
    child = rest[rest.index(".", 1) :]
    return f"{old_frame}.a{old_attempt}{child}"


def child_started(prefix: str) -> str:
    return f"{prefix}start"


def child_ended(prefix: str) -> str:
    return f"{prefix}end"


def child_failed(prefix: str) -> str:
    return f"{prefix}failed"


def child_aborted(prefix: str) -> str:
    return f"{prefix}aborted"


def parallel_started(frame: str, attempt_number: int) -> str:
    return f"{frame}:p{attempt_number}"


def parallel_failed(frame: str, attempt_number: int) -> str:
    return f"{parallel_started(frame, attempt_number)}:failed"


def map_started(frame: str, attempt_number: int) -> str:
    return f"{frame}:m{attempt_number}"


def map_failed(frame: str, attempt_number: int) -> str:
    return f"{map_started(frame, attempt_number)}:failed"


def map_items(frame: str, attempt_number: int) -> str:
    """The items a Map's ItemReader read for this attempt."""
    return f"{map_started(frame, attempt_number)}:items"


def map_results(frame: str, attempt_number: int) -> str:
    """What a Map's ResultWriter made of its children's results for this attempt."""
    return f"{map_started(frame, attempt_number)}:results"


def map_run(frame: str, attempt_number: int) -> str:
    """A Distributed Map's Map Run for this attempt: its id and ARN (MapRunStarted)."""
    return f"{map_started(frame, attempt_number)}:run"


_MAP_RUN = re.compile(r":m\d+:run$")


def is_map_run(key: str) -> bool:
    """Whether `key` is a `map_run` key: the execution started a Distributed Map's Map Run."""
    return _MAP_RUN.search(key) is not None


def map_run_end(frame: str, attempt_number: int) -> str:
    """How a Distributed Map's Map Run ended (MapRunSucceeded / MapRunFailed)."""
    return f"{map_started(frame, attempt_number)}:runend"


def map_succeeded(frame: str, attempt_number: int) -> str:
    return f"{map_started(frame, attempt_number)}:succeeded"


# -- tasks: one attempt of one Task ---------------------------------------------------


def attempt(frame: str, attempt_number: int) -> str:
    """The key every record of one Task attempt hangs off (also the token row's key stem)."""
    return f"{frame}:t{attempt_number}"


def task_started(attempt_key: str) -> str:
    """The attempt's recorded start (its scheduling events)."""
    return f"{attempt_key}:s"


def task_result(attempt_key: str) -> str:
    """The attempt's outcome."""
    return f"{attempt_key}:r"


def task_token(attempt_key: str) -> str:
    """The attempt's task token (callbacks and activities)."""
    return f"{attempt_key}:token"


def callback_answer(attempt_key: str) -> str:
    """The answer a callback or activity worker sent for the attempt's token."""
    return f"{attempt_key}:cb"


def task_submitted(attempt_key: str) -> str:
    """A `.waitForTaskToken` handler ran (TaskSubmitted)."""
    return f"{attempt_key}:sub"


def activity_registered(attempt_key: str) -> str:
    """The activity task is queued for pollers."""
    return f"{attempt_key}:reg"


def activity_polled(attempt_key: str) -> str:
    """An activity worker took the task (written by the store when it hands it out)."""
    return f"{attempt_key}:polled"


def activity_started(attempt_key: str) -> str:
    """ActivityStarted was recorded for the poll."""
    return f"{attempt_key}:as"


def mock_use(state_name: str, index: int) -> str:
    """The `index`-th canned mock response used for `state_name`."""
    return f"mock:{state_name}:{index}"


def idempotency_key(execution_id: str, frame: str, attempt_number: int) -> str:
    """What a handler sees as its idempotency key (the same for every rerun of an attempt)."""
    return f"{execution_id}/{frame}/{attempt_number}"
