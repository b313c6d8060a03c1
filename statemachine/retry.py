"""Retry and Catch: the retrier and catcher model, error matching, backoff arithmetic.

This module owns everything about Retry/Catch that needs no clock and no
I/O: parsing retriers and catchers into frozen structs, deciding which
retrier or catcher handles an error name (with AWS's wildcard rules:
``States.ALL``, ``States.TaskFailed``, ``States.HeartbeatTimeout``, and
``States.Runtime`` that nothing retries or catches), and the delay before the
n-th retry (exponential backoff, ``MaxDelaySeconds`` cap, ``FULL`` jitter from
a random value the caller supplies and journals). The engine keeps the
per-retrier attempt counters of one state visit and asks `decide_retry`.

Heartbeat timeouts: AWS reports them as ``States.Timeout`` (that is the error
name Catch puts in the Error Output), yet a ``States.HeartbeatTimeout``
matcher catches only them. The engine therefore passes the error name
``States.Timeout`` together with ``heartbeat=True``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from statemachine.errors import ExpressionSyntaxError, States
from statemachine.quotas import MAX_DELAY_SECONDS, MAX_SECONDS

__all__ = [
    "MAX_RETRY_DELAY_SECONDS",
    "Catcher",
    "Retrier",
    "RetryDecision",
    "decide_retry",
    "error_matches",
    "find_catcher",
    "find_retrier",
    "parse_catcher",
    "parse_retrier",
    "retry_delay",
    "should_retry",
]

# An execution cannot outlive a year (31,622,400 s is also MaxDelaySeconds'
# ceiling), so an uncapped backoff longer than that waits the same as this.
MAX_RETRY_DELAY_SECONDS = MAX_DELAY_SECONDS

_RETRIER_FIELDS = frozenset(
    {
        "ErrorEquals",
        "IntervalSeconds",
        "MaxAttempts",
        "BackoffRate",
        "MaxDelaySeconds",
        "JitterStrategy",
        "Comment",
    }
)
_CATCHER_FIELDS = frozenset({"ErrorEquals", "Next", "ResultPath", "Output", "Assign", "Comment"})


class Retrier(msgspec.Struct, frozen=True):
    """One element of a `Retry` array, with AWS's defaults filled in."""

    error_equals: tuple[str, ...]
    interval_seconds: int = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: int | None = None
    jitter: Literal["FULL", "NONE"] = "NONE"


class Catcher(msgspec.Struct, frozen=True):
    """One element of a `Catch` array.

    `result_path` is the raw ResultPath text (None when the definition gave
    ``null``: discard the error output); `has_result_path` tells whether the
    field was present at all (absent means the default ``$``). `output` and
    `assign` are the raw JSON values (msgspec.UNSET when absent), compiled
    by the caller for the state's query language.
    """

    error_equals: tuple[str, ...]
    next: str
    result_path: str | None = "$"
    has_result_path: bool = False
    output: Any = msgspec.UNSET
    assign: Any = msgspec.UNSET


class RetryDecision(msgspec.Struct, frozen=True):
    """What the engine does with an error: retry with this retrier, as its n-th retry."""

    retrier_index: int
    retry_number: int


