"""One module per state type; `run_state` dispatches a frame to its state's module."""

from __future__ import annotations

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


async def run_state(frame: Frame) -> Transition:
    """Run one state visit to its transition (raises StatesError on an uncaught failure)."""
    state = frame.state
    if isinstance(state, TaskState):
        return await run_task(frame, state)
    if isinstance(state, PassState):
        return await run_pass(frame, state)
    if isinstance(state, ChoiceState):
        return await run_choice(frame, state)
    if isinstance(state, WaitState):
        return await run_wait(frame, state)
    if isinstance(state, ParallelState):
        return await run_parallel(frame, state)
    if isinstance(state, MapState):
        return await run_map(frame, state)
    if isinstance(state, SucceedState):
        return await run_succeed(frame, state)
    if isinstance(state, FailState):
        return await run_fail(frame, state)
    raise AssertionError(f"unknown state type {type(state).__name__}")
