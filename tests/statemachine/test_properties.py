"""Property tests: random JSON never crashes the parser or the data-flow pipeline.

Whatever the definition or the input, `load` returns a model or raises
DefinitionError; the JSONPath pipeline (InputPath → Parameters → ResultPath →
OutputPath) returns a value or raises an ASL StatesError — never anything else.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from statemachine import DefinitionError, ExpressionSyntaxError, StatesError, load
from statemachine.dataflow import (
    apply_input_path,
    apply_output_path,
    compile_template,
    evaluate_template,
)
from statemachine.nondeterminism import Fixed
from statemachine.paths import apply_result_path, compile_path, compile_reference_path

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
names = st.sampled_from(["a", "b", "c", "items", "x y", "0"])
path_texts = st.one_of(
    st.just("$"),
    st.lists(names, min_size=1, max_size=3).map(lambda parts: "$." + ".".join(parts)),
    st.builds(lambda n, i: f"$.{n}[{i}]", names, st.integers(-3, 3)),
    st.builds(lambda n: f"$.{n}[*]", names),
    st.builds(lambda n: f"$..{n}", names),
    st.sampled_from(["$$.Execution.Id", "$$.State.Name", "$var", "$var.a"]),
    st.text(max_size=10),
)
intrinsics = st.sampled_from(
    [
        "States.Array($.a, $.b)",
        "States.Format('{} and {}', $.a, $.b)",
        "States.JsonToString($)",
        "States.StringToJson($.a)",
        "States.ArrayLength($.items)",
        "States.ArrayGetItem($.items, 1)",
        "States.MathAdd($.a, 1)",
        "States.Hash($.a, 'SHA-256')",
        "States.Base64Encode($.a)",
        "States.UUID()",
    ]
)
templates = st.recursive(
    st.dictionaries(
        st.sampled_from(["p", "q.$", "r.$", "s"]),
        st.one_of(scalars, path_texts, intrinsics),
        max_size=4,
    ),
    lambda inner: st.dictionaries(st.sampled_from(["n", "m.$"]), inner, max_size=2),
    max_leaves=8,
)
CONTEXT = {"Execution": {"Id": "arn:x"}, "State": {"Name": "S"}}
VARIABLES = {"var": {"a": 1}}


@settings(max_examples=300, deadline=None)
@given(
    document=json_values,
    template=templates,
    input_path=path_texts,
    result_path=path_texts,
    output_path=path_texts,
)
def test_random_pipelines_never_crash(
    document: Any, template: Any, input_path: str, result_path: str, output_path: str
) -> None:
    try:
        compiled = compile_template(template)
        paths = (
            compile_path(input_path),
            compile_reference_path(result_path),
            compile_path(output_path),
        )
    except ExpressionSyntaxError:
        event("syntax error")
        return
    event("evaluated")
    try:
        effective = apply_input_path(paths[0], document, CONTEXT, VARIABLES)
        result = evaluate_template(compiled, effective, CONTEXT, VARIABLES, Fixed())
        merged = apply_result_path(document, paths[1], result)
        apply_output_path(paths[2], merged, CONTEXT, VARIABLES)
    except StatesError as error:
        event(f"raised {error.error}")


state_types = st.sampled_from(
    ["Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Map", "Parallel"]
)
states = st.dictionaries(
    st.sampled_from(
        [
            "Type",
            "Next",
            "End",
            "Resource",
            "Result",
            "Parameters",
            "Seconds",
            "Choices",
            "Default",
            "InputPath",
            "ResultPath",
            "Branches",
            "ItemProcessor",
            "Retry",
        ]
    ),
    st.one_of(state_types, json_values, path_texts, st.just("B")),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    start=st.sampled_from(["A", "B", "missing"]),
    a=states,
    b=states,
    top=st.dictionaries(
        st.sampled_from(["TimeoutSeconds", "QueryLanguage", "Version"]), json_values
    ),
)
def test_random_definitions_load_or_raise_definition_error(
    start: str, a: Any, b: Any, top: dict[str, Any]
) -> None:
    definition = {"StartAt": start, "States": {"A": a, "B": b}, **top}
    try:
        machine = load(definition)
    except DefinitionError as error:
        assert error.diagnostics  # type: ignore[attr-defined]
        event("rejected")
        return
    event("accepted")
    assert machine.start_at == start
