"""The bounds of one JSONata evaluation and the error it fails with.

Kept apart from `statemachine.jsonata` (which re-exports both) so that the
evaluator in `statemachine.jsonata_eval`, loaded with the first expression
compiled, can raise them without importing the module that loads it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from statemachine.errors import States, StatesError

__all__ = ["Limits", "QueryEvaluationError"]


class Limits(msgspec.Struct, frozen=True):
    """Bounds on one evaluation (one template or one expression).

    `max_depth` bounds the evaluator's recursion and the nesting of the result;
    `max_items` the length of any array/object built and of the result in
    total; `max_string_bytes` any string built and the result's characters in
    total.
    """

    timeout_seconds: float = 1.0
    max_depth: int = 1000
    max_items: int = 100_000
    max_string_bytes: int = 4 * 1024 * 1024


class QueryEvaluationError(StatesError):
    """`States.QueryEvaluationError` with the field it happened in (`location`)."""

    def __init__(self, cause: str, *, location: str, timed_out: bool = False) -> None:
        super().__init__(States.QUERY_EVALUATION_ERROR, cause)
        self.location = location
        # True when the evaluation ran out of time (D1012): the engine may run it again elsewhere.
        self.timed_out = timed_out

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.cause, self.location))


def _rebuild_error(cause: str, location: str) -> QueryEvaluationError:
    return QueryEvaluationError(cause, location=location)
