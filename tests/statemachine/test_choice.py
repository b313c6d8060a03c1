"""Choice rules: compilation, AWS comparison semantics, and the AWS-recorded cases."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine.choice import (
    COMPARISON_OPERATORS,
    TYPE_TEST_OPERATORS,
    AndRule,
    ChoiceRule,
    ConditionRule,
    DataTestRule,
    NotRule,
    OrRule,
    compile_choice_rule,
    evaluate_rule,
    first_match,
)
from statemachine.errors import ExpressionSyntaxError, States, StatesError
from tests.conformance.support import ROOT as CONFORMANCE_ROOT

CASES = CONFORMANCE_ROOT / "cases" / "local"


def rule(raw: dict[str, Any], *, top_level: bool = False) -> ChoiceRule:
    return compile_choice_rule(raw, top_level=top_level)


def holds(
    raw: dict[str, Any],
    data: Any,
    context: Any = None,
    variables: dict[str, Any] | None = None,
) -> bool:
    return evaluate_rule(rule(raw), data, context or {}, variables or {})


def runtime_cause(raw: dict[str, Any], data: Any) -> str | None:
    with pytest.raises(StatesError) as info:
        holds(raw, data)
    assert info.value.error == States.RUNTIME
    return info.value.cause


# --- the cases recorded on AWS ---------------------------------------------------


def _load(pattern: str) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(CASES.glob(pattern))]


def _operator_cases() -> list[Any]:
    cases = []
    for case in _load("ls.choice_operators.*.json"):
        states = case["definition"]["States"]
        if set(states) == {"CheckValues", "ConditionTrue", "ConditionFalse"}:
            cases.append(pytest.param(case, id=case["id"].removeprefix("ls.choice_operators.")))
    return cases


OPERATOR_CASES = _operator_cases()


def test_all_operator_cases_were_found() -> None:
    assert len(OPERATOR_CASES) == 200


@pytest.mark.parametrize("case", OPERATOR_CASES)
def test_aws_operator_case(case: dict[str, Any]) -> None:
    state = case["definition"]["States"]["CheckValues"]
    rules = [compile_choice_rule(raw, top_level=True) for raw in state["Choices"]]
    index = first_match(rules, case["input"], {}, {})
    taken = state["Default"] if index is None else rules[index].next
    assert case["expected"]["status"] == "SUCCEEDED"
    assert taken == case["expected"]["output"]["TestResult.$"]


@pytest.mark.parametrize(("done", "expected"), [(True, "FinishTrue"), (False, "FinishFalse")])
def test_aws_unsorted_choice_parameters(done: bool, expected: str) -> None:
    (case,) = _load("*unsorted_parameters_positive?CHOICE_STATE_UNSORTED_CHOICE_PARAMETERS?.*")
    raw_rules = case["definition"]["States"]["CheckResult"]["Choices"]
    rules = [compile_choice_rule(raw, top_level=True) for raw in raw_rules]
    index = first_match(rules, {"result": {"done": done}}, {}, {})
    assert index is not None and rules[index].next == expected


def test_aws_map_break_condition() -> None:
    (case,) = _load("*test_map_state_break_condition*")
    states = case["definition"]["States"]
    processor = states["MapState"]["ItemProcessor"]["States"]
    (raw,) = processor["Equals3"]["Choices"]
    compiled = compile_choice_rule(raw, top_level=True)
    items = states["StartState"]["Result"]
    # AWS failed at the item 3 (the Break state): only it matches.
    assert [evaluate_rule(compiled, item, {}, {}) for item in items] == [
        False,
        False,
        False,
        False,
        True,
        False,
        False,
    ]


def test_aws_legacy_reentrant_loop() -> None:
    (case,) = _load("*test_map_state_legacy_reentrant*")
    (raw,) = case["definition"]["States"]["CheckIteration"]["Choices"]
    compiled = compile_choice_rule(raw, top_level=True)
    seen = [evaluate_rule(compiled, {"Iterations": n}, {}, {}) for n in (3, 2, 1, 0)]
    assert seen == [False, False, False, True]


def test_aws_reference_variables_in_choice() -> None:
    (case,) = _load("*BASE_REFERENCE_IN_CHOICE*")
    (raw,) = case["definition"]["States"]["CheckAnswer"]["Choices"]
    compiled = compile_choice_rule(raw, top_level=True)
    assert not evaluate_rule(compiled, {}, {}, {"answer": "the_answer", "guess": "the_guess"})
    assert evaluate_rule(compiled, {}, {}, {"answer": "the_answer", "guess": "the_answer"})


# --- compilation ------------------------------------------------------------------


def test_compiles_a_data_test_rule() -> None:
    compiled = compile_choice_rule(
        {"Variable": "$.x", "NumericEquals": 1, "Next": "A", "Assign": {"y": 1}, "Comment": "c"},
        top_level=True,
    )
    assert isinstance(compiled, DataTestRule)
    assert (compiled.variable.text, compiled.operator, compiled.operand) == (
        "$.x",
        "NumericEquals",
        1,
    )
    assert compiled.next == "A"
    assert compiled.assign == {"y": 1}
    assert compiled.output is msgspec.UNSET
    assert compiled.operand_path is None


def test_compiles_path_operands_and_nested_rules() -> None:
    compiled = compile_choice_rule(
        {
            "Or": [
                {"Not": {"Variable": "$$.Execution.Name", "StringEqualsPath": "$var.name"}},
                {"And": [{"Variable": "$.a", "IsPresent": True}]},
            ],
            "Next": "B",
        },
        top_level=True,
    )
    assert isinstance(compiled, OrRule) and compiled.next == "B"
    first, second = compiled.rules
    assert isinstance(first, NotRule) and isinstance(second, AndRule)
    assert first.next is None and first.assign is msgspec.UNSET
    inner = first.rule
    assert isinstance(inner, DataTestRule)
    assert inner.variable.root == "context"
    assert inner.operand_path is not None and inner.operand_path.root == "variable"


def test_operator_catalogue() -> None:
    assert len(COMPARISON_OPERATORS) == 16 + 16 + 1
    assert len([op for op in COMPARISON_OPERATORS if op.endswith("Path")]) == 16
    assert {
        "IsNull",
        "IsPresent",
        "IsNumeric",
        "IsString",
        "IsBoolean",
        "IsTimestamp",
    } == TYPE_TEST_OPERATORS


@pytest.mark.parametrize(
    ("raw", "top_level", "message"),
    [
        ({"Variable": "$.x", "NumericEquals": 1}, True, "needs Next"),
        ({"Variable": "$.x", "NumericEquals": 1, "Next": 3}, True, "needs Next"),
        ({"Variable": "$.x", "NumericEquals": 1, "Next": "A"}, False, "must not have Next"),
        ({"Variable": "$.x", "NumericEquals": 1, "Assign": {}}, False, "must not have Assign"),
        ({"Variable": "$.x", "Next": "A"}, True, "exactly one operator .found: none"),
        (
            {"Variable": "$.x", "NumericEquals": 1, "StringEquals": "a", "Next": "A"},
            True,
            "exactly one operator .found: NumericEquals, StringEquals",
        ),
        ({"NumericEquals": 1, "Next": "A"}, True, "needs a Variable"),
        ({"Variable": 3, "NumericEquals": 1, "Next": "A"}, True, "Variable must be a path"),
        ({"Variable": "$.x", "NumericEquals": "1", "Next": "A"}, True, "takes a number"),
        ({"Variable": "$.x", "NumericEquals": True, "Next": "A"}, True, "takes a number"),
        ({"Variable": "$.x", "StringEquals": 1, "Next": "A"}, True, "takes a string"),
        ({"Variable": "$.x", "StringMatches": None, "Next": "A"}, True, "takes a string"),
        ({"Variable": "$.x", "TimestampEquals": 1, "Next": "A"}, True, "takes a string"),
        ({"Variable": "$.x", "BooleanEquals": "true", "Next": "A"}, True, "takes a boolean"),
        ({"Variable": "$.x", "IsNull": 1, "Next": "A"}, True, "takes a boolean"),
        ({"Variable": "$.x", "NumericEqualsPath": 1, "Next": "A"}, True, "must be a path"),
        ({"Variable": "$.x", "NumericEqualsPath": "x", "Next": "A"}, True, "not a valid path"),
        ({"Variable": "x", "IsNull": True, "Next": "A"}, True, "not a valid path"),
        ({"And": [], "Next": "A"}, True, "non-empty array"),
        ({"Or": {"Variable": "$.x", "IsNull": True}, "Next": "A"}, True, "non-empty array"),
        ({"Not": [], "Next": "A"}, True, "single rule object"),
        (
            {"And": [{"Variable": "$.x", "IsNull": True}], "Variable": "$.x", "Next": "A"},
            True,
            "do not take a Variable",
        ),
        ({"And": ["x"], "Next": "A"}, True, "must be a JSON object"),
        ({"Variable": "$.x", "IsNull": True, "Next": "A", "Output": {}}, True, "Output"),
        ({"Variable": "$.x", "IsNull": True, "Next": "A", "Condition": True}, True, "Condition"),
        ({"Variable": "$.x", "NumericEqual": 1, "Next": "A"}, True, "NumericEqual"),
    ],
)
def test_malformed_rules(raw: dict[str, Any], top_level: bool, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match=message):
        compile_choice_rule(raw, top_level=top_level)


def test_jsonata_condition_rule_is_kept_raw() -> None:
    raw = {
        "Condition": "{% $states.input.result.done %}",
        "Next": "FinishTrue",
        "Assign": {"x": "{% 1 %}"},
        "Output": {"a": 1},
        "Comment": "c",
    }
    compiled = compile_choice_rule(raw, top_level=True, query_language="JSONata")
    assert compiled == ConditionRule(
        condition="{% $states.input.result.done %}",
        next="FinishTrue",
        assign={"x": "{% 1 %}"},
        output={"a": 1},
    )
    with pytest.raises(TypeError, match="JSONata"):
        evaluate_rule(compiled, {}, {}, {})
    literal = compile_choice_rule(
        {"Condition": False, "Next": "X"}, top_level=True, query_language="JSONata"
    )
    assert isinstance(literal, ConditionRule) and literal.condition is False


@pytest.mark.parametrize(
    ("raw", "top_level", "message"),
    [
        ({"Next": "A"}, True, "needs a Condition"),
        ({"Condition": "$.x", "Next": "A"}, True, "boolean or a JSONata expression"),
        ({"Condition": 1, "Next": "A"}, True, "boolean or a JSONata expression"),
        ({"Condition": True}, True, "needs Next"),
        ({"Condition": True, "Next": "A", "Variable": "$.x"}, True, "Variable"),
        ({"Condition": True, "Next": "A"}, False, "cannot be nested"),
    ],
)
def test_malformed_jsonata_rules(raw: dict[str, Any], top_level: bool, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match=message):
        compile_choice_rule(raw, top_level=top_level, query_language="JSONata")


# --- comparisons --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "operand", "value", "expected"),
    [
        ("StringEquals", "abc", "abc", True),
        ("StringEquals", "abc", "ABC", False),
        ("StringEquals", "1", 1, False),
        ("StringEquals", "", None, False),
        ("StringLessThan", "b", "a", True),
        ("StringLessThan", "a", "a", False),
        ("StringLessThan", "a", "B", True),  # code points, no case folding: "B" < "a"
        ("StringGreaterThan", "a", "B", False),
        ("StringGreaterThan", "a", "é", True),
        ("StringLessThanEquals", "a", "a", True),
        ("StringGreaterThanEquals", "b", "a", False),
        ("StringEquals", "e\u0301", "é", False),  # no normalization
        ("StringEquals", "2012-10-09T19:00:55Z", "2012-10-09T19:00:55Z", True),
        ("NumericEquals", 1, 1.0, True),
        ("NumericEquals", 1, True, False),  # booleans are not numbers
        ("NumericEquals", 0, False, False),
        ("NumericEquals", 1, "1", False),
        ("NumericEquals", 0, None, False),
        ("NumericEquals", 2.22, 2.22, True),
        ("NumericEquals", 9007199254740992, 9007199254740993, True),  # as IEEE doubles
        ("NumericLessThan", 1, 0.5, True),
        ("NumericLessThan", 1, 1, False),
        pytest.param("NumericGreaterThan", 1, 10**400, True, id="beyond-double-max"),
        pytest.param("NumericLessThan", 1, -(10**400), True, id="beyond-double-min"),
        ("NumericLessThanEquals", -1, -1.0, True),
        ("NumericGreaterThanEquals", 1.5, 1, False),
        ("BooleanEquals", True, True, True),
        ("BooleanEquals", False, True, False),
        ("BooleanEquals", True, 1, False),
        ("BooleanEquals", False, 0, False),
        ("BooleanEquals", False, None, False),
        ("BooleanEquals", True, "true", False),
        ("TimestampEquals", "2012-10-09T19:00:55Z", "2012-10-09T20:00:55+01:00", True),
        ("TimestampEquals", "2012-10-09T19:00:55Z", "2012-10-09T19:00:55.000Z", True),
        ("TimestampLessThan", "2012-10-09T19:00:56Z", "2012-10-09T19:00:55.999999999Z", True),
        ("TimestampGreaterThan", "2012-10-09T19:00:55Z", "2012-10-09T19:00:55Z", False),
        ("TimestampLessThanEquals", "2012-10-09T19:00:55Z", "2012-10-09T19:00:55Z", True),
        ("TimestampGreaterThanEquals", "2012-10-09T19:00:55Z", "2012-10-09T14:00:55-05:00", True),
        ("TimestampEquals", "2012-10-09T19:00:55Z", "2012-10-09T19:00:55", False),  # no offset
        ("TimestampEquals", "2012-10-09T19:00:55Z", 1349809255, False),
        ("TimestampEquals", "not a time", "not a time", False),  # bad literal: always false
    ],
)
def test_literal_comparisons(operator: str, operand: Any, value: Any, expected: bool) -> None:
    assert holds({"Variable": "$.v", operator: operand}, {"v": value}) is expected


@pytest.mark.parametrize(
    ("operator", "value", "other", "expected"),
    [
        ("StringEqualsPath", "a", "a", True),
        ("StringEqualsPath", "a", 1, False),
        ("StringLessThanPath", "a", "b", True),
        ("NumericEqualsPath", 3, 3.0, True),
        ("NumericEqualsPath", 1, True, False),
        ("NumericEqualsPath", None, 0, False),
        ("NumericGreaterThanEqualsPath", 3, 3, True),
        ("BooleanEqualsPath", False, False, True),
        ("BooleanEqualsPath", False, 0, False),
        ("TimestampLessThanPath", "2012-10-09T19:00:55Z", "2012-10-09T19:00:56Z", True),
        ("TimestampGreaterThanPath", "2012-10-09T19:00:55Z", "2012-10-09T19:00:56Z", False),
        ("TimestampEqualsPath", "2012-10-09T19:00:55Z", "garbage", False),
        ("TimestampEqualsPath", "2012-10-09T19:00:55Z", ["2012-10-09T19:00:55Z"], False),
    ],
)
def test_path_comparisons(operator: str, value: Any, other: Any, expected: bool) -> None:
    assert holds({"Variable": "$.v", operator: "$.o"}, {"v": value, "o": other}) is expected


def test_path_operands_read_context_and_variables() -> None:
    context = {"Execution": {"Name": "run-1"}}
    variables = {"limits": {"max": 10}, "name": "run-1"}
    assert holds(
        {"Variable": "$.n", "NumericLessThanPath": "$limits.max"}, {"n": 3}, context, variables
    )
    assert holds(
        {"Variable": "$$.Execution.Name", "StringEqualsPath": "$name"}, {}, context, variables
    )
    assert not holds(
        {"Variable": "$name", "StringEqualsPath": "$.other"}, {"other": "x"}, context, variables
    )


# --- type tests -----------------------------------------------------------------------


VALUES: list[Any] = [None, True, False, 0, 1.5, "", "text", "2012-10-09T19:00:55Z", [], {}]


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("IsNull", [True, False, False, False, False, False, False, False, False, False]),
        ("IsBoolean", [False, True, True, False, False, False, False, False, False, False]),
        ("IsNumeric", [False, False, False, True, True, False, False, False, False, False]),
        ("IsString", [False, False, False, False, False, True, True, True, False, False]),
        ("IsTimestamp", [False, False, False, False, False, False, False, True, False, False]),
        ("IsPresent", [True] * 10),
    ],
)
def test_type_tests(operator: str, expected: list[bool]) -> None:
    assert [holds({"Variable": "$.v", operator: True}, {"v": v}) for v in VALUES] == expected
    negated = [holds({"Variable": "$.v", operator: False}, {"v": v}) for v in VALUES]
    assert negated == [not e for e in expected]


def test_is_timestamp_rejects_timestamps_without_offset() -> None:
    assert not holds({"Variable": "$.v", "IsTimestamp": True}, {"v": "2012-10-09T19:00:55"})
    assert holds({"Variable": "$.v", "IsTimestamp": True}, {"v": "2012-10-09T19:00:55+01:00"})


# --- missing paths ------------------------------------------------------------------


def test_is_present_on_a_missing_path_never_raises() -> None:
    assert holds({"Variable": "$.missing", "IsPresent": False}, {}) is True
    assert holds({"Variable": "$.missing", "IsPresent": True}, {}) is False
    assert holds({"Variable": "$.a.b.c", "IsPresent": True}, {"a": 1}) is False
    assert holds({"Variable": "$undefined", "IsPresent": True}, {}) is False
    assert holds({"Variable": "$.n", "IsPresent": True}, {"n": None}) is True


@pytest.mark.parametrize(
    "operator_and_operand",
    [
        {"NumericEquals": 1},
        {"StringEquals": "a"},
        {"BooleanEquals": True},
        {"TimestampEquals": "2012-10-09T19:00:55Z"},
        {"StringMatches": "*"},
        {"IsNull": False},
        {"IsString": False},
        {"NumericEqualsPath": "$.other"},
    ],
)
def test_missing_variable_fails_with_runtime(operator_and_operand: dict[str, Any]) -> None:
    cause = runtime_cause({"Variable": "$.value", **operator_and_operand}, {"other": 1})
    assert cause == (
        "Invalid path '$.value': The choice state's condition path references an invalid value."
    )


def test_missing_variable_reference_fails_with_runtime() -> None:
    cause = runtime_cause({"Variable": "$guess", "StringEquals": "x"}, {})
    assert cause == (
        "Invalid path '$guess': The choice state's condition path references an invalid value."
    )


def test_missing_path_operand_fails_with_runtime() -> None:
    cause = runtime_cause({"Variable": "$.left", "NumericGreaterThanPath": "$.right"}, {"left": 8})
    assert cause == (
        "Invalid path '$.right': The choice state's condition path references an invalid value."
    )


def test_null_is_present_not_missing() -> None:
    assert holds({"Variable": "$.v", "NumericEquals": 0}, {"v": None}) is False
    assert holds({"Variable": "$.v", "NumericEqualsPath": "$.o"}, {"v": 0, "o": None}) is False


# --- StringMatches ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("log-*.txt", "log-2024.txt", True),
        ("log-*.txt", "log-.txt", True),
        ("log-*.txt", "log-2024.txt.bak", False),
        ("*", "", True),
        ("*", "anything\nat all", True),
        ("", "", True),
        ("", "x", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "acb", False),
        ("a*a", "a", False),  # prefix and suffix may not overlap
        ("a*a", "aa", True),
        ("*.?", "x.?", True),  # only * is special
        ("[a]", "a", False),
        ("x\\*y", "x*y", True),  # \* is a literal star
        ("x\\*y", "xzzy", False),
        ("x\\\\*", "x\\abc", True),  # \\ is a literal backslash, then a wildcard
        ("x\\\\*", "xabc", False),
        ("*a*a*a*a*a*a*a*a*b", "a" * 5000, False),  # linear, no catastrophic backtracking
    ],
)
def test_string_matches(pattern: str, value: str, expected: bool) -> None:
    assert holds({"Variable": "$.v", "StringMatches": pattern}, {"v": value}) is expected


def test_string_matches_needs_a_string() -> None:
    assert holds({"Variable": "$.v", "StringMatches": "*"}, {"v": 1}) is False
    assert holds({"Variable": "$.v", "StringMatches": "*"}, {"v": None}) is False


@pytest.mark.parametrize("pattern", ["a\\b", "trailing\\", "\\n"])
def test_string_matches_bad_escape_is_a_runtime_error(pattern: str) -> None:
    compiled = rule({"Variable": "$.v", "StringMatches": pattern})  # accepted at creation
    with pytest.raises(StatesError) as info:
        evaluate_rule(compiled, {"v": "x"}, {}, {})
    assert info.value.error == States.RUNTIME
    assert info.value.cause is not None and "escape" in info.value.cause


# --- boolean combinations -------------------------------------------------------------


def test_and_or_not() -> None:
    is_one = {"Variable": "$.v", "NumericEquals": 1}
    is_str = {"Variable": "$.v", "IsString": True}
    assert holds({"And": [is_one, {"Not": is_str}]}, {"v": 1})
    assert not holds({"And": [is_one, is_str]}, {"v": 1})
    assert holds({"Or": [is_str, is_one]}, {"v": 1})
    assert not holds({"Or": [is_str, is_one]}, {"v": 2})
    assert holds({"Not": {"Not": is_one}}, {"v": 1})
    assert holds({"And": [{"Or": [is_str, {"And": [is_one]}]}]}, {"v": 1})


def test_and_or_short_circuit_before_a_missing_path() -> None:
    missing = {"Variable": "$.missing", "NumericEquals": 1}
    false = {"Variable": "$.v", "NumericEquals": 2}
    true = {"Variable": "$.v", "NumericEquals": 1}
    assert holds({"And": [false, missing]}, {"v": 1}) is False
    assert holds({"Or": [true, missing]}, {"v": 1}) is True
    with pytest.raises(StatesError):
        holds({"And": [true, missing]}, {"v": 1})
    with pytest.raises(StatesError):
        holds({"Or": [false, missing]}, {"v": 1})


def test_first_match_is_ordered() -> None:
    rules = [
        compile_choice_rule(
            {"Variable": "$.v", "NumericGreaterThan": 10, "Next": "Big"}, top_level=True
        ),
        compile_choice_rule(
            {"Variable": "$.v", "NumericGreaterThan": 0, "Next": "Positive"}, top_level=True
        ),
        compile_choice_rule(
            {"Variable": "$.v", "NumericGreaterThan": 5, "Next": "Never"}, top_level=True
        ),
    ]
    assert first_match(rules, {"v": 20}, {}, {}) == 0
    assert first_match(rules, {"v": 7}, {}, {}) == 1
    assert first_match(rules, {"v": -1}, {}, {}) is None
    assert first_match([], {"v": 1}, {}, {}) is None


# --- properties -----------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["2012-10-09T19:00:55Z", "2012-10-09T19:00:55+01:00", "*", "a\\*"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abv"), inner, max_size=3)
    ),
    max_leaves=8,
)
paths = st.sampled_from(
    ["$", "$.a", "$.v", "$.a.b", "$.v[0]", "$.a[*]", "$$.Execution.Name", "$x", "$x.a"]
)


def _operand(operator: str) -> st.SearchStrategy[Any]:
    if operator.endswith("Path"):
        return paths
    if operator in TYPE_TEST_OPERATORS or operator == "BooleanEquals":
        return st.booleans()
    if operator.startswith("Numeric"):
        return st.integers(-5, 5) | st.floats(allow_nan=False)
    return st.text(alphabet="ab*\\-:T0Z", max_size=8) | st.just("2012-10-09T19:00:55Z")


@st.composite
def data_tests(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(st.sampled_from(sorted(COMPARISON_OPERATORS | TYPE_TEST_OPERATORS)))
    return {"Variable": draw(paths), operator: draw(_operand(operator))}


raw_rules = st.recursive(
    data_tests(),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3).map(lambda rs: {"And": rs})
        | st.lists(inner, min_size=1, max_size=3).map(lambda rs: {"Or": rs})
        | inner.map(lambda r: {"Not": r})
    ),
    max_leaves=6,
)


@settings(max_examples=400)
@given(raw=raw_rules, data=json_values, variable=json_values, name=json_values)
def test_evaluate_never_crashes(raw: dict[str, Any], data: Any, variable: Any, name: Any) -> None:
    compiled = rule(raw)
    try:
        result = evaluate_rule(compiled, data, {"Execution": {"Name": name}}, {"x": variable})
    except StatesError as exc:
        assert exc.error == States.RUNTIME
    else:
        assert isinstance(result, bool)


@given(raw=data_tests(), data=json_values)
def test_not_negates(raw: dict[str, Any], data: Any) -> None:
    try:
        plain = holds(raw, data)
    except StatesError:
        return
    assert holds({"Not": raw}, data) is (not plain)
