"""A Task attempt's outcome as a typed value, and its journaled form.

An attempt ends `Succeeded(value)` or `Failed(error, cause, heartbeat)`. The
journal keeps the form recorded executions already hold — ``{"ok": value}``
or ``{"error": …, "cause": …}`` with ``"hb"`` when a timeout says whether a
heartbeat was missed — so `to_record` and `from_record` are exact inverses
of what is on disk. A handler's result is taken only when it is JSON of at
most 256 KiB (`encode_result`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from engine.walk import FinalError
from statemachine.errors import States
from statemachine.jsontext import MAX_JSON_DEPTH, json_problem
from statemachine.quotas import MAX_PAYLOAD_BYTES

__all__ = [
    "Failed",
    "Outcome",
    "Succeeded",
    "TaskFailure",
    "encode_result",
    "from_record",
    "to_record",
    "too_large",
]


@dataclass(frozen=True)
class Succeeded:
    """The attempt returned `value` (JSON)."""

    value: Any


@dataclass(frozen=True)
class Failed:
    """The attempt failed with an ASL error name and cause.

    `heartbeat` is None when the failure is not a timeout's (nothing is
    journaled for it), else whether the timeout was a missed heartbeat.
    """

    error: str
    cause: str | None = None
    heartbeat: bool | None = None

    def __post_init__(self) -> None:
        # A handler's exception text may hold a lone surrogate, which no UTF-8
        # journal row can carry: such characters are written as escapes.
        object.__setattr__(self, "error", _storable(self.error))
        if self.cause is not None:
            object.__setattr__(self, "cause", _storable(self.cause))


Outcome = Succeeded | Failed


def _storable(text: str) -> str:
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode()


class TaskFailure(FinalError):
    """A task attempt's failure, as journaled."""

    def __init__(self, error: str, cause: str | None, *, heartbeat: bool = False) -> None:
        super().__init__(error, cause)
        self.heartbeat = heartbeat


def to_record(outcome: Outcome) -> dict[str, Any]:
    """The outcome as journaled (the form executions recorded before this type hold)."""
    if isinstance(outcome, Succeeded):
        return {"ok": outcome.value}
    record: dict[str, Any] = {"error": outcome.error, "cause": outcome.cause}
    if outcome.heartbeat is not None:
        record["hb"] = outcome.heartbeat
    return record


def from_record(record: dict[str, Any]) -> Outcome:
    """The outcome a journaled record (or a SQL effect's result) holds."""
    if "ok" in record:
        return Succeeded(record["ok"])
    return Failed(record["error"], record.get("cause"), record.get("hb"))


def too_large(limit_name: str) -> Failed:
    """AWS's failure for a result over 256 KiB, naming the state or service."""
    return Failed(
        States.DATA_LIMIT_EXCEEDED,
        f"The state/task '{limit_name}' returned a result with a size exceeding "
        "the maximum number of bytes service limit.",
    )


def encode_result(value: Any, limit_name: str) -> Outcome:
    """A handler's return value as an outcome: JSON of at most 256 KiB, else a failure."""
    try:
        encoded = msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError) as failure:
        return Failed(States.RUNTIME, f"The task result is not JSON: {failure}")
    except UnicodeEncodeError:
        return Failed(States.RUNTIME, f"The task result is not JSON: {_SURROGATE}")
    except RecursionError:
        return Failed(States.RUNTIME, f"The task result is not JSON: {_TOO_DEEP}")
    if len(encoded) > MAX_PAYLOAD_BYTES:
        return too_large(limit_name)
    result = msgspec.json.decode(encoded)
    # Encoded, the value holds no lone surrogate (the encoder refuses one), so
    # only its nesting is left to check, and a text too short for more than
    # MAX_JSON_DEPTH levels (each takes two brackets) cannot hold too many.
    if len(encoded) > _MAX_SHALLOW:
        problem = json_problem(result)
        if problem is not None:
            return Failed(States.RUNTIME, f"The task result is not JSON: {problem}")
    return Succeeded(result)


_MAX_SHALLOW = 2 * MAX_JSON_DEPTH
_SURROGATE = "a string holds a lone surrogate (not valid Unicode; invalid UTF-8 reads as one)"
_TOO_DEEP = f"JSON nests deeper than {MAX_JSON_DEPTH} levels"
