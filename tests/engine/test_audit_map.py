"""Semantics audit, Map: what AWS records when a JSONata `Items` is not an array.

The cases come from LocalStack's AWS-validated snapshot
`scenarios/test_base_scenarios.py::test_map_state_items_eval_jsonata_fail`
and run end to end through `Engine` on a real SQLite file.
"""

from __future__ import annotations

from typing import Any

from engine import Engine


def _machine(items: str) -> dict[str, Any]:
    return {
        "QueryLanguage": "JSONata",
        "StartAt": "MapIterateState",
        "States": {
            "MapIterateState": {
                "Type": "Map",
                "Items": items,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Pass",
                    "States": {"Pass": {"Type": "Pass", "End": True}},
                },
                "End": True,
            }
        },
    }


def test_items_that_evaluate_to_a_function_are_an_unsupported_result_type(
    sqlite_url: str,
) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(_machine("{% $fn := function($x){$x} %}"), {})
        events = engine.history_sync(record)
    assert (record.status, record.error) == ("FAILED", "States.QueryEvaluationError")
    assert record.cause == (
        "An error occurred while executing the state 'MapIterateState' (entered at the event "
        "id #2). The JSONata expression '$fn := function($x){$x}' specified for the field "
        "'Items' returned an unsupported result type."
    )
    assert [e.type for e in events][-1] == "ExecutionFailed"


def test_items_of_another_type_name_the_type(sqlite_url: str) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(_machine("{% true %}"), {})
    assert record.cause is not None and record.cause.endswith(
        "The JSONata expression 'true' specified for the field 'Items' returned an unexpected "
        "result type. Expected 'array', but was 'boolean' for value: true"
    )


def test_iterations_cut_short_by_a_failing_sibling_are_aborted(sqlite_url: str) -> None:
    """AWS records MapIterationAborted for each iteration still running when another
    fails (LocalStack's AWS-validated `timeouts/test_timeouts.py::
    test_service_lambda_map_timeout`: MapIterationFailed, then TaskStateAborted and
    MapIterationAborted per running iteration, then MapStateFailed)."""
    processor = {
        "StartAt": "Pick",
        "States": {
            "Pick": {
                "Type": "Choice",
                "Choices": [{"Variable": "$", "NumericEquals": 0, "Next": "Boom"}],
                "Default": "Sleep",
            },
            "Boom": {"Type": "Fail", "Error": "Boom", "Cause": "item 0"},
            "Sleep": {"Type": "Wait", "Seconds": 10, "End": True},
        },
    }
    machine = {
        "StartAt": "M",
        "States": {"M": {"Type": "Map", "ItemProcessor": processor, "End": True}},
    }
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(machine, [0, 1, 2])
        types = [e.type for e in engine.history_sync(record)]
    assert (record.status, record.error, record.cause) == ("FAILED", "Boom", "item 0")
    assert types.count("MapIterationFailed") == 1
    assert types.count("WaitStateAborted") == 2
    assert types.count("MapIterationAborted") == 2
    assert types.index("MapIterationFailed") < types.index("MapIterationAborted")
    assert types[-2:] == ["MapStateFailed", "ExecutionFailed"]


def test_a_failure_with_no_sibling_running_aborts_nothing(sqlite_url: str) -> None:
    processor = {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Boom"}}}
    machine = {
        "StartAt": "M",
        "States": {
            "M": {"Type": "Map", "MaxConcurrency": 1, "ItemProcessor": processor, "End": True}
        },
    }
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(machine, [0, 1])
        types = [e.type for e in engine.history_sync(record)]
    assert "MapIterationAborted" not in types
    assert types[-3:] == ["MapIterationFailed", "MapStateFailed", "ExecutionFailed"]
