"""The AWS JSON 1.0 protocol as Step Functions speaks it: request members, errors, encoding.

A request is ``POST /`` with ``X-Amz-Target: AWSStepFunctions.<Operation>``
and a JSON object of camelCase members; the answer is a JSON object, with
timestamps as epoch seconds. Every error a caller can cause is HTTP 400
with ``{"__type": "<Code>", "message": "…"}`` — botocore raises it as the
modelled exception class of that code, and never retries a 4xx. This
module owns that shape: `AwsError` (an error with its code), `error_for`
(which AWS code an engine error is), the `Members` reader that checks
required members, types, lengths, ranges and enums with AWS's own
``ValidationException`` wording (botocore checks only minimums on the
client), and `encode` for responses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from engine.arns import ParsedArn, parse_arn
from engine.errors import (
    AmbiguousExecution,
    ExecutionNotRunning,
    StoreUnavailable,
    UnstorableData,
)

__all__ = [
    "CONTENT_TYPE",
    "AwsError",
    "Members",
    "encode",
    "epoch",
    "error_for",
]

CONTENT_TYPE = "application/x-amz-json-1.0"

log = logging.getLogger("stepwise.http")

# Stepwise's own errors that AWS's API reports under one of its codes.
_AWS_EQUIVALENT: tuple[tuple[type[BaseException], str], ...] = (
    # Stopping a closed execution: AWS answers ValidationException.
    (ExecutionNotRunning, "ValidationException"),
    # A name given where an ARN belongs that matches several executions.
    (AmbiguousExecution, "ExecutionDoesNotExist"),
    # A value of the request the database refused (e.g. a NUL on PostgreSQL): the client's.
    (UnstorableData, "ValidationException"),
)


class AwsError(Exception):
    """An answer in AWS's error shape: `code` (``__type``), `message` and the HTTP status."""

    def __init__(self, code: str, message: str, *, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"__type": self.code, "message": self.message, **self.extra}


def validation_error(member: str, value: Any, constraint: str) -> AwsError:
    """AWS's ``ValidationException`` for one member that breaks one constraint."""
    # AWS quotes a value it shows and writes a missing one bare: ``Value null``.
    shown = "null" if value is None else f"'{_clipped(str(value))}'"
    return AwsError(
        "ValidationException",
        f"1 validation error detected: Value {shown} at '{member}' failed to satisfy "
        f"constraint: {constraint}",
    )


def _clipped(text: str) -> str:
    return text[:100] + "…" if len(text) > 100 else text


def error_for(error: BaseException) -> AwsError:
    """The AWS answer for an error an operation raised.

    The error tree's ``aws_code`` decides, except for the Stepwise-only
    errors that AWS's API reports under one of its own codes. A store
    outage is a 503 ``ServiceUnavailable`` (clients retry it); anything else
    unexpected is a 500 ``InternalFailure`` whose message names no
    internals — the traceback goes to the log at DEBUG.
    """
    if isinstance(error, AwsError):
        return error
    for cls, name in _AWS_EQUIVALENT:
        if isinstance(error, cls):
            return AwsError(name, _one_line(error))
    code = getattr(type(error), "aws_code", None)
    if isinstance(code, str) and code:
        return AwsError(code, _one_line(error))
    if isinstance(error, StoreUnavailable):
        log.error("store unavailable: %s", _one_line(error))
        return AwsError(
            "ServiceUnavailable", "The database is unavailable; retry later.", status=503
        )
    log.error("internal error answering a request: %s", type(error).__name__)
    log.debug("internal error", exc_info=error)
    return AwsError("InternalFailure", "The request processing has failed.", status=500)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def epoch(moment: datetime | None) -> float | None:
    """A timestamp as the protocol sends it: epoch seconds (fractional), or None."""
    return None if moment is None else moment.timestamp()


def encode(document: dict[str, Any]) -> bytes:
    """A response body: the document as JSON, with members that are None left out."""
    return msgspec.json.encode({k: v for k, v in document.items() if v is not None})


_MISSING = object()


class Members:
    """The members of one request, read and checked the way AWS checks them.

    Each getter returns the member (or its default when absent) and raises
    ``ValidationException`` with AWS's message when it is the wrong type,
    too long, out of range or not one of the allowed values. A nested
    object's members are named by their path from the request, as AWS names
    them: `at` is the object's own path (``tags.1.member``), so its ``key``
    is ``tags.1.member.key``.
    """

    def __init__(self, body: dict[str, Any], *, at: str = "") -> None:
        self.body = body
        self.at = at

    def _path(self, name: str) -> str:
        return f"{self.at}.{name}" if self.at else name

    def _get(self, name: str, required: bool) -> Any:
        value = self.body.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise validation_error(self._path(name), None, "Member must not be null")
            return _MISSING
        return value

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        default: str | None = None,
        min_length: int = 0,
        max_length: int | None = None,
        choices: Iterable[str] | None = None,
    ) -> str | None:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            raise AwsError("SerializationException", f"'{self._path(name)}' must be a string")
        if len(value) < min_length:
            raise validation_error(
                self._path(name),
                value,
                f"Member must have length greater than or equal to {min_length}",
            )
        if max_length is not None and len(value) > max_length:
            raise validation_error(
                self._path(name),
                value,
                f"Member must have length less than or equal to {max_length}",
            )
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise validation_error(
                    name, value, f"Member must satisfy enum value set: [{', '.join(allowed)}]"
                )
        return value

    def required_string(self, name: str, **kwargs: Any) -> str:
        value = self.string(name, required=True, **kwargs)
        assert value is not None
        return value

    def integer(
        self, name: str, *, default: int, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self._get(name, False)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise AwsError("SerializationException", f"'{self._path(name)}' must be an integer")
        if minimum is not None and value < minimum:
            raise validation_error(
                self._path(name),
                value,
                f"Member must have value greater than or equal to {minimum}",
            )
        if maximum is not None and value > maximum:
            raise validation_error(
                self._path(name), value, f"Member must have value less than or equal to {maximum}"
            )
        return value

    def number(self, name: str, *, minimum: float, maximum: float) -> float | None:
        """A float member (UpdateMapRun's toleratedFailurePercentage); None when absent."""
        value = self._get(name, False)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AwsError("SerializationException", f"'{self._path(name)}' must be a number")
        if not minimum <= value <= maximum:
            raise validation_error(
                self._path(name), value, f"Member must have value between {minimum} and {maximum}"
            )
        return float(value)

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self._get(name, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise AwsError("SerializationException", f"'{self._path(name)}' must be a boolean")
        return value

    def max_results(self, name: str = "maxResults", *, maximum: int = 1000) -> int:
        """A page size: 0 or absent means AWS's default of 100."""
        value = self.integer(name, default=0, minimum=0, maximum=maximum)
        return value or 100

    def next_token(self, name: str = "nextToken", *, max_length: int = 1024) -> str | None:
        return self.string(name, min_length=1, max_length=max_length)

    def arn(self, name: str, *kinds: str, required: bool = True) -> ParsedArn | None:
        """An ARN member of one of `kinds`; InvalidArn when it is not one."""
        value = self.string(name, required=required, min_length=1, max_length=2000)
        if value is None:
            return None
        return parse_arn(value, kinds=kinds)

    def required_arn(self, name: str, *kinds: str) -> ParsedArn:
        parsed = self.arn(name, *kinds, required=True)
        assert parsed is not None
        return parsed
