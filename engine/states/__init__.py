"""One module per state type; `run_state` dispatches a frame to its state's module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.states.choice import run_choice
from engine.states.fail import FailStateError, run_fail
from engine.states.map import run_map
from engine.states.parallel import run_parallel
from engine.states.pass_ import run_pass
from engine.states.succeed import run_succeed
from engine.states.task import run_task
from engine.states.wait import run_wait
from engine.walk import Frame, Transition
from statemachine.model import (
    ChoiceState,
    FailState,
    MapState,
    ParallelState,
    PassState,
    SucceedState,
    TaskState,
    WaitState,
)

__all__ = ["FailStateError", "run_state"]


_RUNNERS: dict[type, Callable[[Any, Any], Awaitable[Transition]]] = {
    TaskState: run_task,
    PassState: run_pass,
    ChoiceState: run_choice,
    WaitState: run_wait,
    ParallelState: run_parallel,
    MapState: run_map,
    SucceedState: run_succeed,
    FailState: run_fail,
}


def run_state(frame: Frame) -> Awaitable[Transition]:
    """Run one state visit to its transition (raises StatesError on an uncaught failure).

    Returns the state module's own coroutine, for the walk to await: no
    coroutine of its own a state visit. One lookup by the state's exact
    type; a subclass of a model Struct (none in this code base) finds its
    base's runner by `isinstance`.
    """
    state = frame.state
    runner = _RUNNERS.get(type(state))
    if runner is None:
        for kind, candidate in _RUNNERS.items():
            if isinstance(state, kind):
                runner = candidate
                break
        else:
            raise AssertionError(f"unknown state type {type(state).__name__}")
    return runner(frame, state)
