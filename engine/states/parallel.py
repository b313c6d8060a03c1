"""Parallel: run every branch on the same input; the result is the array of branch outputs.

The first failing branch aborts the others and the state fails with that
branch's own error (AWS does not wrap it in States.BranchFailed). A retry
runs every branch again under a new attempt number.
"""

from __future__ import annotations

from typing import Any

from engine import keys
from engine.states.children import Child, run_children
from engine.states.common import finish_result, task_input
from engine.states.recovery import with_recovery
from engine.walk import Frame, Transition, enter
from statemachine.model import ParallelState

__all__ = ["run_parallel"]


async def run_parallel(frame: Frame, state: ParallelState) -> Transition:
    enter(frame, input_payload=frame.input)

    async def attempt(number: int) -> tuple[Any, dict[str, Any] | None]:
        with frame.evaluating():
            effective = await task_input(frame, state)
        frame.record_once(
            keys.parallel_started(frame.key, number),
            lambda: (None, [("ParallelStateStarted", {})]),
            thread=frame.thread,
        )
        children = [
            Child(
                scope=branch, input=effective, prefix=keys.branch_prefix(frame.key, number, index)
            )
            for index, branch in enumerate(state.branches)
        ]
        outcome = await run_children(frame, children)
        with frame.evaluating():
            return await finish_result(frame, outcome.outputs)

    return await with_recovery(frame, state, attempt)
