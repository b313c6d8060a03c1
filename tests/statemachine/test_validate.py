"""Definition validation: one invalid definition per rule, with code and location.

Each case asserts the exact set of ERRORs (code, JSON pointer) the validator
reports, so a rule that stops firing, fires in the wrong place or drags
spurious errors along makes its test fail.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemachine.diagnostics import Diagnostic, json_pointer
from statemachine.validate import is_valid, validate, validate_text
from tests.conformance.support import case_files

LAMBDA = "arn:aws:states:::lambda:invoke"
PASS_END: dict[str, Any] = {"Type": "Pass", "End": True}


def machine(states: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"StartAt": next(iter(states)), "States": states, **top}


def one(state: dict[str, Any], **top: Any) -> dict[str, Any]:
    return machine({"A": state}, **top)


def task(**fields: Any) -> dict[str, Any]:
    return one({"Type": "Task", "Resource": LAMBDA, "End": True, **fields})


def wait(**fields: Any) -> dict[str, Any]:
    return one({"Type": "Wait", "End": True, **fields})


def fail(**fields: Any) -> dict[str, Any]:
    return one({"Type": "Fail", **fields})


def processor() -> dict[str, Any]:
    return {"StartAt": "Item", "States": {"Item": dict(PASS_END)}}


def map_state(**fields: Any) -> dict[str, Any]:
    return one({"Type": "Map", "ItemProcessor": processor(), "End": True, **fields})


def choice(*rules: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return machine(
        {
            "A": {"Type": "Choice", "Choices": list(rules), "Default": "D", **fields},
            "D": dict(PASS_END),
            "E": dict(PASS_END),
        }
    )


def rule(**fields: Any) -> dict[str, Any]:
    return {"Variable": "$.x", "Next": "E", **fields}


def jsonata_choice(*rules: dict[str, Any]) -> dict[str, Any]:
    definition = choice(*rules)
    definition["QueryLanguage"] = "JSONata"
    return definition


def errors(diagnostics: list[Diagnostic]) -> set[tuple[str, str]]:
    return {(d.code, d.location) for d in diagnostics if d.severity == "ERROR"}


SVF = "SCHEMA_VALIDATION_FAILED"
JP = "INVALID_JSONPATH"
C0 = "/States/A/Choices/0"

INVALID: list[tuple[str, Any, set[tuple[str, str]]]] = [
    # --- top level ---------------------------------------------------------------
    ("not-an-object", [], {(SVF, "")}),
    ("missing-startat", {"States": {"A": PASS_END}}, {(SVF, "")}),
    ("missing-states", {"StartAt": "A"}, {(SVF, "")}),
    (
        "startat-unknown",
        machine({"A": PASS_END}) | {"StartAt": "B"},
        {("MISSING_TRANSITION_TARGET", "/StartAt")},
    ),
    ("startat-not-string", machine({"A": PASS_END}) | {"StartAt": 1}, {(SVF, "/StartAt")}),
    ("version", one(PASS_END, Version="2.0"), {(SVF, "/Version")}),
    ("timeout-zero", one(PASS_END, TimeoutSeconds=0), {(SVF, "/TimeoutSeconds")}),
    ("timeout-string", one(PASS_END, TimeoutSeconds="10"), {(SVF, "/TimeoutSeconds")}),
    ("timeout-too-big", one(PASS_END, TimeoutSeconds=100_000_000), {(SVF, "/TimeoutSeconds")}),
    ("query-language", one(PASS_END, QueryLanguage="XPath"), {(SVF, "/QueryLanguage")}),
    ("unknown-top-field", one(PASS_END, Foo=1), {(SVF, "/Foo")}),
    ("comment-not-string", one(PASS_END, Comment=5), {(SVF, "/Comment")}),
    ("states-empty", {"StartAt": "A", "States": {}}, {(SVF, "/States")}),
    # --- every state ---------------------------------------------------------------
    ("state-not-object", one([]), {(SVF, "/States/A"), ("MISSING_END_STATE", "")}),
    ("type-missing", one({"End": True}), {(SVF, "/States/A"), ("MISSING_END_STATE", "")}),
    (
        "type-unknown",
        one({"Type": "Lambda", "End": True}),
        {(SVF, "/States/A/Type"), ("MISSING_END_STATE", "")},
    ),
    ("unknown-field", one({**PASS_END, "Resource": LAMBDA}), {(SVF, "/States/A/Resource")}),
    (
        "jsonpath-field-in-jsonata",
        one({**PASS_END, "InputPath": "$"}, QueryLanguage="JSONata"),
        {(SVF, "/States/A")},
    ),
    ("jsonata-field-in-jsonpath", one({**PASS_END, "Output": {}}), {(SVF, "/States/A")}),
    (
        "state-ql-overrides",
        one({**PASS_END, "QueryLanguage": "JSONata", "Parameters": {}}),
        {(SVF, "/States/A")},
    ),
    (
        "jsonpath-state-in-jsonata-machine",
        one({**PASS_END, "QueryLanguage": "JSONPath"}, QueryLanguage="JSONata"),
        {(SVF, "/States/A")},
    ),
    (
        "state-ql-invalid",
        one({**PASS_END, "QueryLanguage": "jsonata"}),
        {(SVF, "/States/A/QueryLanguage")},
    ),
    (
        "nested-states-use-machine-ql",
        one(
            {
                "Type": "Map",
                "QueryLanguage": "JSONata",
                "End": True,
                "ItemProcessor": {"StartAt": "I", "States": {"I": {**PASS_END, "Output": 1}}},
            }
        ),
        {(SVF, "/States/A/ItemProcessor/States/I")},
    ),
    (
        "next-and-end",
        machine({"A": {**PASS_END, "Next": "B"}, "B": PASS_END}),
        {(SVF, "/States/A/Next")},
    ),
    ("neither-next-nor-end", machine({"A": {"Type": "Pass"}, "B": PASS_END}), {(SVF, "/States/A")}),
    (
        "end-not-boolean",
        one({"Type": "Pass", "End": "yes"}),
        {(SVF, "/States/A/End"), ("MISSING_END_STATE", "")},
    ),
    (
        "end-false-alone",
        machine({"A": {"Type": "Pass", "End": False}, "B": PASS_END}),
        {(SVF, "/States/A")},
    ),
    (
        "next-not-string",
        machine({"A": {"Type": "Pass", "Next": 3}, "B": PASS_END}),
        {(SVF, "/States/A/Next")},
    ),
    (
        "choice-with-next",
        machine(
            {
                "A": {"Type": "Choice", "Choices": [rule(StringEquals="a")], "Next": "E"},
                "E": PASS_END,
            }
        ),
        {(SVF, "/States/A/Next")},
    ),
    ("succeed-with-end", one({"Type": "Succeed", "End": True}), {(SVF, "/States/A/End")}),
    (
        "fail-with-next",
        machine({"A": {"Type": "Fail", "Next": "B"}, "B": PASS_END}),
        {(SVF, "/States/A/Next")},
    ),
    (
        "succeed-cannot-assign",
        one({"Type": "Succeed", "Assign": {"x": 1}}),
        {(SVF, "/States/A/Assign")},
    ),
    # --- graph -----------------------------------------------------------------------
    (
        "next-target-missing",
        machine({"A": {"Type": "Pass", "Next": "Nope"}, "B": PASS_END}),
        {("MISSING_TRANSITION_TARGET", "/States/A/Next")},
    ),
    (
        "default-target-missing",
        machine(
            {
                "A": {"Type": "Choice", "Default": "Nope", "Choices": [rule(StringEquals="a")]},
                "E": PASS_END,
            }
        ),
        {("MISSING_TRANSITION_TARGET", "/States/A/Default")},
    ),
    (
        "choice-next-missing",
        machine(
            {
                "A": {"Type": "Choice", "Choices": [rule(StringEquals="a", Next="Nope")]},
                "E": PASS_END,
            }
        ),
        {("MISSING_TRANSITION_TARGET", f"{C0}/Next")},
    ),
    (
        "catch-next-missing",
        task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Nope"}]),
        {("MISSING_TRANSITION_TARGET", "/States/A/Catch/0/Next")},
    ),
    (
        "name-too-long",
        machine({"A": {"Type": "Pass", "Next": "x" * 81}, "x" * 81: PASS_END}),
        {("INVALID_STATE_NAME", "/States/" + "x" * 81)},
    ),
    (
        "duplicate-name-in-branch",
        one(
            {
                "Type": "Parallel",
                "End": True,
                "Branches": [{"StartAt": "A", "States": {"A": PASS_END}}],
            }
        ),
        {("DUPLICATE_STATE_NAME", "/States/A/Branches/0/States/A")},
    ),
    (
        "no-terminal-state",
        machine({"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}),
        {("MISSING_END_STATE", "")},
    ),
    (
        "branch-jumps-out",
        machine(
            {
                "P": {
                    "Type": "Parallel",
                    "Next": "Out",
                    "Branches": [
                        {
                            "StartAt": "X",
                            "States": {"X": {"Type": "Pass", "Next": "Out"}, "Y": PASS_END},
                        }
                    ],
                },
                "Out": PASS_END,
            }
        ),
        {("MISSING_TRANSITION_TARGET", "/States/P/Branches/0/States/X/Next")},
    ),
    (
        "branch-without-terminal",
        one(
            {
                "Type": "Parallel",
                "End": True,
                "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "X"}}}],
            }
        ),
        {("MISSING_END_STATE", "/States/A/Branches/0")},
    ),
    (
        "branches-empty",
        one({"Type": "Parallel", "End": True, "Branches": []}),
        {(SVF, "/States/A/Branches")},
    ),
    (
        "branch-missing-startat",
        one({"Type": "Parallel", "End": True, "Branches": [{"States": {"X": PASS_END}}]}),
        {(SVF, "/States/A/Branches/0")},
    ),
    (
        "branch-unknown-field",
        one({"Type": "Parallel", "End": True, "Branches": [{**processor(), "Foo": 1}]}),
        {(SVF, "/States/A/Branches/0/Foo")},
    ),
    # --- field / path mutual exclusion ------------------------------------------------
    (
        "timeout-and-path",
        task(TimeoutSeconds=5, TimeoutSecondsPath="$.t"),
        {(SVF, "/States/A/TimeoutSecondsPath")},
    ),
    (
        "heartbeat-and-path",
        task(HeartbeatSeconds=5, HeartbeatSecondsPath="$.h"),
        {(SVF, "/States/A/HeartbeatSecondsPath")},
    ),
    (
        "wait-two-delays",
        wait(Seconds=1, Timestamp="2024-01-01T00:00:00Z"),
        {(SVF, "/States/A/Timestamp")},
    ),
    ("wait-seconds-and-path", wait(Seconds=1, SecondsPath="$.s"), {(SVF, "/States/A/SecondsPath")}),
    ("wait-no-delay", wait(), {(SVF, "/States/A")}),
    (
        "max-concurrency-and-path",
        map_state(MaxConcurrency=1, MaxConcurrencyPath="$.m"),
        {(SVF, "/States/A/MaxConcurrencyPath")},
    ),
    (
        "tolerated-percentage-and-path",
        map_state(ToleratedFailurePercentage=5, ToleratedFailurePercentagePath="$.p"),
        {(SVF, "/States/A/ToleratedFailurePercentagePath")},
    ),
    (
        "tolerated-count-and-path",
        map_state(ToleratedFailureCount=5, ToleratedFailureCountPath="$.c"),
        {(SVF, "/States/A/ToleratedFailureCountPath")},
    ),
    ("error-and-errorpath", fail(Error="E", ErrorPath="$.e"), {(SVF, "/States/A/ErrorPath")}),
    ("cause-and-causepath", fail(Cause="C", CausePath="$.c"), {(SVF, "/States/A/CausePath")}),
    ("processor-and-iterator", map_state(Iterator=processor()), {(SVF, "/States/A/Iterator")}),
    (
        "parameters-and-itemselector",
        map_state(Parameters={}, ItemSelector={}),
        {(SVF, "/States/A/ItemSelector")},
    ),
    # --- Wait -------------------------------------------------------------------------------
    (
        "wait-timestamp-lowercase-t",
        wait(Timestamp="2016-03-14t01:59:00Z"),
        {(SVF, "/States/A/Timestamp")},
    ),
    (
        "wait-timestamp-no-zone",
        wait(Timestamp="2016-03-14T01:59:00"),
        {(SVF, "/States/A/Timestamp")},
    ),
    (
        "wait-timestamp-impossible",
        wait(Timestamp="2016-13-14T01:59:00Z"),
        {(SVF, "/States/A/Timestamp")},
    ),
    ("wait-seconds-negative", wait(Seconds=-1), {(SVF, "/States/A/Seconds")}),
    ("wait-seconds-float", wait(Seconds=1.5), {(SVF, "/States/A/Seconds")}),
    (
        "wait-secondspath-in-jsonata",
        wait(SecondsPath="$.s", QueryLanguage="JSONata"),
        {(SVF, "/States/A")},
    ),
    # --- paths ------------------------------------------------------------------------------
    ("inputpath-not-path", one({**PASS_END, "InputPath": "foo"}), {(JP, "/States/A/InputPath")}),
    (
        "outputpath-unclosed",
        one({**PASS_END, "OutputPath": "$.a["}),
        {(JP, "/States/A/OutputPath")},
    ),
    ("resultpath-context", one({**PASS_END, "ResultPath": "$$.x"}), {(JP, "/States/A/ResultPath")}),
    (
        "resultpath-variable",
        one({**PASS_END, "ResultPath": "$var"}),
        {(JP, "/States/A/ResultPath")},
    ),
    (
        "resultpath-wildcard",
        one({**PASS_END, "ResultPath": "$.a[*]"}),
        {(JP, "/States/A/ResultPath")},
    ),
    ("itemspath-number", map_state(ItemsPath=5), {(SVF, "/States/A/ItemsPath")}),
    ("itemspath-null", map_state(ItemsPath=None), {(SVF, "/States/A/ItemsPath")}),
    (
        "timeoutsecondspath-not-path",
        task(TimeoutSecondsPath="t"),
        {(JP, "/States/A/TimeoutSecondsPath")},
    ),
    (
        "errorpath-bad-intrinsic",
        fail(ErrorPath="States.Format("),
        {("INVALID_INTRINSIC", "/States/A/ErrorPath")},
    ),
    # --- payload templates ------------------------------------------------------------------
    (
        "parameters-bad-path",
        one({**PASS_END, "Parameters": {"x.$": "$.a["}}),
        {(JP, "/States/A/Parameters/x.$")},
    ),
    (
        "parameters-bad-intrinsic",
        one({**PASS_END, "Parameters": {"x.$": "States.Nope(1"}}),
        {("INVALID_INTRINSIC", "/States/A/Parameters/x.$")},
    ),
    (
        "parameters-nested-bad-path",
        one({**PASS_END, "Parameters": {"a": [{"x.$": "nope"}]}}),
        {("INVALID_INTRINSIC", "/States/A/Parameters/a/0/x.$")},
    ),
    (
        "parameters-value-not-string",
        one({**PASS_END, "Parameters": {"x.$": 5}}),
        {(SVF, "/States/A/Parameters/x.$")},
    ),
    (
        "parameters-duplicate-key",
        one({**PASS_END, "Parameters": {"x": 1, "x.$": "$"}}),
        {(SVF, "/States/A/Parameters/x.$")},
    ),
    ("parameters-not-object", one({**PASS_END, "Parameters": 5}), {(SVF, "/States/A/Parameters")}),
    (
        "resultselector-bad-path",
        task(ResultSelector={"r.$": "$..["}),
        {(JP, "/States/A/ResultSelector/r.$")},
    ),
    (
        "resultselector-on-pass",
        one({**PASS_END, "ResultSelector": {}}),
        {(SVF, "/States/A/ResultSelector")},
    ),
    (
        "itemselector-bad-path",
        map_state(ItemSelector={"v.$": "$$.Map.Item.Value["}),
        {(JP, "/States/A/ItemSelector/v.$")},
    ),
    (
        "assign-bad-path",
        one({**PASS_END, "Assign": {"v.$": "$.a["}}),
        {(JP, "/States/A/Assign/v.$")},
    ),
    ("assign-not-object", one({**PASS_END, "Assign": []}), {(SVF, "/States/A/Assign")}),
    # --- variables --------------------------------------------------------------------------
    (
        "assign-states",
        one({**PASS_END, "Assign": {"states": 1}}),
        {("INVALID_VARIABLE_NAME", "/States/A/Assign/states")},
    ),
    (
        "assign-digit-start",
        one({**PASS_END, "Assign": {"1abc": 1}}),
        {("INVALID_VARIABLE_NAME", "/States/A/Assign/1abc")},
    ),
    (
        "assign-too-long",
        one({**PASS_END, "Assign": {"v" * 81: 1}}),
        {("INVALID_VARIABLE_NAME", "/States/A/Assign/" + "v" * 81)},
    ),
    (
        "assign-jsonata-bad-name",
        one({**PASS_END, "Assign": {"a-b": 1}}, QueryLanguage="JSONata"),
        {("INVALID_VARIABLE_NAME", "/States/A/Assign/a-b")},
    ),
    # --- JSONata ----------------------------------------------------------------------------
    (
        "jsonata-output-syntax",
        one({**PASS_END, "Output": "{% $x + %}"}, QueryLanguage="JSONata"),
        {("INVALID_JSONATA", "/States/A/Output")},
    ),
    (
        "jsonata-nested-syntax",
        task(Arguments={"a": ["{% ( %}"]}, QueryLanguage="JSONata"),
        {("INVALID_JSONATA", "/States/A/Arguments/a/0")},
    ),
    (
        "jsonata-dollar-key-variable",
        one({**PASS_END, "QueryLanguage": "JSONata", "Assign": {"x.$": 1}}),
        {("INVALID_VARIABLE_NAME", "/States/A/Assign/x.$")},
    ),
    (
        "jsonata-parameters",
        task(Parameters={}, QueryLanguage="JSONata"),
        {(SVF, "/States/A")},
    ),
    (
        "jsonpath-timeout-expression",
        task(TimeoutSeconds="{% 5 %}"),
        {(SVF, "/States/A/TimeoutSeconds")},
    ),
    (
        "jsonata-timeout-syntax",
        task(TimeoutSeconds="{% 5 + %}", QueryLanguage="JSONata"),
        {("INVALID_JSONATA", "/States/A/TimeoutSeconds")},
    ),
    ("jsonata-items-in-jsonpath", map_state(Items=[1]), {(SVF, "/States/A")}),
    (
        "jsonata-items-string",
        map_state(Items="abc", QueryLanguage="JSONata"),
        {(SVF, "/States/A/Items")},
    ),
    (
        "jsonata-catch-resultpath",
        task(
            QueryLanguage="JSONata",
            Catch=[{"ErrorEquals": ["States.ALL"], "Next": "A", "ResultPath": "$.e"}],
        ),
        {(SVF, "/States/A/Catch/0/ResultPath")},
    ),
    # --- Choice -----------------------------------------------------------------------------
    ("choices-empty", choice(), {(SVF, "/States/A/Choices")}),
    (
        "choices-not-array",
        machine({"A": {"Type": "Choice", "Choices": {}, "Default": "D"}, "D": PASS_END}),
        {(SVF, "/States/A/Choices")},
    ),
    (
        "choices-missing",
        machine({"A": {"Type": "Choice", "Default": "D"}, "D": PASS_END}),
        {(SVF, "/States/A")},
    ),
    ("rule-without-next", choice({"Variable": "$.x", "StringEquals": "a"}), {(SVF, C0)}),
    (
        "nested-rule-with-next",
        choice({"Next": "E", "And": [rule(StringEquals="a")]}),
        {(SVF, f"{C0}/And/0/Next")},
    ),
    (
        "two-operators",
        choice(rule(StringEquals="a", NumericEquals=1)),
        {("MUTUALLY_EXCLUSIVE_CHOICE_PROPERTIES", C0)},
    ),
    ("no-operator", choice(rule()), {(SVF, C0)}),
    ("string-operand", choice(rule(StringEquals=5)), {(SVF, f"{C0}/StringEquals")}),
    ("numeric-operand", choice(rule(NumericEquals="5")), {(SVF, f"{C0}/NumericEquals")}),
    ("numeric-operand-bool", choice(rule(NumericLessThan=True)), {(SVF, f"{C0}/NumericLessThan")}),
    ("boolean-operand", choice(rule(BooleanEquals="true")), {(SVF, f"{C0}/BooleanEquals")}),
    (
        "timestamp-operand",
        choice(rule(TimestampEquals="yesterday")),
        {(SVF, f"{C0}/TimestampEquals")},
    ),
    ("type-test-operand", choice(rule(IsNull="true")), {(SVF, f"{C0}/IsNull")}),
    ("path-operand", choice(rule(StringEqualsPath="foo")), {(JP, f"{C0}/StringEqualsPath")}),
    ("variable-missing", choice({"Next": "E", "StringEquals": "a"}), {(SVF, C0)}),
    ("variable-invalid", choice(rule(Variable="x", StringEquals="a")), {(JP, f"{C0}/Variable")}),
    ("and-empty", choice({"Next": "E", "And": []}), {(SVF, f"{C0}/And")}),
    ("not-array", choice({"Next": "E", "Not": [rule(IsNull=True)]}), {(SVF, f"{C0}/Not")}),
    (
        "combinator-with-variable",
        choice({"Next": "E", "Variable": "$", "Or": [{"Variable": "$.x", "IsNull": True}]}),
        {(SVF, f"{C0}/Variable")},
    ),
    ("rule-unknown-field", choice(rule(StringEquals="a", Foo=1)), {(SVF, f"{C0}/Foo")}),
    (
        "jsonata-condition-string",
        jsonata_choice({"Condition": "yes", "Next": "E"}),
        {(SVF, f"{C0}/Condition")},
    ),
    (
        "jsonata-rule-variable",
        jsonata_choice({"Condition": True, "Next": "E", "Variable": "$"}),
        {(SVF, f"{C0}/Variable")},
    ),
    ("jsonata-rule-no-condition", jsonata_choice({"Next": "E"}), {(SVF, C0)}),
    (
        "jsonata-condition-syntax",
        jsonata_choice({"Condition": "{% $x = %}", "Next": "E"}),
        {("INVALID_JSONATA", f"{C0}/Condition")},
    ),
    (
        "default-not-string",
        machine(
            {"A": {"Type": "Choice", "Choices": [rule(IsNull=True)], "Default": 1}, "E": PASS_END}
        ),
        {(SVF, "/States/A/Default")},
    ),
    # --- Retry / Catch ------------------------------------------------------------------------
    (
        "retry-errorequals-empty",
        task(Retry=[{"ErrorEquals": []}]),
        {(SVF, "/States/A/Retry/0/ErrorEquals")},
    ),
    ("retry-errorequals-missing", task(Retry=[{"MaxAttempts": 1}]), {(SVF, "/States/A/Retry/0")}),
    (
        "retry-all-not-alone",
        task(Retry=[{"ErrorEquals": ["States.ALL", "X"]}]),
        {(SVF, "/States/A/Retry/0/ErrorEquals")},
    ),
    (
        "retry-all-not-last",
        task(Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]),
        {(SVF, "/States/A/Retry/0/ErrorEquals")},
    ),
    (
        "retry-interval-zero",
        task(Retry=[{"ErrorEquals": ["X"], "IntervalSeconds": 0}]),
        {(SVF, "/States/A/Retry/0/IntervalSeconds")},
    ),
    (
        "retry-maxattempts-negative",
        task(Retry=[{"ErrorEquals": ["X"], "MaxAttempts": -1}]),
        {(SVF, "/States/A/Retry/0/MaxAttempts")},
    ),
    (
        "retry-backoff-below-one",
        task(Retry=[{"ErrorEquals": ["X"], "BackoffRate": 0.5}]),
        {(SVF, "/States/A/Retry/0/BackoffRate")},
    ),
    (
        "retry-maxdelay-too-big",
        task(Retry=[{"ErrorEquals": ["X"], "MaxDelaySeconds": 31622401}]),
        {(SVF, "/States/A/Retry/0/MaxDelaySeconds")},
    ),
    (
        "retry-jitter",
        task(Retry=[{"ErrorEquals": ["X"], "JitterStrategy": "SOME"}]),
        {(SVF, "/States/A/Retry/0/JitterStrategy")},
    ),
    (
        "retry-unknown-field",
        task(Retry=[{"ErrorEquals": ["X"], "Next": "A"}]),
        {(SVF, "/States/A/Retry/0/Next")},
    ),
    ("retry-not-array", task(Retry={}), {(SVF, "/States/A/Retry")}),
    ("catch-missing-next", task(Catch=[{"ErrorEquals": ["X"]}]), {(SVF, "/States/A/Catch/0")}),
    (
        "catch-all-not-last",
        task(
            Catch=[
                {"ErrorEquals": ["States.ALL"], "Next": "A"},
                {"ErrorEquals": ["X"], "Next": "A"},
            ]
        ),
        {(SVF, "/States/A/Catch/0/ErrorEquals")},
    ),
    (
        "catch-bad-resultpath",
        task(Catch=[{"ErrorEquals": ["X"], "Next": "A", "ResultPath": "$$.e"}]),
        {(JP, "/States/A/Catch/0/ResultPath")},
    ),
    ("retry-on-pass", one({**PASS_END, "Retry": []}), {(SVF, "/States/A/Retry")}),
    # --- Task ---------------------------------------------------------------------------------
    ("task-no-resource", one({"Type": "Task", "End": True}), {(SVF, "/States/A")}),
    ("task-resource-number", task(Resource=5), {(SVF, "/States/A/Resource")}),
    ("task-resource-blank", task(Resource=" "), {("INVALID_RESOURCE", "/States/A/Resource")}),
    (
        "task-resource-short-arn",
        task(Resource="arn:aws:lambda"),
        {("INVALID_RESOURCE", "/States/A/Resource")},
    ),
    ("task-timeout-zero", task(TimeoutSeconds=0), {(SVF, "/States/A/TimeoutSeconds")}),
    (
        "task-heartbeat-not-below-timeout",
        task(TimeoutSeconds=10, HeartbeatSeconds=10),
        {(SVF, "/States/A/HeartbeatSeconds")},
    ),
    (
        "task-credentials-unknown",
        task(Credentials={"Role": "r"}),
        {(SVF, "/States/A/Credentials/Role"), (SVF, "/States/A/Credentials")},
    ),
    # --- Map ----------------------------------------------------------------------------------
    ("map-no-processor", one({"Type": "Map", "End": True}), {(SVF, "/States/A")}),
    (
        "map-mode",
        map_state(ItemProcessor={**processor(), "ProcessorConfig": {"Mode": "FAST"}}),
        {(SVF, "/States/A/ItemProcessor/ProcessorConfig/Mode")},
    ),
    (
        "map-execution-type",
        map_state(ItemProcessor={**processor(), "ProcessorConfig": {"ExecutionType": "X"}}),
        {(SVF, "/States/A/ItemProcessor/ProcessorConfig/ExecutionType")},
    ),
    ("map-concurrency-negative", map_state(MaxConcurrency=-1), {(SVF, "/States/A/MaxConcurrency")}),
    (
        "map-percentage-over-100",
        map_state(ToleratedFailurePercentage=100.5),
        {(SVF, "/States/A/ToleratedFailurePercentage")},
    ),
    (
        "map-count-negative",
        map_state(ToleratedFailureCount=-1),
        {(SVF, "/States/A/ToleratedFailureCount")},
    ),
    ("map-label-too-long", map_state(Label="L" * 41), {("INVALID_LABEL_NAME", "/States/A/Label")}),
    ("map-label-charset", map_state(Label="my label"), {("INVALID_LABEL_NAME", "/States/A/Label")}),
    (
        "map-label-duplicate",
        machine(
            {
                "A": {"Type": "Map", "ItemProcessor": processor(), "Label": "L", "Next": "B"},
                "B": {
                    "Type": "Map",
                    "Label": "L",
                    "End": True,
                    "ItemProcessor": {"StartAt": "I2", "States": {"I2": PASS_END}},
                },
            }
        ),
        {("DUPLICATE_LABEL_NAME", "/States/B/Label")},
    ),
    (
        "map-reader-no-resource",
        map_state(ItemReader={"ReaderConfig": {"InputType": "CSV"}}),
        {(SVF, "/States/A/ItemReader")},
    ),
    (
        "map-reader-input-type",
        map_state(
            ItemReader={
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "XML"},
            }
        ),
        {(SVF, "/States/A/ItemReader/ReaderConfig/InputType")},
    ),
    ("map-batcher-empty", map_state(ItemBatcher={}), {(SVF, "/States/A/ItemBatcher")}),
    (
        "map-writer-output-type",
        map_state(
            ResultWriter={
                "Resource": "arn:aws:states:::s3:putObject",
                "WriterConfig": {"OutputType": "CSV"},
            }
        ),
        {(SVF, "/States/A/ResultWriter/WriterConfig/OutputType")},
    ),
    (
        "map-processor-unknown-field",
        map_state(ItemProcessor={**processor(), "Foo": 1}),
        {(SVF, "/States/A/ItemProcessor/Foo")},
    ),
    # --- Fail ---------------------------------------------------------------------------------
    ("fail-error-number", fail(Error=5), {(SVF, "/States/A/Error")}),
    (
        "fail-errorpath-in-jsonata",
        fail(ErrorPath="$.e", QueryLanguage="JSONata"),
        {(SVF, "/States/A")},
    ),
    (
        "fail-cause-jsonata-syntax",
        fail(Cause="{% 'a' & %}", QueryLanguage="JSONata"),
        {("INVALID_JSONATA", "/States/A/Cause")},
    ),
]


@pytest.mark.parametrize(
    ("definition", "expected"),
    [(d, e) for _, d, e in INVALID],
    ids=[case_id for case_id, _, _ in INVALID],
)
def test_invalid_definition(definition: Any, expected: set[tuple[str, str]]) -> None:
    diagnostics = validate(definition)
    assert errors(diagnostics) == expected
    assert not is_valid(diagnostics)


def test_every_rule_case_is_distinct() -> None:
    ids = [case_id for case_id, _, _ in INVALID]
    assert len(ids) == len(set(ids)) >= 60


EXPRESS_REJECTED = [
    (
        "arn:aws:states:::states:startExecution.sync",
        "Express state machine does not support '.sync' service integration",
    ),
    (
        "arn:aws:states:::states:startExecution.sync:2",
        "Express state machine does not support '.sync' service integration",
    ),
    (
        "arn:aws:states:::sns:publish.waitForTaskToken",
        "Express state machine does not support '.sync' service integration",
    ),
    (
        "arn:aws:states:us-east-1:111111111111:activity:work",
        "Express state machine does not support Activity ARN",
    ),
]


@pytest.mark.parametrize(("resource", "message"), EXPRESS_REJECTED)
def test_express_rejects_callbacks_and_activities(resource: str, message: str) -> None:
    diagnostics = validate(task(Resource=resource), machine_type="EXPRESS")
    assert [(d.code, d.location, d.message) for d in diagnostics] == [
        (SVF, "/States/A/Resource", message)
    ]
    assert validate(task(Resource=resource), machine_type="STANDARD") == []


VALID: list[tuple[str, Any]] = [
    ("minimal", one(PASS_END)),
    # AWS accepts a `.$` key in JSONata mode as a plain key (issue 18).
    ("jsonata-dollar-key", task(Arguments={"x.$": "$.a"}, QueryLanguage="JSONata")),
    (
        "jsonata-state-in-jsonpath-machine",
        one({**PASS_END, "QueryLanguage": "JSONata", "Output": "{% $states.input %}"}),
    ),
    (
        "nested-inherit-machine-ql",
        one(
            {
                "Type": "Map",
                "QueryLanguage": "JSONata",
                "End": True,
                "ItemProcessor": {"StartAt": "I", "States": {"I": {**PASS_END, "InputPath": "$"}}},
            }
        ),
    ),
    (
        "next-with-end-false",
        machine({"A": {"Type": "Pass", "Next": "B", "End": False}, "B": PASS_END}),
    ),
    (
        "intrinsic-and-context",
        one(
            {
                **PASS_END,
                "Parameters": {
                    "a.$": "States.Format('{}', $.x)",
                    "b.$": "$$.Execution.Id",
                    "c.$": "$v.f[0]",
                },
            }
        ),
    ),
    (
        "inputpath-null",
        one({**PASS_END, "InputPath": None, "OutputPath": None, "ResultPath": None}),
    ),
    (
        "jsonata-numbers",
        task(QueryLanguage="JSONata", TimeoutSeconds="{% 5 %}", HeartbeatSeconds=2),
    ),
    ("wait-timestamp-offset", wait(Timestamp="2016-03-14T01:59:00.123456789+05:30")),
    ("fail-path-intrinsic", fail(ErrorPath="States.Format('E{}', $.n)", CausePath="$.c")),
    (
        "retry-full",
        task(
            Retry=[
                {
                    "ErrorEquals": ["X", "Y"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": 0,
                    "BackoffRate": 1,
                    "MaxDelaySeconds": 5,
                    "JitterStrategy": "FULL",
                    "Comment": "c",
                },
                {"ErrorEquals": ["States.ALL"]},
            ]
        ),
    ),
    (
        "distributed-map",
        map_state(
            ItemProcessor={
                **processor(),
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            },
            ItemReader={
                "Resource": "arn:aws:states:::s3:getObject",
                "Parameters": {"Bucket.$": "$.b", "Key": "k"},
                "ReaderConfig": {
                    "InputType": "CSV",
                    "CSVHeaderLocation": "FIRST_ROW",
                    "MaxItems": 10,
                },
            },
            ItemBatcher={"MaxItemsPerBatch": 5, "BatchInput": {"x.$": "$.x"}},
            ResultWriter={
                "Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": "b", "Prefix": "p"},
            },
            Label="my-label_1",
            ToleratedFailurePercentage=12.5,
            MaxConcurrency=0,
        ),
    ),
    (
        "choice-nested",
        choice(
            {
                "Next": "E",
                "And": [
                    {"Variable": "$.x", "StringMatches": "a*"},
                    {"Not": {"Variable": "$.y", "IsPresent": True}},
                    {
                        "Or": [
                            {"Variable": "$.z", "TimestampLessThan": "2012-10-09T19:00:55Z"},
                            {"Variable": "$.z", "NumericEqualsPath": "$.w"},
                        ]
                    },
                ],
            }
        ),
    ),
    (
        "jsonata-choice",
        jsonata_choice(
            {
                "Condition": "{% $states.input.x > 1 %}",
                "Next": "E",
                "Output": {"a": "{% 1 %}"},
                "Assign": {"v": 1},
            }
        ),
    ),
]


@pytest.mark.parametrize("definition", [d for _, d in VALID], ids=[i for i, _ in VALID])
def test_valid_definition(definition: Any) -> None:
    assert errors(validate(definition)) == set()


def test_unreachable_state_is_a_warning() -> None:
    diagnostics = validate(machine({"A": PASS_END, "Orphan": PASS_END}))
    assert [(d.severity, d.code, d.location) for d in diagnostics] == [
        ("WARNING", "UNREACHABLE_STATE", "/States/Orphan")
    ]
    assert is_valid(diagnostics)


def test_no_dollar_and_static_result_are_warnings() -> None:
    definition = machine(
        {
            "A": {"Type": "Pass", "Parameters": {"x": "$.a"}, "Next": "B"},
            "B": {"Type": "Pass", "Result": {"y.$": "$.b"}, "End": True},
        }
    )
    diagnostics = validate(definition)
    assert [(d.severity, d.code, d.location) for d in diagnostics] == [
        ("WARNING", "NO_DOLLAR", "/States/A/Parameters/x"),
        ("WARNING", "PASS_RESULT_IS_STATIC", "/States/B/Result"),
    ]
    assert is_valid(diagnostics)


def test_too_deeply_nested_scopes() -> None:
    inner: dict[str, Any] = {"StartAt": "L0", "States": {"L0": dict(PASS_END)}}
    for level in range(1, 25):
        inner = {
            "StartAt": f"L{level}",
            "States": {f"L{level}": {"Type": "Parallel", "End": True, "Branches": [inner]}},
        }
    diagnostics = validate(inner)
    codes = errors(diagnostics)
    assert {code for code, _ in codes} == {"TOO_DEEPLY_NESTED"}
    assert len(codes) == 1


def test_too_deeply_nested_json_never_recurses() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    diagnostics = validate(one({**PASS_END, "Result": deep}))
    assert [d.code for d in diagnostics] == ["TOO_DEEPLY_NESTED"]


def test_all_problems_reported_at_once_sorted_by_location() -> None:
    definition = {
        "StartAt": "Missing",
        "Version": "9",
        "States": {
            "A": {"Type": "Task", "Next": "Nowhere", "TimeoutSeconds": -1},
            "B": {"Type": "Choice", "Choices": []},
            "C": {"Type": "Wait", "End": True},
        },
    }
    diagnostics = validate(definition)
    assert [(d.code, d.location) for d in diagnostics if d.severity == "ERROR"] == [
        ("MISSING_TRANSITION_TARGET", "/StartAt"),
        (SVF, "/States/A"),
        ("MISSING_TRANSITION_TARGET", "/States/A/Next"),
        (SVF, "/States/A/TimeoutSeconds"),
        (SVF, "/States/B/Choices"),
        (SVF, "/States/C"),
        (SVF, "/Version"),
    ]
    assert [d.location for d in diagnostics] == sorted(d.location for d in diagnostics)


def test_validate_text() -> None:
    assert validate_text('{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}') == []
    (diagnostic,) = validate_text("{not json")
    assert (diagnostic.severity, diagnostic.code, diagnostic.location) == (
        "ERROR",
        "INVALID_JSON_DESCRIPTION",
        "",
    )
    assert str(diagnostic).startswith("/: INVALID_JSON_DESCRIPTION: ")


def test_diagnostic_str_and_pointer_escaping() -> None:
    diagnostics = validate(machine({"a/b~c": {"Type": "Pass", "Next": "x"}, "z": PASS_END}))
    located = [d for d in diagnostics if d.code == "MISSING_TRANSITION_TARGET"]
    assert [d.location for d in located] == ["/States/a~1b~0c/Next"]
    assert json_pointer("States", "a/b~c", 0) == "/States/a~1b~0c/0"
    assert str(located[0]).startswith("/States/a~1b~0c/Next: MISSING_TRANSITION_TARGET: ")


# --- robustness ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "$",
            "$.a",
            "$$.x",
            "{% 1 %}",
            "{% ( %}",
            "States.Array(",
            "Task",
            "Pass",
            "Map",
            "End",
            "Next",
            "A",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Type",
                    "Next",
                    "End",
                    "States",
                    "StartAt",
                    "Choices",
                    "Branches",
                    "ItemProcessor",
                    "Parameters",
                    "x.$",
                    "Retry",
                    "Catch",
                    "ErrorEquals",
                    "Variable",
                    "And",
                    "Not",
                    "Assign",
                    "Output",
                    "QueryLanguage",
                    "A",
                ]
            )
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_never_raises_on_random_json(value: Any) -> None:
    diagnostics = validate(value)
    assert all(isinstance(d, Diagnostic) for d in diagnostics)
    validate({"StartAt": "A", "States": {"A": value}})
    validate({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [value]}}})


SAMPLES = case_files("local")[::8]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_never_raises_on_mutated_valid_definitions(data: st.DataObject) -> None:
    definition = json.loads(data.draw(st.sampled_from(SAMPLES)).read_text())["definition"]
    mutated = copy.deepcopy(definition)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(mutated) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = mutated
        for token in path[:-1]:
            parent = parent[token]
        action = data.draw(st.sampled_from(["replace", "delete"]))
        if action == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    diagnostics = validate(mutated)
    assert [d.location for d in diagnostics] == sorted(d.location for d in diagnostics)


def test_plain_resource_names_are_aws_invalid_but_run_locally() -> None:
    """AWS accepts only ARNs; Stepwise's local rules bind plain names to handlers."""
    from statemachine.build import local_diagnostics

    definition = task(Resource="charge_card")
    assert errors(validate(definition)) == {("INVALID_RESOURCE", "/States/A/Resource")}
    local = local_diagnostics(definition)
    assert [(d.severity, d.code) for d in local] == [("WARNING", "LOCAL_RESOURCE")]
    for broken in ("", "arn:aws:lambda", "arn:aws:states:::"[:-1]):
        assert ("INVALID_RESOURCE", "/States/A/Resource") in errors(
            local_diagnostics(task(Resource=broken))
        )
