"""Semantics audit, a Task failing inside a Parallel branch or Map iteration.

AWS records the failed Task as aborted too: `TaskFailed`, `TaskStateAborted`,
then `ParallelStateFailed` (LocalStack's AWS-validated snapshot
`callback/test_callback.py::test_sqs_failure_in_wait_for_task_tok_no_error_field
[SQS_PARALLEL_WAIT_FOR_TASK_TOKEN]`, and `states_variables/test_error_output.py::
test_parallel_catch_error`); in a Map the iteration's `MapIterationFailed`
comes first (`timeouts/test_timeouts.py::test_service_lambda_map_timeout`). A
Task failing at the top level has no such event. Runs end to end through
`Engine` on a real SQLite file.
"""

from __future__ import annotations

from typing import Any

from activities import ActivityError, Registry
from engine import Engine


def _registry() -> Registry:
    registry = Registry()

    def boom(value: Any) -> Any:
        raise ActivityError("Boom", "it broke")

    registry.register("boom", boom)
    return registry


def _types(
    url: str, machine: dict[str, Any], input: Any = None
) -> tuple[str, str | None, list[str]]:
    with Engine(url, registry=_registry(), worker=False) as engine:
        record = engine.run_sync(machine, {} if input is None else input)
        events = engine.history_sync(record)
    return record.status, record.error, [e.type for e in events]


TASK = {"Type": "Task", "Resource": "boom", "End": True}


def test_task_failing_in_a_parallel_branch_is_aborted_before_the_parallel_fails(
    sqlite_url: str,
) -> None:
    machine = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "T", "States": {"T": TASK}}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    status, _, types = _types(sqlite_url, machine)
    assert status == "SUCCEEDED"
    assert types == [
        "ExecutionStarted",
        "ParallelStateEntered",
        "ParallelStateStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "TaskStateAborted",
        "ParallelStateFailed",
        "ParallelStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]


def test_task_failing_in_a_map_iteration_is_aborted_after_the_iteration_fails(
    sqlite_url: str,
) -> None:
    machine = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "T", "States": {"T": TASK}},
                "End": True,
            }
        },
    }
    status, error, types = _types(sqlite_url, machine, [1])
    assert (status, error) == ("FAILED", "Boom")
    assert types[-6:] == [
        "TaskStarted",
        "TaskFailed",
        "MapIterationFailed",
        "TaskStateAborted",
        "MapStateFailed",
        "ExecutionFailed",
    ]


def test_task_failing_at_the_top_level_is_not_aborted(sqlite_url: str) -> None:
    status, error, types = _types(sqlite_url, {"StartAt": "T", "States": {"T": TASK}})
    assert (status, error) == ("FAILED", "Boom")
    assert "TaskStateAborted" not in types


def test_task_caught_inside_its_branch_is_not_aborted(sqlite_url: str) -> None:
    caught = {**TASK, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Ok"}]}
    del caught["End"]
    caught["Next"] = "Ok"
    branch = {"StartAt": "T", "States": {"T": caught, "Ok": {"Type": "Pass", "End": True}}}
    machine = {
        "StartAt": "P",
        "States": {"P": {"Type": "Parallel", "Branches": [branch], "End": True}},
    }
    status, _, types = _types(sqlite_url, machine)
    assert status == "SUCCEEDED"
    assert "TaskStateAborted" not in types
