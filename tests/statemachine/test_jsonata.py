"""JSONata mode at the expression level: INVENTORY rows 39-52 (JA) and 53/55 (VAR),
the `{% %}` parts of the AWS-recorded conformance cases, the safety limits, and
the nondeterministic functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sandbox import Sandbox
from statemachine.errors import ExpressionSyntaxError, States, StatesError
from statemachine.jsonata import (
    JsonataTemplate,
    Limits,
    QueryEvaluationError,
    check_result_type,
    check_variable_name,
    compile_expression,
    compile_jsonata_template,
    evaluate_template,
    is_expression,
)
from statemachine.nondeterminism import Fixed
from tests.conformance.support import ROOT as CONFORMANCE_ROOT

CASES = CONFORMANCE_ROOT / "cases" / "local"


def run(
    template: Any,
    *,
    field: str = "Output",
    input: Any = None,
    variables: dict[str, Any] | None = None,
    extra_states: dict[str, Any] | None = None,
    nondeterminism: Fixed | None = None,
    limits: Limits = Limits(),  # noqa: B008
) -> Any:
    states = {"input": {} if input is None else input, "context": {"Execution": {"Id": "x"}}}
    states.update(extra_states or {})
    return evaluate_template(
        compile_jsonata_template(template),
        field=field,
        states=states,
        variables=variables or {},
        nondeterminism=nondeterminism or Fixed(),
        limits=limits,
    )


def failure(template: Any, **kwargs: Any) -> QueryEvaluationError:
    with pytest.raises(QueryEvaluationError) as caught:
        run(template, **kwargs)
    assert caught.value.error == States.QUERY_EVALUATION_ERROR
    return caught.value


# --- JA 39: detection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{% 1 %}", True),
        ("{%1%}", True),
        (" {% 1 %}", False),
        ("{% 1 %} ", False),
        ("{% 1", False),
        ("$.a", False),
        (1, False),
        (None, False),
    ],
)
def test_ja39_expression_detection(value: Any, expected: bool) -> None:
    assert is_expression(value) is expected


def test_ja39_keys_and_non_delimited_strings_stay_literal() -> None:
    result = run({"{% 1 %}": "{% 1 + 1 %}", "b": " {% 1 %}", "c.$": "$.x"})
    assert result == {"{% 1 %}": 2, "b": " {% 1 %}", "c.$": "$.x"}


# --- JA 40: recursive templates ---------------------------------------------------------


def test_ja40_expressions_inside_nested_objects_and_arrays() -> None:
    template = {"a": [1, "{% $states.input.n * 2 %}", {"b": ["{% 'x' & 'y' %}"]}], "c": None}
    assert run(template, input={"n": 21}) == {"a": [1, 42, {"b": ["xy"]}], "c": None}
    assert len(compile_jsonata_template(template).expressions) == 2


def test_ja40_syntax_error_names_the_library_error() -> None:
    with pytest.raises(ExpressionSyntaxError, match="S0207"):
        compile_jsonata_template({"a": ["{% 1 + %}"]})


# --- JA 41-45: the $states binding ------------------------------------------------------


def test_ja41_arguments_cannot_read_result() -> None:
    error = failure({"x": "{% $states.result %}"}, field="Arguments", input={"a": 1})
    assert error.location == "Arguments/x"
    assert error.cause == (
        "The JSONata expression '$states.result' specified for the field 'Arguments/x' "
        "returned nothing (undefined)."
    )


def test_ja42_catcher_output_reads_error_output() -> None:
    error_output = {"Error": "E", "Cause": "c"}
    assert (
        run("{% $states.errorOutput %}", extra_states={"errorOutput": error_output}) == error_output
    )


def test_ja43_input_and_context_everywhere() -> None:
    assert run(["{% $states.input.a %}", "{% $states.context.Execution.Id %}"], input={"a": 1}) == [
        1,
        "x",
    ]


def test_ja44_result_when_bound() -> None:
    assert run("{% $states.result.v + 1 %}", extra_states={"result": {"v": 1}}) == 2


def test_ja45_error_output_when_bound() -> None:
    assert (
        run("{% $states.errorOutput.Error %}", extra_states={"errorOutput": {"Error": "E"}}) == "E"
    )


# --- JA 46: top-level $, $$ and bare names evaluate to nothing --------------------------


@pytest.mark.parametrize("text", ["$", "$$", "a", "$.a"])
def test_ja46_top_level_context_is_undefined(text: str) -> None:
    error = failure("{% " + text + " %}", input={"a": 1})
    assert error.cause.endswith("returned nothing (undefined).")


def test_ja46_names_inside_predicates_are_allowed() -> None:
    items = [{"total": 5}, {"total": 20}]
    assert run("{% $states.input[total > 10] %}", input=items) == {"total": 20}


# --- JA 47: undefined results -----------------------------------------------------------


def test_ja47_undefined_names_field_path_in_cause_and_location() -> None:
    error = failure({"error": "{% $stateError %}"})
    assert error.location == "Output/error"
    assert error.cause == (
        "The JSONata expression '$stateError' specified for the field 'Output/error' "
        "returned nothing (undefined)."
    )


def test_ja47_null_is_not_undefined() -> None:
    assert run("{% $states.input.items %}", input={"items": None}) is None
    assert run({"v": "{% $v %}"}, variables={"v": None}) == {"v": None}


# --- JA 48: result types ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tail"),
    [
        (True, "Expected 'array', but was 'boolean' for value: true"),
        (None, "Expected 'array', but was 'null' for value: null"),
        (1, "Expected 'array', but was 'number' for value: 1"),
        ({"foo": "bar"}, "Expected 'array', but was 'object' for value: {\"foo\":\"bar\"}"),
        ("string", "Expected 'array', but was 'string' for value: \"string\""),
    ],
)
def test_ja48_unexpected_result_type_as_aws_words_it(value: Any, tail: str) -> None:
    items = run("{% $ItemsVar %}", field="Items", variables={"ItemsVar": value})
    with pytest.raises(QueryEvaluationError) as caught:
        check_result_type(items, expected="array", field="Items", expression_text="$ItemsVar")
    assert caught.value.cause == (
        "The JSONata expression '$ItemsVar' specified for the field 'Items' returned an "
        f"unexpected result type. {tail}"
    )
    assert caught.value.location == "Items"


# --- JA 49: JSONata semantics, minus $eval ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$sum([1, 2, 3.5])", 6.5),
        ("10 / 4", 2.5),
        ("3 * 2.0", 6),
        ("$uppercase('abc')", "ABC"),
        ("$map([1, 2], function($v, $i) { $v + $i })", [1, 3]),
        ("$sort([3, 1, 2])", [1, 2, 3]),
        ("$distinct([1, 1, {'a': 1}, {'a': 1}])", [1, {"a": 1}]),
        ("$string({'a': [1, null]})", '{"a":[1,null]}'),
        ("$type(null)", "null"),
        ("$contains('hello$world', /^hello\\$/)", True),
        ("$join(['a', 'b'], '-')", "a-b"),
        ("$split('a,b', ',')", ["a", "b"]),
        ("$replace('aaa', 'a', 'b', 2)", "bba"),
        ("$pad('x', 3, '#')", "x##"),
        ("( $x := 5; $x * $x )", 25),
        ("[1..3]", [1, 2, 3]),
        ("9007199254740993 * 1000", 9007199254740992000),
        ("1e300 * 10", 1e301),
    ],
)
def test_ja49_library_semantics(text: str, expected: Any) -> None:
    result = run("{% " + text + " %}")
    assert result == expected
    assert type(result) is type(expected)


def test_ja49_eval_is_unavailable() -> None:
    error = failure("{% $eval('1 + 1') %}")
    assert error.cause == (
        "The JSONata expression '$eval('1 + 1')' specified for the field 'Output' threw an "
        "error during evaluation. T1006: Attempted to invoke a non-function"
    )


def test_ja49_library_errors_are_query_evaluation_errors() -> None:
    error = failure("{% $abs('x') %}")
    assert error.cause == (
        "The JSONata expression '$abs('x')' specified for the field 'Output' threw an error "
        "during evaluation. T0410: Argument 1 of function abs does not match function signature"
    )


# --- JA 50: Step Functions' extra functions ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$partition([1, 2, 3, 4, 5], 2)", [[1, 2], [3, 4], [5]]),
        ("$range(0, 10, 2)", [0, 2, 4, 6, 8, 10]),
        ("$range(5, 1, -2)", [5, 3, 1]),
        ("$hash('input data', 'MD5')", "812f45842bc6d66ee14572ce20db8e86"),
        (
            "$hash('input data', 'SHA-256')",
            "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3",
        ),
        ("$parse('{\"a\": [1, null]}')", {"a": [1, None]}),
        ("$random(7) = $random(7)", True),
    ],
)
def test_ja50_extra_functions(text: str, expected: Any) -> None:
    assert run("{% " + text + " %}") == expected


def test_ja50_nondeterministic_functions_use_the_callers_source() -> None:
    source = Fixed(now=datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC), random_value=0.25)
    result = run(
        ["{% $uuid() %}", "{% $uuid() %}", "{% $random() %}", "{% $now() %}", "{% $millis() %}"],
        nondeterminism=source,
    )
    assert result == [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        0.25,
        "2025-03-04T05:06:07.890Z",
        1741064767890,
    ]


def test_ja50_bad_arguments_fail() -> None:
    assert "$partition" in failure("{% $partition([1], 0) %}").cause
    assert "hash algorithm" in failure("{% $hash('x', 'CRC') %}").cause
    assert "$parse" in failure("{% $parse('{') %}").cause


# --- JA 51-52: numeric fields and Items -------------------------------------------------


def test_ja51_integer_fields() -> None:
    assert (
        check_result_type(
            run("{% 30 / 2 %}"),
            expected="integer",
            field="TimeoutSeconds",
            expression_text="30 / 2",
        )
        == 15
    )
    with pytest.raises(
        QueryEvaluationError, match=r"Expected 'integer', but was 'number' for value: 1\.5"
    ):
        check_result_type(1.5, expected="integer", field="TimeoutSeconds", expression_text="x")


def test_ja52_items_from_expression() -> None:
    items = run("{% $states.input.items %}", field="Items", input={"items": [1, "two", True]})
    assert check_result_type(items, expected="array", field="Items", expression_text="x") == [
        1,
        "two",
        True,
    ]


# --- VAR 53, 55 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("x", True),
        ("ItemsVar", True),
        ("_x1", True),
        ("Ünïcödé", True),
        ("a" * 80, True),
        ("a" * 81, False),
        ("states", False),
        ("1x", False),
        ("a-b", False),
        ("", False),
        ("a b", False),
    ],
)
def test_var53_naming_rules(name: str, ok: bool) -> None:
    assert (check_variable_name(name) is None) is ok


def test_var55_assign_right_hand_sides_see_entry_values() -> None:
    entry = {"x": 1}
    assigned = run({"x": 42, "old": "{% $x %}"}, field="Assign", variables=entry)
    assert assigned == {"x": 42, "old": 1}
    assert entry == {"x": 1}


def test_evaluation_does_not_mutate_the_callers_data() -> None:
    data = {"a": {"b": None}}
    result = run("{% $states.input %}", input=data)
    result["a"]["c"] = 1
    assert data == {"a": {"b": None}}


# --- conformance cases recorded on AWS --------------------------------------------------


def _single_pass_cases() -> list[Any]:
    found = []
    for path in sorted(CASES.glob("*.json")):
        case = json.loads(path.read_text())
        states = case["definition"]["States"]
        if len(states) != 1 or case["expected"]["status"] != "SUCCEEDED":
            continue
        (state,) = states.values()
        if state["Type"] == "Pass" and "Output" in state and "{%" in json.dumps(state["Output"]):
            found.append(
                pytest.param(
                    state["Output"], case["input"], case["expected"]["output"], id=path.name[:60]
                )
            )
    return found


@pytest.mark.parametrize(("output", "input_", "expected"), _single_pass_cases())
def test_conformance_pass_output(output: Any, input_: Any, expected: Any) -> None:
    assert run(output, input=input_) == expected


def test_conformance_case_count() -> None:
    assert len(_single_pass_cases()) >= 12


# --- safety -----------------------------------------------------------------------------

HOSTILE = [
    "( $f := function($x){ $f($x) }; $f(1) )",
    "( $f := function($x){ $x + $f($x) }; $f(1) )",
    "[1..1e9]",
    "$count([1..1e7])",
    "$pad('', 1e9)",
    "( $s := function($x, $n){ $n = 0 ? $x : $s($x & $x, $n - 1) }; $s('ab', 60) )",
    "$reduce([1..5000], function($acc, $x){ {'a': $acc} }, {})",
    "( $f := function($x){ {'a': $f($x)} }; $f(1) )",
    "$join($map([1..90000], function($v){ $pad('', 1000, 'x') }))",
    "$string($map([1..90000], function($v){ $pad('', 1000, 'x') }))",
    "$split($pad('', 4000000, 'a'), '')",
    "$replace($pad('', 100000, 'a'), 'a', $pad('', 1000, 'b'))",
    "$count([1..99999][$ in [1..99999]])",
    "$count($keys($merge([1..99999].{$string($): $})))",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_expressions_end_in_time_and_leave_the_process_healthy(text: str) -> None:
    error = failure("{% " + text + " %}", limits=Limits(timeout_seconds=1.0))
    assert error.cause.startswith(
        f"The JSONata expression '{text}' specified for the field 'Output' threw an error "
        "during evaluation. "
    )
    assert run("{% 1 + 1 %}") == 2


def _aws_message(text: str, message: str) -> str:
    return (
        f"The JSONata expression '{text}' specified for the field 'Output' threw an error "
        f"during evaluation. {message}"
    )


TIMEOUT = "D1012: Expression evaluation timeout: Check for infinite loop"


def test_timeout_and_depth_errors_use_jsonata_codes() -> None:
    endless = "( $f := function($x){ $f($x) }; $f(1) )"
    assert failure("{% " + endless + " %}").cause == _aws_message(endless, TIMEOUT)
    deep = "( $f := function($x){ 1 + $f($x) }; $f(1) )"
    assert failure("{% " + deep + " %}").cause == _aws_message(
        deep, "D1011: Stack overflow error: Check for non-terminating recursive function"
    )


def test_the_deadline_stops_a_long_but_finite_evaluation() -> None:
    """200,000 steps, well inside every size limit: only the deadline can stop them early
    (without it the evaluation would finish, seconds later, with 200000)."""
    long = "$sum([1..100].($a := $; $sum([1..100].($b := $; $count([1..20].($a+$b+$))))))"
    error = failure("{% " + long + " %}", limits=Limits(timeout_seconds=0.2))
    assert error.cause == _aws_message(long, TIMEOUT)
    assert error.location == "Output"


def test_limits_allow_ordinary_deep_recursion() -> None:
    text = "{% ( $f := function($n){ $n <= 1 ? 1 : $n * $f($n - 1) }; $f(170) ) %}"
    # The subject is the depth limit, not the deadline: a generous deadline
    # keeps a loaded machine from failing it for the wrong reason.
    assert run(text, limits=Limits(timeout_seconds=60)) == pytest.approx(7.257415615307994e306)


def test_regex_literal_is_flagged_for_the_sandbox() -> None:
    assert compile_expression("{% $contains('a', /a/) %}").uses_regex
    assert not compile_expression("{% $contains('a', 'a') %}").uses_regex
    assert compile_jsonata_template({"a": ["{% $match('a', /a/) %}"]}).uses_regex


@pytest.fixture(scope="module")
def sandbox() -> Any:
    with Sandbox() as box:
        yield box


def _isolated(box: Sandbox, template: JsonataTemplate, source: Fixed) -> Any:
    return box.evaluate_isolated(
        template,
        field="Output",
        states={"input": {}, "context": {}},
        variables={"v": 2},
        nondeterminism=source,
    )


def test_sandbox_kills_catastrophic_regex_and_recovers(sandbox: Sandbox) -> None:
    hostile = compile_jsonata_template("{% $match('" + "a" * 40 + "!', /(a+)+$/) %}")
    with pytest.raises(QueryEvaluationError) as killed:
        _isolated(sandbox, hostile, Fixed())
    assert killed.value.cause.endswith(TIMEOUT)
    assert _isolated(sandbox, compile_jsonata_template("{% $contains('ab', /b/) %}"), Fixed())


def test_sandbox_routes_nondeterminism_to_the_parent(sandbox: Sandbox) -> None:
    source = Fixed(random_value=0.125)
    template = compile_jsonata_template(["{% $uuid() %}", "{% $random() %}", "{% $v %}"])
    assert _isolated(sandbox, template, source) == [
        "00000000-0000-4000-8000-000000000001",
        0.125,
        2,
    ]
    assert source.uuid() == "00000000-0000-4000-8000-000000000002"


def test_sandbox_reports_query_errors_with_location(sandbox: Sandbox) -> None:
    with pytest.raises(QueryEvaluationError) as caught:
        _isolated(sandbox, compile_jsonata_template({"e": "{% $nope %}"}), Fixed())
    assert caught.value.location == "Output/e"


# --- properties -------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


# The time limit for the property tests, which assert results, not speed.
ROOMY = Limits(timeout_seconds=60)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_property_variables_round_trip(value: Any) -> None:
    # Generous time: the property is the round trip, not the pace of a loaded machine.
    assert run("{% $v %}", variables={"v": value}, limits=ROOMY) == value


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-1000, 1000), max_size=30), st.integers(1, 10))
def test_property_partition_concatenates_back(items: list[int], size: int) -> None:
    parts = (
        run("{% $partition($v, $n) %}", variables={"v": items, "n": size}, limits=ROOMY)
        if items
        else []
    )
    assert [item for part in parts for item in part] == items
    assert all(len(part) == size for part in parts[:-1])


def test_a_slow_starting_sandbox_worker_does_not_eat_the_expressions_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose start-up outlasts the deadline still evaluates: start-up is not evaluation.

    Every new worker imports `sitecustomize` from the path it inherits; this
    one sleeps a second, longer than the expression's whole budget (0.1 s
    plus the grace), as a cold start on a loaded machine can.
    """
    (tmp_path / "sitecustomize.py").write_text("import time\ntime.sleep(1.0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    template = compile_jsonata_template("{% $contains('ab', /b/) %}")
    with Sandbox() as box:
        answer = box.evaluate_isolated(
            template,
            field="Output",
            states={"input": {}, "context": {}},
            variables={},
            nondeterminism=Fixed(),
            limits=Limits(timeout_seconds=0.1),
        )
    assert answer is True


def test_a_sandbox_worker_that_cannot_start_is_a_clear_runtime_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sitecustomize.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    template = compile_jsonata_template("{% $contains('ab', /b/) %}")
    with Sandbox() as box, pytest.raises(StatesError) as failed:
        box.evaluate_isolated(
            template,
            field="Output",
            states={"input": {}, "context": {}},
            variables={},
            nondeterminism=Fixed(),
        )
    assert failed.value.error == States.RUNTIME
    assert failed.value.cause == "The JSONata sandbox's worker process ended while starting"


def test_a_sandbox_worker_not_asked_for_ready_answers_only_what_it_is_sent() -> None:
    """A parent of an older version (no "ready" argument) gets its answer as the first message."""
    import os
    import socket
    import subprocess
    import sys
    from multiprocessing.connection import Connection

    from engine import sandbox

    parent, child = socket.socketpair()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    process = subprocess.Popen(
        [sys.executable, "-c", sandbox._BOOT, str(child.fileno()), str(sandbox.MEMORY_LIMIT_BYTES)],
        pass_fds=[child.fileno()],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    child.close()
    connection = Connection(parent.detach())
    try:
        source = "{% $contains('ab', /b/) %}"
        request = ("evaluate", source, "Output", {"input": {}, "context": {}}, {}, Limits())
        connection.send(request)
        assert connection.poll(60)
        assert connection.recv() == ("ok", True)
    finally:
        connection.close()
        process.kill()
        process.wait()