def _error_equals(raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = raw.get("ErrorEquals")
    if not isinstance(names, list) or not names:
        raise ExpressionSyntaxError(f"{where}: ErrorEquals must be a non-empty array of strings")
    if not all(isinstance(name, str) for name in names):
        raise ExpressionSyntaxError(f"{where}: every ErrorEquals entry must be a string")
    if States.ALL in names and len(names) > 1:
        raise ExpressionSyntaxError(f"{where}: States.ALL must appear alone in ErrorEquals")
    return tuple(names)


def _check_fields(raw: Any, allowed: frozenset[str], where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ExpressionSyntaxError(f"{where} must be a JSON object")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ExpressionSyntaxError(f"{where}: unknown field(s) {', '.join(unknown)}")
    return raw


def _integer(raw: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ExpressionSyntaxError(f"retrier: {name} must be an integer in {low}..{high}")
    return value


def parse_retrier(raw: Any) -> Retrier:
    """Parse one `Retry` element into a `Retrier` with AWS's defaults.

    Raises ExpressionSyntaxError when a field is unknown, missing or out of
    range (IntervalSeconds 1..99999999, MaxAttempts 0..99999999, BackoffRate
    a number >= 1.0, MaxDelaySeconds 1..31622400, JitterStrategy FULL/NONE).
    """
    raw = _check_fields(raw, _RETRIER_FIELDS, "retrier")
    backoff = raw.get("BackoffRate", 2.0)
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not backoff >= 1.0:
        raise ExpressionSyntaxError("retrier: BackoffRate must be a number >= 1.0")
    max_delay: int | None = None
    if "MaxDelaySeconds" in raw:
        max_delay = _integer(raw, "MaxDelaySeconds", 1, 1, MAX_RETRY_DELAY_SECONDS)
    jitter = raw.get("JitterStrategy", "NONE")
    if jitter not in ("FULL", "NONE"):
        raise ExpressionSyntaxError("retrier: JitterStrategy must be FULL or NONE")
    return Retrier(
        error_equals=_error_equals(raw, "retrier"),
        interval_seconds=_integer(raw, "IntervalSeconds", 1, 1, MAX_SECONDS),
        max_attempts=_integer(raw, "MaxAttempts", 3, 0, MAX_SECONDS),
        backoff_rate=float(backoff),
        max_delay_seconds=max_delay,
        jitter=jitter,
    )


def parse_catcher(raw: Any, *, query_language: str | None = None) -> Catcher:
    """Parse one `Catch` element into a `Catcher`.

    With `query_language` given, the mode-specific field of the other mode
    is rejected (ResultPath is JSONPath-only, Output JSONata-only); with
    None both are accepted and kept raw. Raises ExpressionSyntaxError on an
    unknown field, a missing or non-string Next, a bad ErrorEquals or a
    ResultPath that is neither a string nor null.
    """
    raw = _check_fields(raw, _CATCHER_FIELDS, "catcher")
    next_state = raw.get("Next")
    if not isinstance(next_state, str):
        raise ExpressionSyntaxError("catcher: Next must be a string naming a state")
    if query_language == "JSONata" and "ResultPath" in raw:
        raise ExpressionSyntaxError("catcher: ResultPath is not allowed in JSONata; use Output")
    if query_language == "JSONPath" and "Output" in raw:
        raise ExpressionSyntaxError("catcher: Output is only allowed in JSONata")
    result_path = raw.get("ResultPath", "$")
    if result_path is not None and not isinstance(result_path, str):
        raise ExpressionSyntaxError("catcher: ResultPath must be a string or null")
    return Catcher(
        error_equals=_error_equals(raw, "catcher"),
        next=next_state,
        result_path=result_path,
        has_result_path="ResultPath" in raw,
        output=raw.get("Output", msgspec.UNSET),
        assign=raw.get("Assign", msgspec.UNSET),
    )


def error_matches(error_equals: Sequence[str], error: str, *, heartbeat: bool = False) -> bool:
    """Whether an ErrorEquals list handles `error`.

    ``States.Runtime`` never matches, even when named. ``States.ALL`` matches
    every other error. ``States.TaskFailed`` matches every error except
    ``States.Timeout`` (task, heartbeat or execution timeouts alike).
    ``States.HeartbeatTimeout`` matches a heartbeat timeout, which the
    engine reports as `error` ``States.Timeout`` with `heartbeat` True; a
    heartbeat timeout is also matched by ``States.Timeout`` itself.
    """
    if error == States.RUNTIME:
        return False
    for name in error_equals:
        if name == error or name == States.ALL:
            return True
        if name == States.TASK_FAILED and error != States.TIMEOUT:
            return True
        if name == States.HEARTBEAT_TIMEOUT and heartbeat and error == States.TIMEOUT:
            return True
    return False


def find_retrier(retriers: Sequence[Retrier], error: str, *, heartbeat: bool = False) -> int | None:
    """Index of the first retrier whose ErrorEquals matches `error`, else None.

    Only the first match counts: if it is exhausted, the error goes to
    Catch and no later retrier is consulted (use `decide_retry` for that).
    """
    for index, retrier in enumerate(retriers):
        if error_matches(retrier.error_equals, error, heartbeat=heartbeat):
            return index
    return None


def find_catcher(catchers: Sequence[Catcher], error: str, *, heartbeat: bool = False) -> int | None:
    """Index of the first catcher whose ErrorEquals matches `error`, else None."""
    for index, catcher in enumerate(catchers):
        if error_matches(catcher.error_equals, error, heartbeat=heartbeat):
            return index
    return None


def should_retry(retrier: Retrier, attempts_so_far: int) -> bool:
    """Whether a retrier that has already retried `attempts_so_far` times may retry again.

    MaxAttempts counts retries, not runs: 3 allows three retries after the
    first run; 0 never retries.
    """
    return attempts_so_far < retrier.max_attempts


def decide_retry(
    retriers: Sequence[Retrier],
    error: str,
    attempts_so_far: Sequence[int],
    *,
    heartbeat: bool = False,
) -> RetryDecision | None:
    """Decide whether `error` is retried, given each retrier's retries so far in this visit.

    `attempts_so_far[i]` is how many retries retrier i has made since the
    state was entered (missing entries count as 0). Returns the retrier to
    use and the 1-based number of this retry (pass it to `retry_delay`, and
    count it in the engine's counters), or None when the error goes to
    Catch: no retrier matches, or the first matching one is exhausted (AWS
    does not fall through to a later retrier).
    """
    index = find_retrier(retriers, error, heartbeat=heartbeat)
    if index is None:
        return None
    done = attempts_so_far[index] if index < len(attempts_so_far) else 0
    if not should_retry(retriers[index], done):
        return None
    return RetryDecision(retrier_index=index, retry_number=done + 1)


def retry_delay(retrier: Retrier, retry_number: int, random_value: float) -> float:
    """Seconds to wait before the `retry_number`-th retry (1-based) of `retrier`.

    The delay is ``IntervalSeconds * BackoffRate ** (n - 1)``, capped by
    ``MaxDelaySeconds`` when given and in any case by
    `MAX_RETRY_DELAY_SECONDS`. With ``JitterStrategy: FULL`` it is then
    scaled by `random_value` (a uniform draw in [0, 1) the caller makes and
    journals; ignored with ``NONE``). The result is rounded to whole
    milliseconds — the timer resolution — so float noise such as
    ``3 * 1.1 ** 2 == 3.6300000000000003`` becomes 3.63; jittered delays are
    rounded down so they never exceed the unjittered one. Raises ValueError
    when `retry_number` < 1 or `random_value` is outside [0, 1).
    """
    if retry_number < 1:
        raise ValueError("retry_number is 1-based")
    if not 0.0 <= random_value < 1.0:
        raise ValueError("random_value must be in [0, 1)")
    cap = float(MAX_RETRY_DELAY_SECONDS)
    if retrier.max_delay_seconds is not None:
        cap = min(cap, float(retrier.max_delay_seconds))
    try:
        delay = retrier.interval_seconds * retrier.backoff_rate ** (retry_number - 1)
    except OverflowError:
        delay = math.inf
    delay = min(delay, cap)
    if retrier.jitter == "FULL":
        return math.floor(delay * random_value * 1000) / 1000
    return round(delay * 1000) / 1000
