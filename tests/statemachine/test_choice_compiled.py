"""A Choice rule compiled to a test (`compile_rule_test`) answers as `evaluate_rule` does.

The engine evaluates JSONPath Choice rules through their compiled tests
(`engine/states/plans.py`); these properties pin that the two agree for
any data: the same bool, or the same error and cause.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine.choice import (
    ChoiceRule,
    compile_choice_rule,
    compile_rule_test,
    evaluate_rule,
    rule_paths,
)
from statemachine.errors import StatesError
from statemachine.paths import compile_find, compile_path, find

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**1100), max_value=2**1100)
    | st.floats(allow_nan=False)
    | st.text(max_size=3)
)
numbers = st.integers(min_value=-5, max_value=5) | st.floats(allow_nan=False, width=32)
numbers_or_more = numbers | st.floats() | st.integers() | st.booleans()
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["v", "w", "a"]), children, max_size=3)
    ),
    max_leaves=12,
)
# Documents where the rules' paths mostly find something.
documents = json_values | st.builds(
    lambda v, w: {"v": v, "a": {"v": w, "w": v}}, json_values | numbers_or_more, json_values
)
variables = st.sampled_from(["$.v", "$.a.v", "$.a.w", "$", "$.v[0]", "$$.v", "$x", "$x.v"])
numeric_operators = st.sampled_from(
    [
        "NumericEquals",
        "NumericLessThan",
        "NumericGreaterThan",
        "NumericLessThanEquals",
        "NumericGreaterThanEquals",
    ]
)


def _test_rule(variable: str, operator: str, operand: Any) -> dict[str, Any]:
    return {"Variable": variable, operator: operand}


data_tests = st.one_of(
    st.builds(_test_rule, variables, numeric_operators, numbers),
    st.builds(_test_rule, variables, st.just("StringEquals"), st.text(max_size=2)),
    st.builds(_test_rule, variables, st.just("IsPresent"), st.booleans()),
    st.builds(_test_rule, variables, st.just("NumericEqualsPath"), variables),
)
raw_rules = st.recursive(
    data_tests,
    lambda children: (
        st.lists(children, min_size=1, max_size=3).map(lambda rules: {"And": rules})
        | st.lists(children, min_size=1, max_size=3).map(lambda rules: {"Or": rules})
        | children.map(lambda rule: {"Not": rule})
    ),
    max_leaves=4,
)


def _outcome(answer: Any, *arguments: Any) -> tuple[str, Any]:
    try:
        return "value", answer(*arguments)
    except StatesError as error:
        return "error", (error.error, error.cause)


@settings(max_examples=500, deadline=None)
@given(raw=raw_rules, data=documents, context=documents, variable=documents)
def test_a_compiled_rule_answers_what_evaluate_rule_answers(
    raw: dict[str, Any], data: Any, context: Any, variable: Any
) -> None:
    rule: ChoiceRule = compile_choice_rule({**raw, "Next": "N"}, top_level=True)
    scope = {"x": variable}
    expected = _outcome(evaluate_rule, rule, data, context, scope)
    assert _outcome(compile_rule_test(rule), data, context, scope) == expected


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"Variable": "$.v", "NumericEquals": 1}, ["$.v"]),
        ({"Variable": "$$.a", "StringEqualsPath": "$x.b"}, ["$$.a", "$x.b"]),
        (
            {
                "And": [
                    {"Variable": "$.a", "IsPresent": True},
                    {"Not": {"Variable": "$y", "IsNull": True}},
                ]
            },
            ["$.a", "$y"],
        ),
    ],
)
def test_rule_paths_names_every_path_a_rule_reads(
    rule: dict[str, Any], expected: list[str]
) -> None:
    compiled = compile_choice_rule({**rule, "Next": "N"}, top_level=True)
    assert [path.text for path in rule_paths(compiled)] == expected


@settings(max_examples=400, deadline=None)
@given(
    text=st.sampled_from(["$.v", "$.a.v", "$['x y'].a", "$.a.w.v", "$", "$$.v", "$x.v", "$.v[0]"]),
    data=documents,
    context=documents,
    variable=documents,
)
def test_a_compiled_finder_finds_what_find_finds(
    text: str, data: Any, context: Any, variable: Any
) -> None:
    path = compile_path(text)
    scope = {"x": variable}
    found = compile_find(path)(data, context, scope)
    walked = dataclasses.replace(path, names=None)  # the segment walk, not the lookups
    for expected in (find(path, data, context, scope), find(walked, data, context, scope)):
        assert found is expected or found == expected  # `is`: the same NaN is not equal
