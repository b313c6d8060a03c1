"""Semantics audit, Task results: how AWS names the task whose result is over 256 KiB.

From LocalStack's AWS-validated snapshot `error_handling/test_states_errors`:
a Lambda function returning 257 KiB, caught by `States.DataLimitExceeded`
(or `States.ALL`). Through the service integration
(`arn:aws:states:::lambda:invoke`) AWS names the task 'lambda'; with the
function's ARN as the Resource (the legacy form) it names that ARN. Runs end
to end through `Engine` on a real SQLite file.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from activities import Registry, lambda_function
from engine import Engine

FUNCTION = "arn:aws:lambda:us-east-1:111111111111:function:large_output"


def large_output_string(event: Any, context: Any = None) -> bytes:
    return ("a" * (257 * 1024)).encode("utf-8")


def _machine(resource: str, error: str) -> dict[str, Any]:
    task: dict[str, Any] = {
        "Type": "Task",
        "Resource": resource,
        "Catch": [{"ErrorEquals": [error], "Next": "Caught"}],
        "End": True,
    }
    if resource == "arn:aws:states:::lambda:invoke":
        task["Parameters"] = {"FunctionName.$": "$.FunctionName", "Payload.$": "$.Payload"}
    return {
        "StartAt": "InvokeLambda",
        "States": {"InvokeLambda": task, "Caught": {"Type": "Pass", "End": True}},
    }


@pytest.mark.parametrize("error", ["States.DataLimitExceeded", "States.ALL"])
@pytest.mark.parametrize(
    ("resource", "named"),
    [(FUNCTION, FUNCTION), ("arn:aws:states:::lambda:invoke", "lambda")],
)
def test_too_large_result_names_the_task_as_aws_does(
    sqlite_url: str, resource: str, named: str, error: str
) -> None:
    registry = Registry()
    lambda_function(FUNCTION, registry=registry)(large_output_string)
    with Engine(sqlite_url, registry=registry, worker=False) as engine:
        record = engine.run_sync(
            _machine(resource, error), {"FunctionName": FUNCTION, "Payload": None}
        )
    assert record.status == "SUCCEEDED", (record.error, record.cause)
    assert json.loads(record.output or "null") == {
        "Error": "States.DataLimitExceeded",
        "Cause": f"The state/task '{named}' returned a result with a size exceeding the "
        "maximum number of bytes service limit.",
    }


def identity(event: Any, context: Any = None) -> Any:
    return event


@pytest.mark.parametrize(
    ("payload", "received"),
    [
        # AWS-recorded (`services/test_lambda_task_service.snapshot.json`,
        # test_invoke and test_invoke_json_values): a string Payload is the
        # request body itself, so JSON text in it arrives parsed; no Payload
        # is an empty invocation, which the function reads as {}.
        (None, {}),
        ('"HelloWorld"', "HelloWorld"),
        ("0.0", 0.0),
        ("0", 0),
        ("true", True),
        ("null", None),
        ("{}", {}),
        ("[]", []),
        # Not JSON text: sent as a JSON string.
        ("plain words", "plain words"),
        ({"a": 1}, {"a": 1}),
    ],
)
def test_lambda_invoke_payload_reaches_the_function_as_aws_sends_it(
    sqlite_url: str, payload: Any, received: Any
) -> None:
    registry = Registry()
    lambda_function(FUNCTION, registry=registry)(identity)
    machine = {
        "StartAt": "Invoke",
        "States": {
            "Invoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName.$": "$.FunctionName", "Payload.$": "$.Payload"},
                "End": True,
            }
        },
    }
    with Engine(sqlite_url, registry=registry, worker=False) as engine:
        record = engine.run_sync(machine, {"FunctionName": FUNCTION, "Payload": payload})
    assert record.status == "SUCCEEDED", (record.error, record.cause)
    output = json.loads(record.output or "null")
    assert output["Payload"] == received
    assert output["StatusCode"] == 200
