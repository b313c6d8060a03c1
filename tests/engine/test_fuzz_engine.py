"""Fuzz: random definitions and inputs through `Engine.run` end as an execution status.

Hypothesis builds machines from every state type with JSONPath paths,
filters (regexes included), intrinsics and JSONata expressions drawn from
lists of plausible and hostile ones, and inputs of any JSON shape (lone
surrogates and deep nesting among them). Whatever it builds, `Engine.run`
either refuses it at the edge (DefinitionError, InvalidExecutionInput:
what a user gets for a bad definition or input) or returns a record in a
terminal status; nothing else ever comes out of the engine, and the engine
still runs a plain execution afterwards.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.errors import DefinitionError, InvalidExecutionInput

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}

PATHS = [
    "$",
    "$.a",
    "$.a[0]",
    "$.a[-1]",
    "$.a[1:3]",
    "$..b",
    "$.a[*].b",
    "$.missing",
    "$.a[?(@.x > 1)]",
    "$.a[?(@.s =~ /^(a|aa)+$/)]",
    "$.a[?(@.s =~ /b.*/i)]",
    "$$.Execution.Input",
    "$$.State.Name",
    "$.s",
    "$.n",
]
INTRINSICS = [
    "States.StringToJson($.s)",
    "States.JsonToString($)",
    "States.Array($.a, 1, 'x')",
    "States.ArrayLength($.a)",
    "States.ArrayContains($.a, 1)",
    "States.ArrayUnique($.a)",
    "States.ArrayPartition($.a, 2)",
    "States.ArrayRange(1, $.n, 1)",
    "States.ArrayGetItem($.a, $.n)",
    "States.MathAdd($.n, 1)",
    "States.MathRandom(1, 10)",
    "States.Format('{} and {}', $.s, $.n)",
    "States.StringSplit($.s, ',')",
    "States.Hash($.s, 'SHA-256')",
    "States.Base64Encode($.s)",
    "States.Base64Decode($.s)",
    "States.JsonMerge($.a, $, false)",
    "States.UUID()",
]
JSONATA = [
    "{% $states.input %}",
    "{% $states.input.a %}",
    "{% $count($states.input.a) %}",
    "{% $string($states.input) %}",
    "{% $eval($states.input.s) %}",
    "{% $parse($states.input.s) %}",
    "{% $states.input.s ~> /a+b/ %}",
    "{% $match($states.input.s, /(a|aa)+$/) %}",
    "{% [1..$states.input.n] %}",
    "{% $reduce([1..$states.input.n], function($x, $y){ $x + $y }) %}",
    "{% $uuid() %}",
    "{% $now() %}",
    "{% '\\ud800' %}",
    "{% $states.input.n / 0 %}",
    "{% $sum($states.input.a) %}",
    "{% $states.context.State.Name %}",
]
HOSTILE_TEXT = [
    "",
    "nul\u0000",
    "\ud800",
    "\udcff x",
    "[" * 600 + "]" * 600,
    "a" * 60 + "b",
    '"\\ud800"',
    "{",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(HOSTILE_TEXT)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
inputs = (
    st.fixed_dictionaries(
        {},
        optional={
            "a": st.lists(json_values, max_size=5),
            "s": st.text(max_size=30) | st.sampled_from(HOSTILE_TEXT),
            "n": st.integers(min_value=-5, max_value=200_000) | st.floats(allow_nan=False),
            "b": json_values,
        },
    )
    | json_values
)


@st.composite
def jsonpath_state(draw: st.DrawFn, name: str, following: str | None) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Pass", "Choice", "Wait", "Map", "Parallel", "Fail", "Succeed"]))
    ending: dict[str, Any] = {"Next": following} if following else {"End": True}
    if kind == "Pass":
        state: dict[str, Any] = {"Type": "Pass", **ending}
        parameters = draw(
            st.dictionaries(
                st.sampled_from(["x.$", "y.$", "z"]),
                st.sampled_from(PATHS + INTRINSICS),
                max_size=3,
            )
        )
        if parameters:
            state["Parameters"] = parameters
        for field in ("InputPath", "ResultPath", "OutputPath"):
            if draw(st.booleans()):
                state[field] = draw(st.sampled_from([*PATHS[:8], None]))
        return state
    if kind == "Choice":
        comparator = draw(
            st.sampled_from(
                [
                    ("NumericGreaterThan", 1),
                    ("StringMatches", "a*b"),
                    ("IsPresent", True),
                    ("StringEquals", "\ud800"),
                ]
            )
        )
        target = following or "Done"
        return {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": draw(st.sampled_from(PATHS[:10])),
                    comparator[0]: comparator[1],
                    "Next": target,
                }
            ],
            **({"Default": target} if draw(st.booleans()) else {}),
        }
    if kind == "Wait":
        return {"Type": "Wait", "Seconds": 0, **ending}
    if kind == "Map":
        return {
            "Type": "Map",
            "ItemsPath": draw(st.sampled_from(["$.a", "$", "$.missing", "$.b"])),
            "ItemProcessor": {
                "StartAt": f"{name}In",
                "States": {
                    f"{name}In": {
                        "Type": "Pass",
                        "Parameters": {"v.$": draw(st.sampled_from(["$", *INTRINSICS[:4]]))},
                        "End": True,
                    }
                },
            },
            **ending,
        }
    if kind == "Parallel":
        return {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": f"{name}B{i}", "States": {f"{name}B{i}": {"Type": "Pass", "End": True}}}
                for i in range(2)
            ],
            **ending,
        }
    if kind == "Fail":
        return (
            {"Type": "Fail", "Error": "Fuzz", "Cause": "\ud800"}
            if draw(st.booleans())
            else {"Type": "Fail"}
        )
    return {"Type": "Succeed"}


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=4))
    names = [f"S{i}" for i in range(count)]
    if draw(st.booleans()):
        states = {
            name: {
                "Type": "Pass",
                "Output": draw(st.sampled_from(JSONATA)),
                **({"Next": names[i + 1]} if i + 1 < count else {"End": True}),
            }
            for i, name in enumerate(names)
        }
        return {"QueryLanguage": "JSONata", "StartAt": names[0], "States": states}
    states = {
        name: draw(jsonpath_state(name, names[i + 1] if i + 1 < count else None))
        for i, name in enumerate(names)
    }
    states["Done"] = {"Type": "Succeed"}
    return {"StartAt": names[0], "States": states}


def test_every_random_execution_ends_in_a_status(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(definition=definitions(), payload=inputs)
        def run_one(definition: dict[str, Any], payload: Any) -> None:
            try:
                record = engine.run_sync(definition, payload)
            except (DefinitionError, InvalidExecutionInput):
                return  # refused at the edge, with the error a user gets
            assert record.status in TERMINAL, record

        run_one()
        plain = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
        assert engine.run_sync(plain, {"still": "fine"}).status == "SUCCEEDED"
