"""Per-state plans (`engine/states/plans.py`): made once per state object, and what they skip."""

from __future__ import annotations

from typing import Any

import pytest

from engine.states.plans import Plans, choice_plan, pass_plan, task_plan
from statemachine.build import load
from statemachine.model import ChoiceState, PassState, TaskState


def _state(definition_state: dict[str, Any], name: str = "S") -> Any:
    machine = load({"StartAt": name, "States": {name: definition_state}})
    return machine.states[name]


def _pass(**fields: Any) -> PassState:
    state = _state({"Type": "Pass", "End": True, **fields})
    assert isinstance(state, PassState)
    return state


def _choice(rule: dict[str, Any], **fields: Any) -> ChoiceState:
    machine = load(
        {
            "StartAt": "C",
            "States": {
                "C": {"Type": "Choice", "Choices": [{**rule, "Next": "E"}], **fields},
                "E": {"Type": "Succeed"},
            },
        }
    )
    state = machine.states["C"]
    assert isinstance(state, ChoiceState)
    return state


def test_a_plan_is_made_once_per_state_and_not_shared_with_another_definition() -> None:
    made: list[PassState] = []

    def make(state: PassState) -> int:
        made.append(state)
        return len(made)

    plans: Plans[PassState, int] = Plans(make)
    first = _pass(Parameters={"v.$": "$.v"})
    other = _pass(Parameters={"v.$": "$.v"})  # the same definition, loaded again
    assert first == other and first is not other
    assert plans.of(first) == 1
    assert plans.of(first) == 1
    assert plans.of(other) == 2
    assert plans.of(first) == 1
    assert made == [first, other]


def test_a_full_cache_forgets_the_least_recently_visited_states_and_keeps_the_hot_ones() -> None:
    made: list[str] = []

    def make(state: PassState) -> str:
        made.append(state.name)
        return state.name

    plans: Plans[PassState, str] = Plans(make, remembered=2)
    a, b, c, d, e = (_state({"Type": "Pass", "End": True}, name) for name in "ABCDE")
    assert [plans.of(a), plans.of(b), plans.of(a), plans.of(c)] == ["A", "B", "A", "C"]
    assert [plans.of(a), plans.of(d)] == ["A", "D"]  # A, visited again, stays
    assert [plans.of(a), plans.of(e)] == ["A", "E"]
    assert made == ["A", "B", "C", "D", "E"]  # the hot A was made once, through two turn-overs
    assert plans.of(b) == "B"  # B, not visited since, was forgotten: made again
    assert plans.of(a) == "A"
    assert made == ["A", "B", "C", "D", "E", "B"]


def test_a_pass_of_parameters_only_is_direct() -> None:
    plan = pass_plan(_pass(Parameters={"v.$": "States.MathAdd($.v, 1)"}))
    assert plan.direct and plan.template is not None and plan.next is None
    assert pass_plan(_pass(Result={"a": 1})).template is None
    assert pass_plan(_pass()).direct


@pytest.mark.parametrize(
    "fields",
    [
        {"InputPath": "$.a"},
        {"InputPath": None},
        {"ResultPath": "$.r"},
        {"ResultPath": None},
        {"OutputPath": "$.o"},
        {"OutputPath": None},
        {"Assign": {"x": 1}},
        {"QueryLanguage": "JSONata", "Output": "{% $states.input %}"},
    ],
)
def test_a_pass_with_another_step_is_not_direct(fields: dict[str, Any]) -> None:
    assert not pass_plan(_pass(**fields)).direct


def test_a_template_reads_the_context_or_variables_only_when_its_paths_do() -> None:
    plain = _pass(Parameters={"v.$": "States.MathAdd($.v, 1)"}).parameters
    assert plain is not None and not plain.reads_context and not plain.reads_variables
    context = _pass(Parameters={"id.$": "$$.Execution.Id"}).parameters
    assert context is not None and context.reads_context and not context.reads_variables
    variable = _pass(Parameters={"n": [{"v.$": "States.MathAdd($x, 1)"}]}).parameters
    assert variable is not None and variable.reads_variables and not variable.reads_context


def test_a_choice_plan_knows_its_steps_and_what_its_rules_read() -> None:
    plain = choice_plan(_choice({"Variable": "$.v", "NumericGreaterThanEquals": 0}))
    assert plain.whole_input and plain.whole_output
    assert not plain.reads_context and not plain.reads_variables
    assert [(next_state, assign) for _, next_state, assign in plain.rules] == [("E", None)]
    assert plain.rules[0][0]({"v": 1}, {}, {}) is True
    shaped = choice_plan(
        _choice({"Variable": "$$.Execution.Name", "StringEqualsPath": "$x"}, InputPath="$.a")
    )
    assert not shaped.whole_input and shaped.whole_output
    assert shaped.reads_context and shaped.reads_variables


def _task(**fields: Any) -> TaskState:
    state = _state({"Type": "Task", "Resource": "r", "End": True, **fields})
    assert isinstance(state, TaskState)
    return state


def test_a_task_without_steps_passes_its_input_and_result_as_they_are() -> None:
    plan = task_plan(_task())
    assert plan.whole_input and plan.whole_result


@pytest.mark.parametrize(
    ("fields", "whole_input", "whole_result"),
    [
        ({"InputPath": "$.a"}, False, True),
        ({"Parameters": {"a.$": "$.a"}}, False, True),
        ({"TimeoutSeconds": 5}, False, True),
        ({"HeartbeatSeconds": 5}, False, True),
        ({"ResultSelector": {"a.$": "$.a"}}, True, False),
        ({"ResultPath": "$.r"}, True, False),
        ({"ResultPath": None}, True, False),
        ({"OutputPath": "$.o"}, True, False),
        ({"Assign": {"x": 1}}, True, False),
        ({"QueryLanguage": "JSONata"}, False, False),
    ],
)
def test_a_task_step_is_skipped_only_when_it_is_absent(
    fields: dict[str, Any], whole_input: bool, whole_result: bool
) -> None:
    plan = task_plan(_task(**fields))
    assert (plan.whole_input, plan.whole_result) == (whole_input, whole_result)


def _chain(count: int) -> list[PassState]:
    machine = load(
        {
            "StartAt": "S0",
            "States": {
                f"S{i}": {
                    "Type": "Pass",
                    **({"Next": f"S{i + 1}"} if i + 1 < count else {"End": True}),
                }
                for i in range(count)
            },
        }
    )
    return [machine.states[f"S{i}"] for i in range(count)]  # type: ignore[misc]


@pytest.mark.parametrize("hot", [1000, 4000])
def test_a_hot_set_within_what_the_cache_remembers_is_made_once(hot: int) -> None:
    """States visited in turn, as many as the engine's cache remembers (4,096) or fewer."""
    made = 0

    def make(state: PassState) -> str:
        nonlocal made
        made += 1
        return state.name

    plans: Plans[PassState, str] = Plans(make)
    states = _chain(hot)
    for _ in range(5):
        for state in states:
            plans.of(state)
    assert made == hot  # none thrown away while it stays hot
