"""Intrinsic functions: grammar, every function's AWS result, and failures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemachine.errors import ExpressionSyntaxError, StatesError
from statemachine.intrinsics import compile_intrinsic, evaluate_intrinsic, is_intrinsic
from statemachine.nondeterminism import Fixed

INPUT: dict[str, Any] = {
    "arr": [1, 2, 2, 3, 3, 4],
    "obj": {"Arg1": 1, "Arg2": []},
    "s": "Hello World",
    "n": 5,
    "f": 1.5,
}
CONTEXT = {"Execution": {"Input": {"FunctionInput": "a,b"}}}
VARIABLES = {"v": [9, 8]}


def call(text: str, data: Any = INPUT, nondeterminism: Fixed | None = None) -> Any:
    fn = compile_intrinsic(text)
    assert fn.text == text
    return evaluate_intrinsic(fn, data, CONTEXT, VARIABLES, nondeterminism or Fixed())


def failure(text: str, data: Any = INPUT) -> str:
    with pytest.raises(StatesError) as caught:
        call(text, data)
    assert caught.value.error == "States.IntrinsicFailure"
    return caught.value.cause


# --- grammar (INT 78, 79, 80) -------------------------------------------------------


def test_is_intrinsic() -> None:
    assert is_intrinsic("States.Array()")
    assert is_intrinsic("States.Format('{}', $.a)")
    assert not is_intrinsic("$.a")
    assert not is_intrinsic("plain text")


def test_argument_kinds() -> None:
    text = "States.Array('a', 1, -2, 1.5, true, false, null, $.n, $$.Execution.Input.FunctionInput"
    text += ", $v[0])"
    assert call(text) == ["a", 1, -2, 1.5, True, False, None, 5, "a,b", 9]
    assert call("States.Array()") == []
    assert call("States.Array($.arr[0:2], $['obj'])") == [[1, 2], {"Arg1": 1, "Arg2": []}]


def test_string_escapes() -> None:
    """INT79: \\' \\{ \\} \\\\ are escapes inside string literals."""
    assert call(r"States.Array('it\'s', '\{\}', 'back\\slash')") == ["it's", "{}", "back\\slash"]
    with pytest.raises(ExpressionSyntaxError, match="escape"):
        compile_intrinsic(r"States.Array('bad \q')")


def test_nesting_limit() -> None:
    ten = "States.Array(" * 10 + ")" * 10
    assert call(ten) == json.loads("[" * 10 + "]" * 10)
    with pytest.raises(ExpressionSyntaxError, match="nest"):
        compile_intrinsic("States.Array(" * 11 + ")" * 11)


@pytest.mark.parametrize(
    "text",
    [
        "States.Nope()",
        "States.Array(",
        "States.Array('x') trailing",
        "States.UUID(1)",
        "States.ArrayLength()",
        "States.JsonMerge($.a, $.b, true)",
        "States.Hash('x', 'SHA-999')",
        "States.Format('{} {}', 1)",
        "States.Array('unterminated)",
        "States.Array(1,)",
        "States.Array($.a[)",
    ],
)
def test_static_errors(text: str) -> None:
    with pytest.raises(ExpressionSyntaxError):
        compile_intrinsic(text)


# --- functions (INT 81-91) ----------------------------------------------------------


def test_format() -> None:
    """INT81: AWS renders objects/arrays Java-style and strings without quotes."""
    assert call("States.Format('Hello {}, you are {}', $.s, $.n)") == "Hello Hello World, you are 5"
    assert call("States.Format('{} {} {} {}', $.obj, $.arr, null, true)") == (
        "{Arg1=1, Arg2=[]} [1, 2, 2, 3, 3, 4] null true"
    )
    assert call("States.Format('{}|{}|{}', 1.1, 1.0E10, 0.0001)") == "1.1|1.0E10|1.0E-4"
    assert call(r"States.Format('\{\} {}', 'x')") == "{} x"
    assert call("States.Format($.t, 1)", {"t": "a{}b"}) == "a1b"
    assert failure("States.Format($.t, 1, 2)", {"t": "a{}b"}) == (
        "The number of arguments to States.Format (2) does not match the number of placeholders (1)"
    )


def test_string_to_json_and_back() -> None:
    """INT82."""
    assert call("States.StringToJson($.t)", {"t": '{"a": [1, 2.5]}'}) == {"a": [1, 2.5]}
    assert call("States.StringToJson($.t)", {"t": "  "}) is None
    assert call("States.StringToJson($.t)", {"t": "-0"}) == 0
    assert call("States.JsonToString($.obj)") == '{"Arg1":1,"Arg2":[]}'
    assert call("States.JsonToString($.s)") == '"Hello World"'
    assert failure("States.StringToJson($.t)", {"t": "{nope"}) == (
        "The argument of States.StringToJson is not valid JSON: {nope"
    )
    assert failure("States.StringToJson($.n)") == (
        "The argument of States.StringToJson must be a string, got: 5"
    )


