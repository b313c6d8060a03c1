"""Semantics audit, Wait: what AWS records for a JSONata `Timestamp` it cannot parse.

The cases come from LocalStack's AWS-validated snapshot
`scenarios/test_base_scenarios.py::test_wait_timestamp_jsonata` (NO_Z,
NO_T, INVALID_DATE, INVALID_TIME, INVALID_ISO): AWS fails with
`States.QueryEvaluationError`, records an `EvaluationFailed` event located at
`Timestamp`, and words the cause like the JSONPath Wait's. Each runs end to
end through `Engine` on a real SQLite file.
"""

from __future__ import annotations

import pytest

from engine import Engine

MACHINE = {
    "QueryLanguage": "JSONata",
    "StartAt": "WaitState",
    "States": {
        "WaitState": {
            "Type": "Wait",
            "Timestamp": "{% $states.input.TimestampValue %}",
            "End": True,
        }
    },
}


@pytest.mark.parametrize(
    "timestamp",
    [
        "2016-12-05T21:29:29",
        "2016-12-05 21:29:29Z",
        "2016-13-05T21:29:29Z",
        "2016-12-05T25:29:29Z",
        "05-12-2016T21:29:29Z",
    ],
)
def test_unparsable_jsonata_timestamp_as_aws_records_it(sqlite_url: str, timestamp: str) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(MACHINE, {"TimestampValue": timestamp})
        events = engine.history_sync(record)
    cause = (
        "An error occurred while executing the state 'WaitState' (entered at the event id #2). "
        "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format "
        f"string: {timestamp}"
    )
    assert (record.status, record.error, record.cause) == (
        "FAILED",
        "States.QueryEvaluationError",
        cause,
    )
    assert [e.type for e in events] == [
        "ExecutionStarted",
        "WaitStateEntered",
        "EvaluationFailed",
        "ExecutionFailed",
    ]
    details = events[2].details
    assert (details["error"], details["cause"], details["location"], details["state"]) == (
        "States.QueryEvaluationError",
        cause,
        "Timestamp",
        "WaitState",
    )


def test_a_valid_jsonata_timestamp_in_the_past_continues_at_once(sqlite_url: str) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(MACHINE, {"TimestampValue": "2016-03-14T01:59:00Z"})
    assert record.status == "SUCCEEDED"
