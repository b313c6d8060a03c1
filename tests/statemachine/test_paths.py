"""ASL paths: compile, find/resolve with AWS (Jayway) semantics, ResultPath."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine.errors import ExpressionSyntaxError, StatesError
from statemachine.paths import (
    MISSING,
    apply_result_path,
    compile_path,
    compile_reference_path,
    find,
    resolve,
)

DOC: dict[str, Any] = {
    "a": {"b": [1, 2, {"c": 3}]},
    "x y": 5,
    "items": [{"v": 1, "n": "one"}, {"v": 5, "n": "five"}, {"w": 2}],
    "nothing": None,
}
CONTEXT = {"Execution": {"Id": "arn:exec", "Input": {"k": "v"}}, "State": {"Name": "S"}}
VARIABLES = {"var": {"k": [10, 20]}, "n": 7}


def ev(text: str, data: Any = DOC) -> Any:
    return resolve(compile_path(text), data, CONTEXT, VARIABLES)


# --- compile ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "root", "variable", "definite"),
    [
        ("$", "input", None, True),
        ("$.a.b[0]", "input", None, True),
        ("$.a.b[-1]", "input", None, True),
        ("$['x y']", "input", None, True),
        ("$$.Execution.Id", "context", None, True),
        ("$$", "context", None, True),
        ("$var.k[1]", "variable", "var", True),
        ("$n", "variable", "n", True),
        ("$.items[*].v", "input", None, False),
        ("$..v", "input", None, False),
        ("$.items[0:2]", "input", None, False),
        ("$.items[?(@.v > 1)]", "input", None, False),
        ("$.items[0,1]", "input", None, False),
        ("$['a','x y']", "input", None, False),
    ],
)
def test_compile_classifies_root_and_definiteness(
    text: str, root: str, variable: str | None, definite: bool
) -> None:
    path = compile_path(text)
    assert (path.text, path.root, path.variable, path.definite) == (text, root, variable, definite)


@pytest.mark.parametrize(
    "text",
    ["", "a.b", "$.", "$.a..", "$[", "$[abc]", "$.a[1:2:3]", "$.a b", "$.a.length()", "$.a]"],
)
def test_compile_rejects_bad_paths(text: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match="JSONPath"):
        compile_path(text)


@pytest.mark.parametrize("text", ["$.a[*]", "$..a", "$.a[0:1]", "$.a[?(@.b)]", "$.a[0,1]"])
def test_reference_path_is_a_single_node(text: str) -> None:
    """JP36: a Reference Path has no @ , : ? * or '..'."""
    with pytest.raises(ExpressionSyntaxError, match="Reference Path"):
        compile_reference_path(text)
    assert compile_reference_path("$.a['b c'][0]").definite


# --- evaluation ---------------------------------------------------------------------


def test_definite_paths_return_bare_values() -> None:
    assert ev("$") == DOC
    assert ev("$.a.b") == [1, 2, {"c": 3}]
    assert ev("$.a.b[0]") == 1
    assert ev("$.a.b[-1].c") == 3
    assert ev("$['x y']") == 5
    assert ev("$.nothing") is None
    assert ev("$$.Execution.Input.k") == "v"
    assert ev("$$") == CONTEXT
    assert ev("$var.k[1]") == 20
    assert ev("$n") == 7


def test_multi_match_paths_gather_into_arrays() -> None:
    """JP34: several matches become an array; a literal single index is unwrapped."""
    assert ev("$.items[*].v") == [1, 5]
    assert ev("$..v") == [1, 5]
    assert ev("$.items[0:2].n") == ["one", "five"]
    assert ev("$.items[-1:]") == [{"w": 2}]
    assert ev("$.items[0,2]") == [{"v": 1, "n": "one"}, {"w": 2}]
    assert ev("$['a','x y']") == [{"b": [1, 2, {"c": 3}]}, 5]
    assert ev("$.a.b[*]") == [1, 2, {"c": 3}]
    assert ev("$[*]", [3, 4]) == [3, 4]


def test_empty_indefinite_match_is_an_empty_array() -> None:
    """JP35: an empty wildcard/slice/filter match yields [] rather than an error."""
    assert ev("$.items[*].missing") == []
    assert ev("$.items[5:]") == []
    assert ev("$.items[?(@.v > 100)]") == []
    assert ev("$..nowhere") == []


def test_filters() -> None:
    assert ev("$.items[?(@.v > 1)].n") == ["five"]
    assert ev("$.items[?(@.v)].n") == ["one", "five"]
    assert ev("$.items[?(@.n == 'one')].v") == [1]
    assert ev("$.items[?(@.v >= 1 && @.n != 'one')].v") == [5]
    assert ev("$.items[?(@.w || @.v == 1)]") == [{"v": 1, "n": "one"}, {"w": 2}]
    assert ev("$.items[?(!(@.v))]") == [{"w": 2}]
    assert ev("$.items[?(@.n =~ /f.*/)].v") == [5]
    assert ev("$.items[?(@.v in [5, 6])].n") == ["five"]
    assert ev("$.items[?(@.v nin [5])].n") == ["one"]
    assert ev("$.items[?(@.v == $.n)]", {"items": [{"v": 1}, {"v": 2}], "n": 2}) == [{"v": 2}]


def test_escaped_bracket_name_matches_aws() -> None:
    """Conformance ESCAPE_SEQUENCES_JSONPATH: a backslash before `"` stays literal."""
    data = json.loads('{"Test\\\\\\"\\"Name\\"": "Value\\"\\\\"}')
    path = json.loads('"$[\'Test\\\\\\"\\"Name\\"\']"')
    assert resolve(compile_path(path), data, {}, {}) == 'Value"\\'
    assert ev("$['it\\'s']", {"it's": 1}) == 1


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        # exact AWS cause (conformance test_catch_states_runtime)
        (
            "$.no.such.result.path",
            "Invalid path '$.no.such.result.path' : Missing property in path $['no']",
        ),
        ("$.Payload", "Invalid path '$.Payload' : No results for path: $['Payload']"),
        ("$.a.b[9]", "Invalid path '$.a.b[9]' : No results for path: $['a']['b'][9]"),
        ("$.a.zz.q", "Invalid path '$.a.zz.q' : Missing property in path $['a']['zz']"),
        ("$.nothing[0]", "Invalid path '$.nothing[0]' : The path $['nothing'] is null"),
        (
            "$.a.b.c",
            "Invalid path '$.a.b.c' : Expected to find an object with property ['c'] in path "
            "$['a']['b'] but found 'net.minidev.json.JSONArray'. This is not a json object "
            "according to the JsonProvider: 'com.jayway.jsonpath.spi.json.JsonSmartJsonProvider'.",
        ),
        ("$undefined.a", "Invalid path '$undefined.a' : The variable 'undefined' is not defined"),
    ],
)
def test_missing_paths_raise_states_runtime(text: str, cause: str) -> None:
    """JP37: a missing path is States.Runtime, worded as AWS words it."""
    with pytest.raises(StatesError) as caught:
        ev(text)
    assert (caught.value.error, caught.value.cause) == ("States.Runtime", cause)
    assert find(compile_path(text), DOC, CONTEXT, VARIABLES) is MISSING


def test_indefinite_path_with_missing_prefix_is_empty() -> None:
    """Conformance test_json_path_array_wildcard_or_slice_with_no_input: `[]`, no error."""
    assert ev("$.zz.items[*]") == []
    assert ev("$.item.items[1:5].itemValue", {}) == []
    assert ev("$[*]", {}) == []
    assert ev("$.s[0:1]", {"s": "text"}) == []


# --- ResultPath ---------------------------------------------------------------------


def test_result_path_dollar_replaces_input() -> None:
    assert apply_result_path({"a": 1}, compile_reference_path("$"), [1]) == [1]


def test_result_path_null_discards_result() -> None:
    """JP31: ResultPath null → output is the raw input."""
    raw = {"a": 1}
    assert apply_result_path(raw, None, {"big": "result"}) == {"a": 1}


def test_result_path_creates_intermediates_without_mutating_input() -> None:
    """JP30: overwrite or create (with missing intermediate objects) in a copy."""
    raw = {"a": {"keep": 1}, "z": [1, 2]}
    out = apply_result_path(raw, compile_reference_path("$.a.b.c"), {"r": 1})
    assert out == {"a": {"keep": 1, "b": {"c": {"r": 1}}}, "z": [1, 2]}
    assert raw == {"a": {"keep": 1}, "z": [1, 2]}
    assert apply_result_path(raw, compile_reference_path("$.a.keep"), 2)["a"] == {"keep": 2}
    assert apply_result_path(raw, compile_reference_path("$.z[1]"), "x")["z"] == [1, "x"]
    assert apply_result_path(raw, compile_reference_path("$['new key']"), 0)["new key"] == 0


@pytest.mark.parametrize(
    ("raw", "path"),
    [("just a string", "$.a"), ({"a": "text"}, "$.a.b"), ({"a": [1]}, "$.a.b"), (5, "$.x")],
)
def test_result_path_match_failure(raw: Any, path: str) -> None:
    """JP32: ResultPath that cannot be applied → States.ResultPathMatchFailure."""
    with pytest.raises(StatesError) as caught:
        apply_result_path(raw, compile_reference_path(path), 1)
    assert caught.value.error == "States.ResultPathMatchFailure"
    assert caught.value.cause == (
        f"Unable to apply ReferencePath {path} to input {json.dumps(raw, separators=(',', ':'))}"
    )


# --- properties ---------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "x y", "0"]), children, max_size=4)
    ),
    max_leaves=20,
)
path_text = st.one_of(
    st.text(alphabet="$.[]*?@()'\"abc01:-,=<> !&|/", max_size=25).map(lambda s: "$" + s),
    st.lists(
        st.sampled_from(
            [".a", ".b", "[0]", "[-1]", "[*]", "..a", "[0:2]", "['x y']", "[?(@.a > 0)]", ".c"]
        ),
        max_size=5,
    ).map(lambda parts: "$" + "".join(parts)),
)


@settings(max_examples=400, deadline=None)
@given(document=json_values, text=path_text)
def test_random_paths_never_crash(document: Any, text: str) -> None:
    try:
        path = compile_path(text)
    except ExpressionSyntaxError:
        return
    value = find(path, document, {}, {})
    if not path.definite:
        assert isinstance(value, list)
    try:
        assert resolve(path, document, {}, {}) == value
    except StatesError as exc:
        assert exc.error == "States.Runtime"
        assert value is MISSING


names_path_text = st.tuples(
    st.sampled_from(["$", "$$", "$var"]),
    st.lists(st.sampled_from([".a", ".b", ".c", "['x y']", "['0']"]), max_size=4),
).map(lambda parts: parts[0] + "".join(parts[1]))


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("$", ()),
        ("$.a.b", ("a", "b")),
        ("$['x y'].c", ("x y", "c")),
        ("$$.Execution.Id", ("Execution", "Id")),
        ("$var.k", ("k",)),
        ("$.a.b[0]", None),
        ("$.items[*].v", None),
        ("$['a','x y']", None),
        ("$..v", None),
    ],
)
def test_a_path_of_single_names_keeps_them(text: str, names: tuple[str, ...] | None) -> None:
    """`Path.names`: what the plain-lookup evaluation walks; None for any other segment."""
    assert compile_path(text).names == names


@settings(max_examples=400, deadline=None)
@given(
    document=json_values,
    context=json_values,
    variable=json_values,
    defined=st.booleans(),
    text=names_path_text,
)
def test_a_names_path_finds_what_the_general_walk_finds(
    document: Any, context: Any, variable: Any, defined: bool, text: str
) -> None:
    """The plain lookups of a names-only path agree with the segment walk, errors included."""
    path = compile_path(text)
    assert path.names is not None
    walked = dataclasses.replace(path, names=None)  # the same path, evaluated segment by segment
    variables = {"var": variable} if defined else {}
    assert find(path, document, context, variables) == find(walked, document, context, variables)
    try:
        expected = resolve(walked, document, context, variables)
    except StatesError as error:
        with pytest.raises(StatesError) as caught:
            resolve(path, document, context, variables)
        assert (caught.value.error, caught.value.cause) == (error.error, error.cause)
    else:
        assert resolve(path, document, context, variables) == expected
