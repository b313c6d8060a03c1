"""Resource mapping files, mock mode (Step Functions Local's MockedResponses), the
`python:` allow-list, and the Lambda integration's result shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from activities import Registry, activity, lambda_function
from activities.mapping import MappingError, load_mapping
from activities.mocks import MockConfig, MockConfigError
from engine import Engine


def _run(url: str, definition: dict[str, Any], value: Any, registry: Registry) -> Any:
    async def main() -> Any:
        async with Engine(url, registry=registry) as engine:
            return await engine.run(definition, value, machine_name="OrderFlow")

    return anyio.run(main)


def _task(resource: str, **extra: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": resource, **extra}


def test_mapping_file_binds_lambda_patterns_services_and_invoke(
    sqlite_url: str, tmp_path: Path
) -> None:
    mapping = tmp_path / "resources.json"
    mapping.write_text(
        json.dumps(
            {
                "Resources": {
                    "arn:aws:lambda:*:*:function:Echo*": "tests.activities.sample_handlers:echo",
                    "arn:aws:states:::sqs:sendMessage": "tests.activities.sample_handlers:send",
                    "arn:aws:states:::lambda:invoke": {
                        "FunctionName": {"Doubler": "tests.activities.sample_handlers:echo"}
                    },
                }
            }
        )
    )
    registry = load_mapping(mapping, Registry())
    definition = {
        "StartAt": "Direct",
        "States": {
            "Direct": _task(
                "arn:aws:lambda:eu-west-1:123456789012:function:EchoOne",
                ResultPath="$.direct",
                Next="Queue",
            ),
            "Queue": _task(
                "arn:aws:states:::sqs:sendMessage",
                Parameters={"QueueUrl": "q", "MessageBody.$": "$.n"},
                ResultPath="$.queue",
                Next="Invoke",
            ),
            "Invoke": _task(
                "arn:aws:states:::lambda:invoke",
                Parameters={"FunctionName": "Doubler", "Payload": {"x": 1}},
                ResultSelector={
                    "p.$": "$.Payload",
                    "code.$": "$.StatusCode",
                    "v.$": "$.ExecutedVersion",
                },
                ResultPath="$.invoke",
                End=True,
            ),
        },
    }
    record = _run(sqlite_url, definition, {"n": 3}, registry)
    assert record.status == "SUCCEEDED", record.cause
    out = json.loads(record.output)
    assert out["direct"] == {"echo": {"n": 3}, "fn": "EchoOne"}
    assert out["queue"] == {"MessageId": "m-1", "Body": 3}
    assert out["invoke"] == {"p": {"echo": {"x": 1}, "fn": "Doubler"}, "code": 200, "v": "$LATEST"}


def test_mapping_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot import 'no_such_module'"):
        load_mapping({"Resources": {"x": "no_such_module:f"}}, Registry())
    with pytest.raises(MappingError, match="is not 'module:function'"):
        load_mapping({"Resources": {"x": "nocolon"}}, Registry())
    with pytest.raises(MappingError, match="unknown built-in"):
        load_mapping({"Enable": ["rocket"]}, Registry())


MOCKS = {
    "StateMachines": {
        "OrderFlow": {
            "TestCases": {
                "HappyPath": {"Charge": "ChargeOk", "Ship": "ShipFlaky"},
                "Declined": {"Charge": "ChargeDeclined"},
            }
        }
    },
    "MockedResponses": {
        "ChargeOk": {"0": {"Return": {"StatusCode": 200, "Payload": {"charged": 10}}}},
        "ChargeDeclined": {
            "0": {"Throw": {"Error": "Card.Declined", "Cause": "insufficient funds"}}
        },
        "ShipFlaky": {
            "0-1": {"Throw": {"Error": "Ship.Busy", "Cause": "try later"}},
            "2": {"Return": {"tracking": "T-1"}},
        },
    },
}

ORDER = {
    "StartAt": "Charge",
    "States": {
        "Charge": _task(
            "arn:aws:states:::lambda:invoke",
            Parameters={"FunctionName": "Charge", "Payload.$": "$"},
            ResultSelector={"charged.$": "$.Payload.charged"},
            ResultPath="$.charge",
            Next="Ship",
        ),
        "Ship": _task(
            "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            Parameters={"QueueUrl": "q", "MessageBody": {"t.$": "$$.Task.Token"}},
            Retry=[
                {
                    "ErrorEquals": ["Ship.Busy"],
                    "IntervalSeconds": 1,
                    "BackoffRate": 1,
                    "MaxAttempts": 3,
                }
            ],
            ResultPath="$.ship",
            End=True,
        ),
    },
}


def test_mock_mode_answers_from_mocked_responses(sqlite_url: str) -> None:
    registry = Registry()
    registry.use_mocks(MockConfig.load(MOCKS), "HappyPath")
    record = _run(sqlite_url, ORDER, {"order": 1}, registry)
    assert record.status == "SUCCEEDED", record.cause
    assert json.loads(record.output) == {
        "order": 1,
        "charge": {"charged": 10},
        "ship": {"tracking": "T-1"},
    }
    registry.use_mocks(MockConfig.load(MOCKS), "Declined")
    record = _run(sqlite_url, ORDER, {"order": 2}, registry)
    assert (record.status, record.error, record.cause) == (
        "FAILED",
        "Card.Declined",
        "insufficient funds",
    )


def test_mock_config_is_validated() -> None:
    with pytest.raises(MockConfigError, match="no MockedResponses entry 'Nope'"):
        MockConfig({"StateMachines": {"M": {"TestCases": {"C": {"S": "Nope"}}}}})
    with pytest.raises(MockConfigError, match="is not 'N' or 'N-M'"):
        MockConfig({"MockedResponses": {"R": {"x": {"Return": 1}}}})


def test_python_resources_need_the_allow_list(sqlite_url: str) -> None:
    definition = {
        "StartAt": "T",
        "States": {"T": _task("python:tests.activities.sample_handlers:double", End=True)},
    }
    record = _run(sqlite_url, definition, 21, Registry())
    assert (record.status, record.error) == ("FAILED", "States.Runtime")
    assert "No handler is registered" in (record.cause or "")
    registry = Registry()
    registry.allow_module("tests.activities")
    record = _run(sqlite_url, definition, 21, registry)
    assert (record.status, record.output) == ("SUCCEEDED", "42")


def test_lambda_errors_and_raw_payloads(sqlite_url: str) -> None:
    registry = Registry()

    class OrderInvalid(Exception):
        pass

    @lambda_function("arn:aws:lambda:us-east-1:111111111111:function:Validate", registry=registry)
    def validate(event: Any, context: Any) -> Any:
        raise OrderInvalid(f"bad order {event['id']}")

    @lambda_function("Raw", registry=registry)
    def raw(event: Any, context: Any) -> bytes:
        assert context.function_name == "Raw" and context.get_remaining_time_in_millis() > 0
        return b'{"raw": true}'

    @activity("plain", "also-plain", registry=registry)
    def plain(value: Any) -> Any:
        return value

    definition = {
        "StartAt": "Raw",
        "States": {
            "Raw": _task(
                "arn:aws:states:::lambda:invoke",
                Parameters={"FunctionName": "arn:aws:lambda:us-east-1:111111111111:function:Raw"},
                ResultSelector={"p.$": "$.Payload", "rid.$": "$.SdkResponseMetadata.RequestId"},
                ResultPath="$.raw",
                Next="Validate",
            ),
            "Validate": _task(
                "arn:aws:lambda:us-east-1:111111111111:function:Validate",
                Catch=[{"ErrorEquals": ["OrderInvalid"], "ResultPath": "$.err", "Next": "Missing"}],
                End=True,
            ),
            "Missing": _task(
                "arn:aws:states:::lambda:invoke",
                Parameters={"FunctionName": "Nope"},
                Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.missing", "Next": "Done"}],
                End=True,
            ),
            "Done": _task("also-plain", End=True),
        },
    }
    record = _run(sqlite_url, definition, {"id": 7}, registry)
    assert record.status == "SUCCEEDED", record.cause
    out = json.loads(record.output)
    assert out["raw"]["p"] == {"raw": True} and len(out["raw"]["rid"]) == 36
    assert out["err"]["Error"] == "OrderInvalid"
    cause = json.loads(out["err"]["Cause"])
    assert cause["errorMessage"] == "bad order 7" and cause["errorType"] == "OrderInvalid"
    assert isinstance(cause["stackTrace"], list) and len(cause["requestId"]) == 36
    # As a Lambda runtime writes it: compact JSON, the stack from the handler on.
    assert out["err"]["Cause"] == json.dumps(cause, separators=(",", ":"))
    assert cause["stackTrace"] and all(__file__ in line for line in cause["stackTrace"])
    assert out["missing"]["Error"] == "Lambda.ResourceNotFoundException"

    async def events() -> list[str]:
        async with Engine(sqlite_url, registry=registry) as engine:
            return [e.type for e in await engine.history(record)]

    types = anyio.run(events)
    assert "LambdaFunctionScheduled" in types and "LambdaFunctionFailed" in types
    assert types.count("TaskSucceeded") == 2  # lambda:invoke Raw and the plain Done
