"""Runtime behaviours seen failing on AWS-shaped executions outside the recorded set.

Each test runs a small definition through `stepwise run` (the path users
take) on both stores and checks what AWS would report: the status, the
error and cause in AWS's wording, the event types where they matter, and
that no input makes the CLI print a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli import cli

PASS_PROCESSOR = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def _run(db_url: str, tmp_path: Path, definition: dict[str, Any], input: Any) -> dict[str, Any]:
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(definition))
    result = CliRunner().invoke(
        cli, ["--db", db_url, "--output", "json", "run", str(path), "--input", json.dumps(input)]
    )
    assert "Traceback" not in result.output
    described: dict[str, Any] = json.loads(result.stdout)
    return described


def _history(db_url: str, execution_arn: str) -> list[str]:
    shown = CliRunner().invoke(cli, ["--db", db_url, "--output", "json", "history", execution_arn])
    assert shown.exit_code == 0, shown.output
    return [event["type"] for event in json.loads(shown.stdout)["events"]]


def _cause(described: dict[str, Any], state: str) -> str:
    prefix = f"An error occurred while executing the state '{state}' (entered at the event id #2). "
    cause = str(described["cause"])
    assert cause.startswith(prefix), cause
    return cause[len(prefix) :]


@pytest.mark.parametrize(
    "items",
    [
        [1, "{% 1 + 1 %}"],
        "{% [$states.input.n, $states.input.n * 2] %}",
        "{% $states.input.list %}",
    ],
)
def test_jsonata_map_items_expression_runs(db_url: str, tmp_path: Path, items: Any) -> None:
    """Items as an expression, or an array holding expressions, is evaluated (it once crashed)."""
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "M",
        "States": {
            "M": {"Type": "Map", "Items": items, "ItemProcessor": PASS_PROCESSOR, "End": True}
        },
    }
    described = _run(db_url, tmp_path, definition, {"n": 1, "list": [1, 2]})
    assert described["status"] == "SUCCEEDED"
    assert described["output"] == [1, 2]


def test_map_limits_read_workflow_variables(db_url: str, tmp_path: Path) -> None:
    """MaxConcurrencyPath and ToleratedFailure*Path may name a variable ($var), as AWS allows."""
    definition = {
        "StartAt": "Set",
        "States": {
            "Set": {"Type": "Pass", "Assign": {"limits": {"c": 1, "n": 1, "p": 50}}, "Next": "M"},
            "M": {
                "Type": "Map",
                "MaxConcurrencyPath": "$limits.c",
                "ToleratedFailureCountPath": "$limits.n",
                "ToleratedFailurePercentagePath": "$limits.p",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Check",
                    "States": {
                        "Check": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Boom"}],
                            "Default": "Ok",
                        },
                        "Boom": {"Type": "Fail", "Error": "Boom"},
                        "Ok": {"Type": "Pass", "End": True},
                    },
                },
                "End": True,
            },
        },
    }
    described = _run(db_url, tmp_path, definition, [1, 2, 3])
    assert described["status"] == "SUCCEEDED", described
    assert described["output"][0] == 1 and described["output"][2] == 3
    assert described["output"][1]["Error"] == "Boom"


def test_negative_tolerated_failure_count_is_aws_worded(db_url: str, tmp_path: Path) -> None:
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ToleratedFailureCountPath": "$.count",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    **PASS_PROCESSOR,
                },
                "End": True,
            }
        },
    }
    described = _run(db_url, tmp_path, definition, {"count": -1, "items": [1]})
    assert described["status"] == "FAILED"
    assert described["error"] == "States.Runtime"
    assert _cause(described, "M") == "ToleratedFailureCount cannot be negative."
    # AWS reads the tolerated failures once the Map Run starts, and a
    # States.Runtime failure ends the execution without MapStateFailed.
    assert _history(db_url, described["executionArn"]) == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "ExecutionFailed",
    ]


@pytest.mark.parametrize("field", ["SecondsPath", "TimestampPath"])
def test_wait_path_that_references_nothing(db_url: str, tmp_path: Path, field: str) -> None:
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", field: "$.nope", "End": True}}}
    described = _run(db_url, tmp_path, definition, {})
    assert described["status"] == "FAILED"
    assert described["error"] == "States.Runtime"
    assert (
        _cause(described, "W") == f"The {field} parameter does not reference an input value: $.nope"
    )


def test_wait_too_long_ends_with_a_period(db_url: str, tmp_path: Path) -> None:
    definition = {
        "StartAt": "W",
        "States": {"W": {"Type": "Wait", "SecondsPath": "$.s", "End": True}},
    }
    described = _run(db_url, tmp_path, definition, {"s": 2**31})
    assert described["error"] == "States.Runtime"
    assert _cause(described, "W") == "Wait state delay is too long."


def test_map_retry_records_map_state_failed_once(db_url: str, tmp_path: Path) -> None:
    """A Map that is retried records MapStateFailed only when it finally fails, as AWS does."""
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "F",
                    "States": {"F": {"Type": "Fail", "Error": "Bad"}},
                },
                "Retry": [{"ErrorEquals": ["Bad"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                "End": True,
            }
        },
    }
    described = _run(db_url, tmp_path, definition, [1])
    assert described["status"] == "FAILED"
    types = _history(db_url, described["executionArn"])
    assert types.count("MapStateStarted") == 2
    assert types.count("MapStateFailed") == 1
    assert types[-2:] == ["MapStateFailed", "ExecutionFailed"]


def test_jsonata_keys_ending_in_dollar_are_plain_keys(db_url: str, tmp_path: Path) -> None:
    """AWS accepts `x.$` keys in JSONata mode and keeps them as written; values stay literal."""
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Pass",
                "Output": {"a.$": "$.x", "b": {"c.$": "{% $states.input.x %}"}},
                "End": True,
            }
        },
    }
    described = _run(db_url, tmp_path, definition, {"x": 1})
    assert described["status"] == "SUCCEEDED"
    assert described["output"] == {"a.$": "$.x", "b": {"c.$": 1}}


def _events(db_url: str, execution_arn: str) -> list[dict[str, Any]]:
    shown = CliRunner().invoke(cli, ["--db", db_url, "--output", "json", "history", execution_arn])
    assert shown.exit_code == 0, shown.output
    events: list[dict[str, Any]] = json.loads(shown.stdout)["events"]
    return events


def test_map_event_details_as_aws_shows_them(db_url: str, tmp_path: Path) -> None:
    """mapStateStartedEventDetails.length, mapIterationStartedEventDetails name and index,
    and the evaluationFailedEventDetails of a Map whose Items cannot be evaluated."""
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "Items": "{% $states.input.items %}",
                "ItemProcessor": PASS_PROCESSOR,
                "Assign": {"count": "{% $count($states.result) %}"},
                "Next": "Bad",
            },
            "Bad": {
                "Type": "Map",
                "Items": "{% $count %}",
                "ItemProcessor": {"StartAt": "Q", "States": {"Q": {"Type": "Pass", "End": True}}},
                "End": True,
            },
        },
    }
    described = _run(db_url, tmp_path, definition, {"items": ["a", "b"]})
    assert described["status"] == "FAILED"
    events = _events(db_url, described["executionArn"])
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    assert by_type["MapStateStarted"][0]["mapStateStartedEventDetails"] == {"length": 2}
    assert [e["mapIterationStartedEventDetails"] for e in by_type["MapIterationStarted"]] == [
        {"name": "M", "index": 0},
        {"name": "M", "index": 1},
    ]
    exited = by_type["MapStateExited"][0]["stateExitedEventDetails"]
    assert exited["name"] == "M" and json.loads(exited["output"]) == ["a", "b"]
    assert exited["assignedVariables"] == {"count": "2"}
    failed = by_type["EvaluationFailed"][0]["evaluationFailedEventDetails"]
    assert failed["error"] == "States.QueryEvaluationError"
    assert failed["location"] == "Items" and failed["state"] == "Bad"
    assert [e["type"] for e in events][-4:] == [
        "MapStateEntered",
        "EvaluationFailed",
        "MapStateFailed",
        "ExecutionFailed",
    ]
    assert by_type["ExecutionFailed"][0]["executionFailedEventDetails"]["cause"] == failed["cause"]


def _distributed(**fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    **PASS_PROCESSOR,
                },
                "End": True,
                **fields,
            }
        },
    }


def test_map_limit_paths_read_numbers_written_as_strings(db_url: str, tmp_path: Path) -> None:
    definition = _distributed(
        MaxConcurrencyPath="$.limit",
        ToleratedFailureCountPath="$.limit",
        ToleratedFailurePercentagePath="$.limit",
    )
    described = _run(db_url, tmp_path, definition, {"limit": "2", "items": [1, 2]})
    assert described["status"] == "SUCCEEDED", described
    assert described["output"] == [1, 2]


def test_negative_max_concurrency_path_is_aws_worded(db_url: str, tmp_path: Path) -> None:
    definition = _distributed(MaxConcurrencyPath="$.limit")
    described = _run(db_url, tmp_path, definition, {"limit": -1, "items": [1]})
    assert described["error"] == "States.Runtime"
    assert (
        _cause(described, "M")
        == "Expected non-negative integer for MaxConcurrency, got '-1' instead."
    )
