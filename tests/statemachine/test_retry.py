"""Retry/Catch: parsing, error-name matching, backoff arithmetic, no fall-through."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemachine.errors import ExpressionSyntaxError, States
from statemachine.retry import (
    MAX_RETRY_DELAY_SECONDS,
    Catcher,
    Retrier,
    RetryDecision,
    decide_retry,
    error_matches,
    find_catcher,
    find_retrier,
    parse_catcher,
    parse_retrier,
    retry_delay,
    should_retry,
)

# --- parsing -----------------------------------------------------------------


def test_retrier_defaults() -> None:
    assert parse_retrier({"ErrorEquals": ["States.ALL"]}) == Retrier(
        error_equals=("States.ALL",),
        interval_seconds=1,
        max_attempts=3,
        backoff_rate=2.0,
        max_delay_seconds=None,
        jitter="NONE",
    )


def test_retrier_all_fields() -> None:
    retrier = parse_retrier(
        {
            "ErrorEquals": ["Lambda.ServiceException", "Custom"],
            "IntervalSeconds": 3,
            "MaxAttempts": 0,
            "BackoffRate": 1,
            "MaxDelaySeconds": 10,
            "JitterStrategy": "FULL",
            "Comment": "why",
        }
    )
    assert retrier == Retrier(
        error_equals=("Lambda.ServiceException", "Custom"),
        interval_seconds=3,
        max_attempts=0,
        backoff_rate=1.0,
        max_delay_seconds=10,
        jitter="FULL",
    )
    assert isinstance(retrier.backoff_rate, float)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "ErrorEquals must be a non-empty array"),
        ({"ErrorEquals": []}, "ErrorEquals must be a non-empty array"),
        ({"ErrorEquals": "States.ALL"}, "ErrorEquals must be a non-empty array"),
        ({"ErrorEquals": [1]}, "must be a string"),
        ({"ErrorEquals": ["States.ALL", "X"]}, "States.ALL must appear alone"),
        ({"ErrorEquals": ["X"], "IntervalSeconds": 0}, "IntervalSeconds"),
        ({"ErrorEquals": ["X"], "IntervalSeconds": 1.5}, "IntervalSeconds"),
        ({"ErrorEquals": ["X"], "IntervalSeconds": True}, "IntervalSeconds"),
        ({"ErrorEquals": ["X"], "IntervalSeconds": 100_000_000}, "IntervalSeconds"),
        ({"ErrorEquals": ["X"], "MaxAttempts": -1}, "MaxAttempts"),
        ({"ErrorEquals": ["X"], "BackoffRate": 0.5}, "BackoffRate"),
        ({"ErrorEquals": ["X"], "BackoffRate": "2"}, "BackoffRate"),
        ({"ErrorEquals": ["X"], "MaxDelaySeconds": 0}, "MaxDelaySeconds"),
        ({"ErrorEquals": ["X"], "MaxDelaySeconds": 31_622_401}, "MaxDelaySeconds"),
        ({"ErrorEquals": ["X"], "JitterStrategy": "HALF"}, "JitterStrategy"),
        ({"ErrorEquals": ["X"], "Next": "A"}, "unknown field"),
        (["X"], "must be a JSON object"),
    ],
)
def test_bad_retriers(raw: Any, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match=message):
        parse_retrier(raw)


def test_catcher_defaults() -> None:
    catcher = parse_catcher({"ErrorEquals": ["States.ALL"], "Next": "Handle"})
    assert catcher == Catcher(error_equals=("States.ALL",), next="Handle")
    assert catcher.result_path == "$"
    assert catcher.has_result_path is False
    assert catcher.output is msgspec.UNSET
    assert catcher.assign is msgspec.UNSET


def test_catcher_result_path_null_is_kept_apart_from_absent() -> None:
    catcher = parse_catcher({"ErrorEquals": ["X"], "Next": "N", "ResultPath": None})
    assert catcher.result_path is None
    assert catcher.has_result_path is True
    given_path = parse_catcher({"ErrorEquals": ["X"], "Next": "N", "ResultPath": "$.error"})
    assert (given_path.result_path, given_path.has_result_path) == ("$.error", True)


def test_catcher_keeps_output_and_assign_raw() -> None:
    catcher = parse_catcher(
        {
            "ErrorEquals": ["X"],
            "Next": "N",
            "Output": "{% $states.errorOutput %}",
            "Assign": {"failed": True},
            "Comment": "c",
        },
        query_language="JSONata",
    )
    assert catcher.output == "{% $states.errorOutput %}"
    assert catcher.assign == {"failed": True}


def test_catcher_output_null_is_a_value() -> None:
    catcher = parse_catcher({"ErrorEquals": ["X"], "Next": "N", "Output": None})
    assert catcher.output is None


@pytest.mark.parametrize(
    ("raw", "language", "message"),
    [
        ({"ErrorEquals": ["X"]}, None, "Next must be a string"),
        ({"ErrorEquals": ["X"], "Next": 3}, None, "Next must be a string"),
        ({"Next": "N"}, None, "ErrorEquals"),
        ({"ErrorEquals": ["X"], "Next": "N", "ResultPath": 5}, None, "ResultPath must be"),
        ({"ErrorEquals": ["X"], "Next": "N", "ResultPath": "$"}, "JSONata", "not allowed in"),
        ({"ErrorEquals": ["X"], "Next": "N", "Output": 1}, "JSONPath", "only allowed in JSONata"),
        ({"ErrorEquals": ["X"], "Next": "N", "IntervalSeconds": 1}, None, "unknown field"),
    ],
)
def test_bad_catchers(raw: Any, language: str | None, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match=message):
        parse_catcher(raw, query_language=language)


# --- matching -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "error", "heartbeat", "expected"),
    [
        (["MyError"], "MyError", False, True),
        (["MyError"], "myerror", False, False),
        (["Other", "MyError"], "MyError", False, True),
        (["States.ALL"], "MyError", False, True),
        (["States.ALL"], "States.Timeout", False, True),
        (["States.ALL"], "States.TaskFailed", False, True),
        (["States.ALL"], "States.DataLimitExceeded", False, True),
        (["States.ALL"], "States.Runtime", False, False),
        (["States.Runtime"], "States.Runtime", False, False),
        (["States.TaskFailed"], "Lambda.ServiceException", False, True),
        (["States.TaskFailed"], "States.TaskFailed", False, True),
        (["States.TaskFailed"], "States.Permissions", False, True),
        (["States.TaskFailed"], "States.Timeout", False, False),
        (["States.TaskFailed"], "States.Timeout", True, False),
        (["States.TaskFailed"], "States.Runtime", False, False),
        (["States.Timeout"], "States.Timeout", False, True),
        (["States.Timeout"], "States.Timeout", True, True),
        (["States.HeartbeatTimeout"], "States.Timeout", True, True),
        (["States.HeartbeatTimeout"], "States.Timeout", False, False),
        (["States.HeartbeatTimeout"], "States.HeartbeatTimeout", False, True),
        (["States.HeartbeatTimeout"], "MyError", True, False),
        (["States.Timeout"], "MyError", False, False),
    ],
)
def test_error_matches(names: list[str], error: str, heartbeat: bool, expected: bool) -> None:
    assert error_matches(names, error, heartbeat=heartbeat) is expected


def _retrier(*names: str, attempts: int = 3) -> Retrier:
    return Retrier(error_equals=names, max_attempts=attempts)


def test_find_retrier_takes_the_first_match() -> None:
    retriers = [_retrier("A"), _retrier("B", "States.Timeout"), _retrier("States.ALL")]
    assert find_retrier(retriers, "A") == 0
    assert find_retrier(retriers, "States.Timeout") == 1
    assert find_retrier(retriers, "Z") == 2
    assert find_retrier(retriers, States.RUNTIME) is None
    assert find_retrier([], "A") is None
    assert find_retrier([_retrier("States.HeartbeatTimeout")], "States.Timeout") is None
    assert (
        find_retrier([_retrier("States.HeartbeatTimeout")], "States.Timeout", heartbeat=True) == 0
    )


def test_find_catcher() -> None:
    catchers = [
        Catcher(error_equals=("States.TaskFailed",), next="Failed"),
        Catcher(error_equals=("States.ALL",), next="Anything"),
    ]
    assert find_catcher(catchers, "Boom") == 0
    assert find_catcher(catchers, "States.Timeout") == 1
    assert find_catcher(catchers, "States.Runtime") is None


def test_should_retry_counts_retries_not_runs() -> None:
    assert [should_retry(_retrier("A", attempts=3), n) for n in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert should_retry(_retrier("A", attempts=0), 0) is False


def test_decide_retry_walks_one_retrier_to_exhaustion() -> None:
    retriers = [_retrier("A", attempts=2), _retrier("States.ALL", attempts=5)]
    counts = [0, 0]
    decisions = []
    while (decision := decide_retry(retriers, "A", counts)) is not None:
        decisions.append(decision)
        counts[decision.retrier_index] += 1
    assert decisions == [RetryDecision(0, 1), RetryDecision(0, 2)]
    # The exhausted first match does not fall through to the States.ALL retrier.
    assert counts == [2, 0]


def test_decide_retry_counters_are_per_retrier() -> None:
    retriers = [_retrier("A", attempts=1), _retrier("B", attempts=1)]
    assert decide_retry(retriers, "B", [1]) == RetryDecision(1, 1)
    assert decide_retry(retriers, "A", [1, 0]) is None
    assert decide_retry(retriers, "B", [1, 1]) is None
    assert decide_retry(retriers, "C", [0, 0]) is None
    assert decide_retry(retriers, States.RUNTIME, []) is None
    assert decide_retry([_retrier("A", attempts=0)], "A", []) is None


# --- backoff ------------------------------------------------------------------


def test_default_backoff_sequence() -> None:
    retrier = Retrier(error_equals=("X",))
    assert [retry_delay(retrier, n, 0.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_backoff_with_interval_and_rate() -> None:
    retrier = Retrier(error_equals=("X",), interval_seconds=3, backoff_rate=1.5)
    assert [retry_delay(retrier, n, 0.9) for n in (1, 2, 3, 4)] == [3.0, 4.5, 6.75, 10.125]


def test_backoff_is_rounded_to_milliseconds() -> None:
    retrier = Retrier(error_equals=("X",), interval_seconds=3, backoff_rate=1.1)
    assert retry_delay(retrier, 3, 0.0) == 3.63
    assert retry_delay(retrier, 4, 0.0) == 3.993


def test_rate_one_keeps_the_interval() -> None:
    retrier = Retrier(error_equals=("X",), interval_seconds=7, backoff_rate=1.0)
    assert {retry_delay(retrier, n, 0.0) for n in range(1, 50)} == {7.0}


def test_max_delay_caps_the_interval() -> None:
    retrier = Retrier(error_equals=("X",), interval_seconds=2, max_delay_seconds=10)
    assert [retry_delay(retrier, n, 0.0) for n in (1, 2, 3, 4, 5, 30)] == [
        2.0,
        4.0,
        8.0,
        10.0,
        10.0,
        10.0,
    ]


def test_uncapped_backoff_stops_at_a_year_and_never_overflows() -> None:
    retrier = Retrier(error_equals=("X",), interval_seconds=99_999_999, backoff_rate=1e300)
    assert retry_delay(retrier, 1, 0.0) == float(MAX_RETRY_DELAY_SECONDS)
    assert retry_delay(retrier, 99_999_999, 0.0) == float(MAX_RETRY_DELAY_SECONDS)
    capped = Retrier(error_equals=("X",), backoff_rate=2.0, max_delay_seconds=60)
    assert retry_delay(capped, 99_999_999, 0.0) == 60.0


def test_full_jitter_scales_the_delay() -> None:
    retrier = Retrier(error_equals=("X",), interval_seconds=4, jitter="FULL")
    assert retry_delay(retrier, 1, 0.0) == 0.0
    assert retry_delay(retrier, 1, 0.5) == 2.0
    assert retry_delay(retrier, 2, 0.25) == 2.0
    assert retry_delay(retrier, 1, 0.99999) == 3.999  # rounded down, below the ceiling
    capped = Retrier(error_equals=("X",), interval_seconds=4, max_delay_seconds=5, jitter="FULL")
    assert retry_delay(capped, 3, 0.5) == 2.5  # jitter applies after the cap


def test_no_jitter_ignores_the_random_value() -> None:
    retrier = Retrier(error_equals=("X",), interval_seconds=4)
    assert retry_delay(retrier, 2, 0.0) == retry_delay(retrier, 2, 0.7) == 8.0


@pytest.mark.parametrize(("number", "value"), [(0, 0.5), (-1, 0.5), (1, 1.0), (1, -0.1)])
def test_retry_delay_rejects_bad_arguments(number: int, value: float) -> None:
    with pytest.raises(ValueError):
        retry_delay(Retrier(error_equals=("X",)), number, value)


@given(
    interval=st.integers(1, 99_999_999),
    rate=st.floats(1.0, 1e6),
    max_delay=st.none() | st.integers(1, MAX_RETRY_DELAY_SECONDS),
    jitter=st.sampled_from(["FULL", "NONE"]),
    number=st.integers(1, 99_999_999),
    value=st.floats(0.0, 1.0, exclude_max=True),
)
def test_delay_is_bounded_and_jitter_never_exceeds_the_plain_delay(
    interval: int, rate: float, max_delay: int | None, jitter: Any, number: int, value: float
) -> None:
    plain = Retrier(
        error_equals=("X",),
        interval_seconds=interval,
        backoff_rate=rate,
        max_delay_seconds=max_delay,
    )
    jittered = msgspec.structs.replace(plain, jitter=jitter)
    ceiling = max_delay if max_delay is not None else MAX_RETRY_DELAY_SECONDS
    delay = retry_delay(plain, number, value)
    assert min(interval, ceiling) <= delay <= ceiling
    assert 0.0 <= retry_delay(jittered, number, value) <= delay


@given(number=st.integers(1, 60), rate=st.floats(1.0, 4.0))
def test_delays_never_shrink_between_retries(number: int, rate: float) -> None:
    retrier = Retrier(error_equals=("X",), interval_seconds=1, backoff_rate=rate)
    assert retry_delay(retrier, number, 0.0) <= retry_delay(retrier, number + 1, 0.0)