def test_array_functions() -> None:
    """INT83-85."""
    assert call("States.ArrayPartition($.arr, 4)") == [[1, 2, 2, 3], [3, 4]]
    assert call("States.ArrayPartition(States.Array(), 4)") == []
    assert failure("States.ArrayPartition($.arr, 0)") == (
        "The chunk size of States.ArrayPartition must be positive, got: 0"
    )
    assert failure("States.ArrayPartition($.s, 2)") == (
        'The first argument of States.ArrayPartition must be an array, got: "Hello World"'
    )
    assert call("States.ArrayContains($.arr, 3)") is True
    assert call("States.ArrayContains($.arr, 9)") is False
    assert call("States.ArrayContains(States.Array(true), 1)") is False
    assert call("States.ArrayContains(States.Array($.obj), $.obj)") is True
    assert call("States.ArrayLength($.arr)") == 6
    assert failure("States.ArrayLength($.obj)") == (
        'The first argument of States.ArrayLength must be an array, got: {"Arg1":1,"Arg2":[]}'
    )
    assert call("States.ArrayUnique($.arr)") == [1, 2, 3, 4]
    assert call("States.ArrayUnique(States.Array(1, true, 1, $.obj, $.obj))") == [
        1,
        True,
        {"Arg1": 1, "Arg2": []},
    ]
    assert call("States.ArrayGetItem($.arr, 5)") == 4
    assert failure("States.ArrayGetItem($.arr, 6)") == (
        "The index 6 is out of bounds for an array of length 6 in States.ArrayGetItem"
    )
    assert failure("States.ArrayGetItem($.arr, -1)") == (
        "The index -1 is out of bounds for an array of length 6 in States.ArrayGetItem"
    )


def test_array_range() -> None:
    """INT86: integers, inclusive end, step != 0, at most 1000 items."""
    assert call("States.ArrayRange(1, 10, 2)") == [1, 3, 5, 7, 9]
    assert call("States.ArrayRange(0, 3, 1)") == [0, 1, 2, 3]
    assert call("States.ArrayRange(5, 1, -2)") == [5, 3, 1]
    assert call("States.ArrayRange(5, 1, 1)") == []
    assert len(call("States.ArrayRange(1, 1000, 1)")) == 1000
    assert failure("States.ArrayRange(0, 1000, 1)") == (
        "States.ArrayRange would produce 1001 items; at most 1000 are allowed"
    )
    assert failure("States.ArrayRange(0, 10, 0)") == ("The step of States.ArrayRange must not be 0")
    assert failure("States.ArrayRange(0, 1.5, 1)") == (
        "The end of States.ArrayRange must be an integer, got: 1.5"
    )


def test_base64() -> None:
    """INT87."""
    assert call("States.Base64Encode($.s)") == "SGVsbG8gV29ybGQ="
    assert call("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')") == "Data to encode"
    assert call("States.Base64Decode('')") == ""
    assert failure("States.Base64Decode('***')") == (
        "The argument of States.Base64Decode is not valid base64: ***"
    )
    assert failure("States.Base64Encode($.t)", {"t": "x" * 10001}) == (
        "The input of States.Base64Encode is 10001 characters; at most 10000 are allowed"
    )


def test_hash() -> None:
    """INT88: five algorithms, lowercase hex."""
    assert call("States.Hash('input data', 'MD5')") == "812f45842bc6d66ee14572ce20db8e86"
    assert call("States.Hash('input data', 'SHA-1')") == "aaff4a450a104cd177d28d18d74485e8cae074b7"
    assert call("States.Hash('input data', 'SHA-256')") == (
        "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"
    )
    assert len(call("States.Hash('input data', 'SHA-384')")) == 96
    assert len(call("States.Hash('input data', 'SHA-512')")) == 128
    assert failure("States.Hash('x', $.alg)", {"alg": "SHA-3"}) == (
        "The algorithm 'SHA-3' is not supported by States.Hash; "
        "use one of MD5, SHA-1, SHA-256, SHA-384, SHA-512"
    )
    assert failure("States.Hash($.t, 'MD5')", {"t": "x" * 10001}) == (
        "The input of States.Hash is 10001 characters; at most 10000 are allowed"
    )


def test_json_merge() -> None:
    """INT89: shallow merge only; the second object wins."""
    data = {"a": {"x": 1, "n": {"p": 1}}, "b": {"y": 2, "n": {"q": 2}}}
    assert call("States.JsonMerge($.a, $.b, false)", data) == {"x": 1, "y": 2, "n": {"q": 2}}
    assert failure("States.JsonMerge($.a, $.b, $.deep)", {**data, "deep": True}) == (
        "States.JsonMerge supports only a shallow merge: its third argument must be false"
    )
    assert failure("States.JsonMerge($.a, 1, false)", data) == (
        "The first two arguments of States.JsonMerge must be JSON objects"
    )


