"""Succeed: end the execution, branch or iteration successfully with the (filtered) input."""

from __future__ import annotations

from engine.states.common import effective_input, exit_state, jsonata, output_path
from engine.walk import Frame, Transition, enter
from statemachine.model import SucceedState

__all__ = ["run_succeed"]


async def run_succeed(frame: Frame, state: SucceedState) -> Transition:
    enter(frame, input_payload=frame.input)
    with frame.evaluating():
        if state.jsonata:
            output = (
                frame.input
                if state.output is None
                else await jsonata(frame, state.output, "Output")
            )
        else:
            output = output_path(frame, effective_input(frame))
    return exit_state(frame, Transition(output, None))
