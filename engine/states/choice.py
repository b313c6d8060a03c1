"""Choice: take the first rule that matches, else Default, else States.NoChoiceMatched.

JSONPath rules test the effective input; JSONata rules evaluate a
Condition that must be a boolean. The matched rule's Assign (and, JSONata,
its Output) applies; the state-level Assign and Output apply on the
Default path.
"""

from __future__ import annotations

from engine.states.common import (
    NOTHING,
    effective_input,
    evaluate_assign,
    exit_state,
    jsonata,
    jsonata_typed,
    output_path,
)
from engine.states.plans import ChoicePlan, Plans, choice_plan
from engine.walk import FinalError, Frame, Transition, enter
from statemachine.errors import States, StatesError
from statemachine.jsonata import JsonataTemplate
from statemachine.model import ChoiceState

__all__ = ["run_choice"]

_PLANS: Plans[ChoiceState, ChoicePlan] = Plans(choice_plan)


async def _condition(frame: Frame, condition: JsonataTemplate) -> bool:
    return bool(await jsonata_typed(frame, condition, "Condition", "boolean"))


async def run_choice(frame: Frame, state: ChoiceState) -> Transition:
    enter(frame, input_payload=frame.input)
    if state.jsonata:
        return await _run_jsonata(frame, state)
    plan = _PLANS.of(state)
    try:  # as `Frame.evaluating` words what it raises, without its calls
        effective = frame.input if plan.whole_input else effective_input(frame)
        context = frame.path_context() if plan.reads_context else NOTHING
        variables = frame.variables.visible() if plan.reads_variables else NOTHING
        for test, rule_next, rule_assign in plan.rules:
            if test(effective, context, variables):
                target = rule_next
                assigned = (
                    None
                    if rule_assign is None  # no coroutine to await: the common case
                    else await evaluate_assign(frame, rule_assign, dollar=effective)
                )
                break
        else:
            if state.default is None:
                raise StatesError(States.NO_CHOICE_MATCHED, "No Matches!")
            target = state.default
            assigned = await evaluate_assign(frame, state.assign, dollar=effective)
        output = effective if plan.whole_output else output_path(frame, effective)
    except StatesError as error:
        if isinstance(error, FinalError):
            raise
        raise frame.prefix(error) from None
    return exit_state(frame, Transition(output, target, assigned), pure=True)


async def _run_jsonata(frame: Frame, state: ChoiceState) -> Transition:
    with frame.evaluating():
        for index, condition in enumerate(state.conditions):
            if condition is not None and await _condition(frame, condition):
                target: str = state.choices[index].next  # type: ignore[assignment]
                rule_assign = state.rule_assigns[index]
                assigned = (
                    None
                    if rule_assign is None
                    else await evaluate_assign(frame, rule_assign, dollar=frame.input)
                )
                rule_output = state.rule_outputs[index]
                output = (
                    frame.input
                    if rule_output is None
                    else await jsonata(frame, rule_output, "Output")
                )
                return exit_state(frame, Transition(output, target, assigned))
        if state.default is None:
            raise StatesError(States.NO_CHOICE_MATCHED, "No Matches!")
        assigned = await evaluate_assign(frame, state.assign, dollar=frame.input)
        output = (
            frame.input if state.output is None else await jsonata(frame, state.output, "Output")
        )
    # JSONata may leave the loop (a regex, a slow expression runs in a thread):
    # the input can change meanwhile, so its entered text is not reused.
    return exit_state(frame, Transition(output, state.default, assigned))