def test_math_add_rounds_like_java() -> None:
    """INT90: AWS rounds each non-integer argument half-up (Java Math.round)."""
    cases = {
        (-9, 3): -6,
        (1.49, 1.5): 3,
        (1.5, 1.51): 4,
        (-1.49, -1.5): -2,
        (2.5, 0): 3,
        (-2.5, 0): -2,
        (-0.5, 0.5): 1,
        (0.5, 0): 1,
        (2**60, 1): 2**60 + 1,  # exact beyond the doubles' integers
        (-(2**53), 2**53): 0,
        (10**400, 1): 10**400 + 1,  # past a double's range: still exact, never an OverflowError
    }
    for (a, b), expected in cases.items():
        assert call("States.MathAdd($.a, $.b)", {"a": a, "b": b}) == expected
    assert call("States.MathAdd($.n, -1)") == 4
    assert failure("States.MathAdd($.s, 1)") == (
        'The arguments of States.MathAdd must be numbers, got: "Hello World"'
    )


def test_math_random() -> None:
    """INT90: random in [start, end]; a seed makes it deterministic."""
    assert call("States.MathRandom(1, 10)", nondeterminism=Fixed(random_value=0.0)) == 1
    assert call("States.MathRandom(1, 10)", nondeterminism=Fixed(random_value=0.999)) == 10
    seeded = {call("States.MathRandom(0, 999, 3)") for _ in range(3)}
    assert len(seeded) == 1 and 0 <= seeded.pop() <= 999
    assert failure("States.MathRandom(10, 1)") == (
        "The start 10 of States.MathRandom is greater than its end 1"
    )


def test_string_split_and_uuid() -> None:
    """INT91: every delimiter character splits; empty pieces dropped."""
    assert call("States.StringSplit($.t, ',')", {"t": ", , ,"}) == [" ", " "]
    words = call("States.StringSplit($.t, '.+,=')", {"t": "This.is+a,test=string"})
    assert words == ["This", "is", "a", "test", "string"]
    assert call("States.StringSplit($$.Execution.Input.FunctionInput, ',')") == ["a", "b"]
    assert failure("States.StringSplit($.n, ',')") == (
        "The argument of States.StringSplit must be a string, got: 5"
    )
    assert call("States.UUID()") == "00000000-0000-4000-8000-000000000001"


def test_missing_path_argument_is_states_runtime() -> None:
    with pytest.raises(StatesError) as caught:
        call("States.ArrayLength($.nope)")
    assert caught.value.error == "States.Runtime"
    assert caught.value.cause == "Invalid path '$.nope' : No results for path: $['nope']"


def test_assign_from_intrinsics_case() -> None:
    """Values of conformance BASE_ASSIGN_FROM_INTRINSIC_FUNCTION (its Result as input)."""
    data = {
        "inputArray": [1, 2, 3, 4, 5, 6],
        "duplicateArray": [1, 2, 2, 3, 3, 4],
        "json1": {"a": 1, "b": 2},
        "json2": {"c": 3, "d": 4},
        "jsonString": '{"key":"value"}',
        "jsonObject": {"test": "object"},
        "csvString": "a,b,c,d,e",
        "name": "John",
        "place": "LocalStack",
    }
    expected = {
        "States.ArrayLength($.inputArray)": 6,
        "States.ArrayContains($.inputArray, 5)": True,
        "States.ArrayPartition($.inputArray, 2)": [[1, 2], [3, 4], [5, 6]],
        "States.ArrayGetItem($.inputArray, 2)": 3,
        "States.JsonMerge($.json1, $.json2, false)": {"a": 1, "b": 2, "c": 3, "d": 4},
        "States.StringToJson($.jsonString)": {"key": "value"},
        "States.JsonToString($.jsonObject)": '{"test":"object"}',
        "States.Format('Hello {}, welcome to {}!', $.name, $.place)": (
            "Hello John, welcome to LocalStack!"
        ),
        "States.StringSplit($.csvString, ',')": ["a", "b", "c", "d", "e"],
    }
    for text, value in expected.items():
        assert call(text, data) == value


# --- properties ---------------------------------------------------------------------

intrinsic_text = st.text(alphabet="States.ArayFmUIDJ()$.,' 0123456789abc{}\\-", max_size=40)


@settings(max_examples=300, deadline=None)
@given(text=intrinsic_text, data=st.dictionaries(st.sampled_from("abc"), st.integers()))
def test_random_intrinsic_text_never_crashes(text: str, data: dict[str, int]) -> None:
    try:
        fn = compile_intrinsic(text)
    except ExpressionSyntaxError:
        return
    try:
        evaluate_intrinsic(fn, data, {}, {}, Fixed())
    except StatesError as exc:
        assert exc.error in ("States.IntrinsicFailure", "States.Runtime")
