"""JSONata mode and variables inside real executions (issue: JSONata mode and variables).

Hostile expressions end with States.QueryEvaluationError within the limit and
leave the engine healthy for the next execution; variables follow AWS's
scoping, entry-value and size rules and show up in the history.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import Engine


def jsonata_pass(expression: Any) -> dict[str, Any]:
    return {
        "QueryLanguage": "JSONata",
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Output": expression, "End": True}},
    }


TIMEOUT = "D1012: Expression evaluation timeout: Check for infinite loop"
HOSTILE = [
    ("($f := function($x){ $f($x) }; $f(1))", TIMEOUT),
    ("[1..1e9]", "Evaluation limit exceeded: the range operator would produce 1e+09 items"),
    (
        "$pad('x', 1e9)",
        "Evaluation limit exceeded: $pad width 1000000000 exceeds 4194304 characters",
    ),
    ("$match('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!', /(a+)+$/)", TIMEOUT),
    (
        "($deep := function($n){ $n = 0 ? {} : {'a': $deep($n - 1)} }; $deep(100000))",
        "D1011: Stack overflow error: Check for non-terminating recursive function",
    ),
]


@pytest.mark.parametrize(("expression", "message"), HOSTILE)
def test_hostile_expression_is_bounded_and_engine_stays_healthy(
    sqlite_url: str, expression: str, message: str
) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(jsonata_pass("{% " + expression + " %}"))
        after = engine.run_sync(jsonata_pass("{% 1 + 1 %}"))
    assert record.status == "FAILED"
    assert record.error == "States.QueryEvaluationError"
    assert record.cause == (
        "An error occurred while executing the state 'P' (entered at the event id #2). "
        f"The JSONata expression '{expression}' specified for the field 'Output' threw an "
        f"error during evaluation. {message}"
    )
    assert after.status == "SUCCEEDED" and json.loads(after.output or "") == 2


def test_evaluation_failed_event_names_the_field(sqlite_url: str) -> None:
    machine = jsonata_pass({"error": "{% $nothing %}"})
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(machine)
        events = engine.history_sync(record)
    failed = [e for e in events if e.type == "EvaluationFailed"]
    assert record.error == "States.QueryEvaluationError"
    assert failed and failed[0].details["location"] == "Output/error"
    assert failed[0].details["state"] == "P"


VARIABLES = {
    "StartAt": "Set",
    "States": {
        "Set": {"Type": "Pass", "Assign": {"x": 1, "list": [1, 2]}, "Next": "Swap"},
        "Swap": {
            "Type": "Pass",
            "QueryLanguage": "JSONata",
            # Right-hand sides see the values on entry: old == 1, not 42.
            "Assign": {"x": 42, "old": "{% $x %}"},
            "Next": "Fan",
        },
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$list",
            "ItemProcessor": {
                "StartAt": "Inner",
                "States": {
                    "Inner": {
                        "Type": "Pass",
                        "Assign": {"mine.$": "$"},
                        "Parameters": {"outer.$": "$x", "old.$": "$old"},
                        "End": True,
                    }
                },
            },
            "ResultPath": "$.fan",
            "Next": "Read",
        },
        "Read": {
            "Type": "Pass",
            "Parameters": {"x.$": "$x", "old.$": "$old", "fan.$": "$.fan"},
            "End": True,
        },
    },
}


def test_variables_entry_values_scopes_and_history(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:
        record = engine.run_sync(VARIABLES, {})
        events = engine.history_sync(record)
    assert record.status == "SUCCEEDED", record.cause
    assert json.loads(record.output or "") == {
        "x": 42,
        "old": 1,
        "fan": [{"outer": 42, "old": 1}, {"outer": 42, "old": 1}],
    }
    exited = next(e for e in events if e.type == "PassStateExited" and e.details["name"] == "Swap")
    assert exited.details["assignedVariables"] == {"x": "42", "old": "1"}


def test_inner_scope_cannot_assign_an_outer_name(sqlite_url: str) -> None:
    machine = {
        "StartAt": "Set",
        "States": {
            "Set": {"Type": "Pass", "Assign": {"x": 1}, "Next": "Par"},
            "Par": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "B",
                        "States": {"B": {"Type": "Pass", "Assign": {"x": 2}, "End": True}},
                    }
                ],
                "End": True,
            },
        },
    }
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(machine)
    assert record.status == "FAILED"
    assert record.cause == (
        "An error occurred while executing the state 'B' (entered at the event id #6). "
        "Cannot assign variable 'x': it is declared in an outer scope and inner scopes may "
        "only read it."
    )


def test_variable_size_limit(sqlite_url: str) -> None:
    machine = {
        "QueryLanguage": "JSONata",
        "StartAt": "Big",
        "States": {
            "Big": {"Type": "Pass", "Assign": {"big": "{% $pad('', 300000, 'x') %}"}, "End": True}
        },
    }
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(machine)
    assert (record.status, record.error) == ("FAILED", "States.Runtime")
    assert record.cause == (
        "An error occurred while executing the state 'Big' (entered at the event id #2). "
        "The variable 'big' is 300002 bytes, over the 262144-byte limit for one variable."
    )
