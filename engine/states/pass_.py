"""Pass: pass input to output, optionally injecting a fixed Result or reshaping with Parameters."""

from __future__ import annotations

from engine.states.common import (
    effective_input,
    evaluate_assign,
    exit_state,
    jsonata,
    merge_result,
    output_path,
    payload_template,
)
from engine.walk import Frame, Transition, enter
from statemachine.model import PassState

__all__ = ["run_pass"]


async def run_pass(frame: Frame, state: PassState) -> Transition:
    enter(frame, input_payload=frame.input)
    with frame.evaluating():
        if state.jsonata:
            assigned = await evaluate_assign(frame, state.assign, dollar=frame.input)
            output = (
                frame.input
                if state.output is None
                else await jsonata(frame, state.output, "Output")
            )
        else:
            effective = effective_input(frame)
            if state.has_result:
                result = state.result
            else:
                result = payload_template(frame, state.parameters, effective)
            assigned = (
                None
                if state.assign is None  # no coroutine to await: the common case
                else await evaluate_assign(frame, state.assign, dollar=result)
            )
            output = output_path(frame, merge_result(frame, result))
    # JSONata may leave the loop (a regex, a slow expression runs in a thread),
    # and a Parallel sibling's handler may change a shared input meanwhile:
    # only a JSONPath Pass, which never awaits, reuses its entered text.
    return exit_state(
        frame,
        Transition(output, None if state.end else state.next, assigned),
        pure=not state.jsonata,
    )
