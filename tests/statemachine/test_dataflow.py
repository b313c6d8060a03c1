"""JSONPath data flow: payload templates, InputPath/OutputPath, and AWS conformance cases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from statemachine.dataflow import (
    apply_input_path,
    apply_output_path,
    compile_template,
    evaluate_template,
)
from statemachine.errors import ExpressionSyntaxError, StatesError
from statemachine.nondeterminism import Fixed
from statemachine.paths import apply_result_path, compile_path, compile_reference_path
from tests.conformance.support import ROOT as CONFORMANCE_ROOT

CONTEXT = {"Execution": {"Id": "arn:exec", "Input": {"k": "v"}}, "Map": {"Item": {"Index": 3}}}
VARIABLES = {"limit": 10, "cfg": {"mode": "fast"}}
CASES = CONFORMANCE_ROOT / "cases"


def run(template: Any, data: Any) -> Any:
    return evaluate_template(compile_template(template), data, CONTEXT, VARIABLES, Fixed())


# --- InputPath / OutputPath (JP25, JP33, JP37) --------------------------------------


def test_input_path_default_null_context_and_variables() -> None:
    data = {"a": {"b": 1}}
    assert apply_input_path(compile_path("$"), data, CONTEXT, VARIABLES) == data
    assert apply_input_path(None, data, CONTEXT, VARIABLES) == {}
    assert apply_input_path(compile_path("$.a"), data, CONTEXT, VARIABLES) == {"b": 1}
    assert apply_input_path(compile_path("$$.Execution.Input"), data, CONTEXT, VARIABLES) == {
        "k": "v"
    }
    assert apply_input_path(compile_path("$cfg.mode"), data, CONTEXT, VARIABLES) == "fast"


def test_output_path_default_and_null() -> None:
    assert apply_output_path(compile_path("$.a"), {"a": [1]}, CONTEXT, VARIABLES) == [1]
    assert apply_output_path(None, {"a": [1]}, CONTEXT, VARIABLES) == {}


def test_missing_input_or_output_path_is_runtime_error() -> None:
    for apply in (apply_input_path, apply_output_path):
        with pytest.raises(StatesError) as caught:
            apply(compile_path("$.no.such.result.path"), {}, CONTEXT, VARIABLES)
        assert caught.value.error == "States.Runtime"
        assert caught.value.cause == (
            "Invalid path '$.no.such.result.path' : Missing property in path $['no']"
        )


# --- payload templates (JP26-29, JP38) ----------------------------------------------


def test_template_dollar_keys_at_any_depth() -> None:
    template = {
        "literal": "$.not.a.path",
        "static": [1, {"x": None}],
        "fromInput.$": "$.a",
        "nested": {"deep": [{"ctx.$": "$$.Map.Item.Index"}], "var.$": "$limit"},
        "whole.$": "$",
        "fn.$": "States.Format('{}-{}', $.a, $cfg.mode)",
    }
    assert run(template, {"a": 7}) == {
        "literal": "$.not.a.path",
        "static": [1, {"x": None}],
        "fromInput": 7,
        "nested": {"deep": [{"ctx": 3}], "var": 10},
        "whole": {"a": 7},
        "fn": "7-fast",
    }


def test_template_results_are_fresh_per_evaluation() -> None:
    template = compile_template({"list": [1, 2], "obj": {"k": 1}})
    first = evaluate_template(template, {}, {}, {}, Fixed())
    first["list"].append(3)
    first["obj"]["k"] = 2
    assert evaluate_template(template, {}, {}, {}, Fixed()) == {"list": [1, 2], "obj": {"k": 1}}


def test_template_non_object_values() -> None:
    assert run("plain", {}) == "plain"
    assert run([{"a.$": "$.x"}], {"x": 1}) == [{"a": 1}]


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ({"x.$": "not a path"}, "The value for the field 'x.$' must be a valid JSONPath"),
        ({"x.$": 5}, "The value for the field 'x.$' must be a valid JSONPath"),
        ({"o": {"y.$": "$.a["}}, "The value for the field 'y.$' must be a valid JSONPath"),
        ({"z.$": "States.Nope()"}, "The value for the field 'z.$'"),
        ({"dup": 1, "dup.$": "$.a"}, "'dup' appears twice"),
    ],
)
def test_template_compile_errors_name_the_key(template: Any, fragment: str) -> None:
    """JP27/JP28: bad `.$` values and duplicate keys after stripping are invalid."""
    with pytest.raises(ExpressionSyntaxError) as caught:
        compile_template(template)
    assert fragment in str(caught.value)


def test_template_missing_path_matches_aws_wording() -> None:
    """JP37: AWS's cause for a Parameters path that selects nothing."""
    with pytest.raises(StatesError) as caught:
        run({"address.$": "$.application.address"}, {"flagged": False})
    assert caught.value.error == "States.Runtime"
    assert caught.value.cause == (
        "The JSONPath '$.application.address' specified for the field 'address.$' "
        """could not be found in the input '{"flagged":false}'"""
    )


