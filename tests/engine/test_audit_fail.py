"""Semantics audit, Fail state: what AWS records when ErrorPath/CausePath select nothing.

Each case was recorded on AWS (LocalStack's snapshot test
`scenarios/test_base_scenarios.py::test_invalid_jsonpath`) and runs here
end to end through `Engine` on a real SQLite file.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from engine import Engine, LoopClock


def run_case(url: str, definition: dict[str, Any], input: Any) -> tuple[Any, ...]:
    async def main() -> tuple[Any, ...]:
        async with Engine(url, clock=LoopClock(), worker=False, inline_store=True) as engine:
            record = await engine.run(definition, input)
            events = await engine.history(record)
            return record.status, record.error, record.cause, [e.type for e in events]

    result: tuple[Any, ...] = anyio.run(
        main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )
    return result


def _machine(fail: dict[str, Any]) -> dict[str, Any]:
    return {
        "StartAt": "pass",
        "States": {
            "pass": {"Type": "Pass", "Next": "fail", "Parameters": {"Error": "error-value"}},
            "fail": {"Type": "Fail", **fail},
        },
    }


@pytest.mark.parametrize(
    ("fail", "path", "field"),
    [
        ({"ErrorPath": "$.ErrorX"}, "$.ErrorX", "ErrorPath"),
        ({"ErrorPath": "$.Error", "CausePath": "$.CauseX"}, "$.CauseX", "CausePath"),
    ],
)
def test_missing_error_or_cause_path_is_named_like_aws(
    sqlite_url: str, fail: dict[str, Any], path: str, field: str
) -> None:
    status, error, cause, types = run_case(sqlite_url, _machine(fail), {"int-literal": 0})
    assert (status, error) == ("FAILED", "States.Runtime")
    assert cause == (
        "An error occurred while executing the state 'fail' (entered at the event id #4). "
        f"The JSONPath '{path}' specified for the field '{field}' could not be found in "
        """the input '{"Error":"error-value"}'"""
    )
    assert types == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "FailStateEntered",
        "ExecutionFailed",
    ]


def test_error_and_cause_paths_that_match_still_fail_with_their_values(sqlite_url: str) -> None:
    fail = {"ErrorPath": "$.Error", "CausePath": "$.Error"}
    status, error, cause, _ = run_case(sqlite_url, _machine(fail), {})
    assert (status, error, cause) == ("FAILED", "error-value", "error-value")
