"""Choice: take the first rule that matches, else Default, else States.NoChoiceMatched.

JSONPath rules test the effective input; JSONata rules evaluate a
Condition that must be a boolean. The matched rule's Assign (and, JSONata,
its Output) applies; the state-level Assign and Output apply on the
Default path.
"""

from __future__ import annotations

from typing import Any

from engine.states.common import (
    effective_input,
    evaluate_assign,
    exit_state,
    jsonata,
    jsonata_typed,
    output_path,
)
from engine.walk import Frame, Transition, enter
from statemachine.choice import evaluate_rule
from statemachine.errors import States, StatesError
from statemachine.jsonata import JsonataTemplate
from statemachine.model import ChoiceState

__all__ = ["run_choice"]


async def _condition(frame: Frame, condition: JsonataTemplate) -> bool:
    return bool(await jsonata_typed(frame, condition, "Condition", "boolean"))


async def run_choice(frame: Frame, state: ChoiceState) -> Transition:
    enter(frame, input_payload=frame.input)
    with frame.evaluating():
        effective = effective_input(frame)
        context = frame.path_context()
        variables = frame.variables.visible()
        jsonata_rules = state.jsonata
        for index, rule in enumerate(state.choices):
            if jsonata_rules:
                condition = state.conditions[index]
                matched = condition is not None and await _condition(frame, condition)
            else:
                matched = evaluate_rule(rule, effective, context, variables)
            if matched:
                target: str = rule.next  # type: ignore[assignment]
                rule_assign = state.rule_assigns[index]
                assigned = (
                    None
                    if rule_assign is None  # no coroutine to await: the common case
                    else await evaluate_assign(frame, rule_assign, dollar=effective)
                )
                output: Any
                if jsonata_rules:
                    rule_output = state.rule_outputs[index]
                    output = (
                        frame.input
                        if rule_output is None
                        else await jsonata(frame, rule_output, "Output")
                    )
                else:
                    output = output_path(frame, effective)
                return exit_state(
                    frame, Transition(output, target, assigned), pure=not jsonata_rules
                )
        if state.default is None:
            raise StatesError(States.NO_CHOICE_MATCHED, "No Matches!")
        assigned = await evaluate_assign(frame, state.assign, dollar=effective)
        if state.jsonata:
            output = (
                frame.input
                if state.output is None
                else await jsonata(frame, state.output, "Output")
            )
        else:
            output = output_path(frame, effective)
    # JSONata may leave the loop (a regex, a slow expression runs in a thread):
    # the input can change meanwhile, so its entered text is not reused.
    return exit_state(frame, Transition(output, state.default, assigned), pure=not state.jsonata)