def test_indefinite_template_path_gives_empty_list() -> None:
    assert run({"vals.$": "$.items[*].v"}, {"items": [{"w": 1}]}) == {"vals": []}


def test_result_selector_then_result_path_pipeline() -> None:
    """JP29/JP30: ResultSelector shapes the raw result, ResultPath merges into raw input."""
    raw_input = {"order": 1}
    raw_result = {"Payload": {"total": 9}, "StatusCode": 200}
    selected = run({"total.$": "$.Payload.total"}, raw_result)
    output = apply_result_path(raw_input, compile_reference_path("$.result"), selected)
    assert output == {"order": 1, "result": {"total": 9}}
    assert apply_output_path(compile_path("$.result.total"), output, CONTEXT, VARIABLES) == 9


# --- AWS conformance cases ----------------------------------------------------------


def _single_pass_cases() -> list[Any]:
    """Cases whose machine is one JSONPath Pass state using intrinsics or paths."""
    selected = []
    for file in sorted(CASES.glob("*/*.json")):
        case = json.loads(file.read_text())
        features = case["features"]
        states = case["definition"]["States"]
        if len(states) != 1 or "ql:jsonpath" not in features:
            continue
        (state,) = states.values()
        if state["Type"] != "Pass" or "Assign" in state or "QueryLanguage" in state:
            continue
        if not any(f.startswith("intrinsic:") or f == "field:Parameters" for f in features):
            continue
        selected.append(pytest.param(case, id=case["id"][:90]))
    return selected


def _run_pass(state: dict[str, Any], execution_input: Any) -> Any:
    context = {"Execution": {"Input": execution_input}, "State": {"Name": "S"}}
    nondeterminism = Fixed()
    input_path = state.get("InputPath", "$")
    effective = apply_input_path(
        None if input_path is None else compile_path(input_path), execution_input, context, {}
    )
    if "Parameters" in state:
        effective = evaluate_template(
            compile_template(state["Parameters"]), effective, context, {}, nondeterminism
        )
    result = state.get("Result", effective)
    result_path = state.get("ResultPath", "$")
    output = apply_result_path(
        execution_input,
        None if result_path is None else compile_reference_path(result_path),
        result,
    )
    output_path = state.get("OutputPath", "$")
    return apply_output_path(
        None if output_path is None else compile_path(output_path), output, context, {}
    )


@pytest.mark.parametrize("case", _single_pass_cases())
def test_conformance_single_pass_state(case: dict[str, Any]) -> None:
    (state,) = case["definition"]["States"].values()
    expected = case["expected"]
    if expected["status"] == "SUCCEEDED":
        assert _run_pass(state, case["input"]) == expected["output"]
    else:
        with pytest.raises(StatesError) as caught:
            _run_pass(state, case["input"])
        assert caught.value.error == expected["error"]


def test_conformance_cases_were_found() -> None:
    assert len(_single_pass_cases()) >= 60
