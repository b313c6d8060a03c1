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
from engine.states.plans import PassPlan, Plans, pass_plan
from engine.walk import FinalError, Frame, Transition, enter
from statemachine.errors import StatesError
from statemachine.model import PassState

__all__ = ["run_pass"]

_PLANS: Plans[PassState, PassPlan] = Plans(pass_plan)


async def run_pass(frame: Frame, state: PassState) -> Transition:
    enter(frame, input_payload=frame.input)
    plan = _PLANS.of(state)
    if plan.direct:  # JSONPath, no step but Parameters or Result: the common Pass
        return exit_state(
            frame, Transition(_direct_output(frame, state, plan), plan.next), pure=True
        )
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


def _direct_output(frame: Frame, state: PassState, plan: PassPlan) -> object:
    """A direct Pass's output: its Result, its Parameters evaluated, or its input."""
    if state.has_result:
        return state.result
    template = plan.template
    if template is None:
        return frame.input
    try:
        return payload_template(frame, template, frame.input)
    except StatesError as error:  # as `Frame.evaluating` words it
        if isinstance(error, FinalError):
            raise
        raise frame.prefix(error) from None
