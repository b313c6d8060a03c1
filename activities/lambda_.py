"""AWS Lambda emulation: run a Python function the way Step Functions calls a Lambda function.

`lambda_function("arn:aws:lambda:REGION:ACCOUNT:function:NAME")(fn)` (or a
bare function name) registers ``fn(event, context)``. `call_function` runs
it as the Lambda service would: the return value becomes the JSON payload
(bytes are a raw payload, passed through), an exception becomes a function
error with AWS's error object, and `invoke_result` wraps a payload in the
result shape of the ``arn:aws:states:::lambda:invoke`` integration. This
module never imports the engine: the engine decides events and journaling.
"""

from __future__ import annotations

import json
import sysconfig
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio

from activities.registry import (
    ActivityContext,
    HandlerStopIteration,
    Registration,
    Registry,
    call_handler,
    default_registry,
    lambda_name,
)

__all__ = [
    "LambdaContext",
    "LambdaError",
    "LambdaPayload",
    "call_function",
    "function_arn",
    "function_error_cause",
    "invoke_result",
    "lambda_function",
]

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT_REGION = "us-east-1"
_DEFAULT_ACCOUNT = "000000000000"


def function_arn(reference: str) -> str:
    """The full function ARN of a name or ARN (a bare name gets a local region and account)."""
    if reference.startswith("arn:"):
        return reference
    if ":function:" in reference:
        return f"arn:aws:lambda:{_DEFAULT_REGION}:{reference}"
    return f"arn:aws:lambda:{_DEFAULT_REGION}:{_DEFAULT_ACCOUNT}:function:{reference}"


def lambda_function(function: str, *, registry: Registry | None = None) -> Callable[[F], F]:
    """Register the decorated ``fn(event, context)`` as the Lambda function `function`.

    `function` is a function ARN, a bare name, or a pattern with `*`.
    """

    def decorate(fn: F) -> F:
        (registry or default_registry).register_lambda(function, fn)
        return fn

    return decorate


@dataclass
class LambdaContext:
    """The `context` a Lambda handler receives (the attributes AWS's Python runtime gives)."""

    function_name: str
    invoked_function_arn: str
    aws_request_id: str
    activity: ActivityContext
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 128
    log_group_name: str = ""
    log_stream_name: str = ""
    _now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the Task's TimeoutSeconds (a large number without one)."""
        deadline = self.activity.deadline
        if deadline is None:
            return 900_000
        return max(0, int((deadline - self._now()).total_seconds() * 1000))


@dataclass(frozen=True)
class LambdaPayload:
    """A function's successful response: the raw payload bytes."""

    payload: bytes
    request_id: str


@dataclass(frozen=True)
class LambdaError:
    """A function error: AWS's Error name and its JSON Cause."""

    error: str
    cause: str
    request_id: str


# Folders of the machinery that calls a handler (this package, the standard
# library's event loop and threads, anyio): a Lambda runtime's stack trace
# starts at the handler, with none of its own frames.
_RUNTIME_FOLDERS = tuple(
    str(Path(folder)) + "/"
    for folder in (
        sysconfig.get_paths()["stdlib"],
        Path(anyio.__file__).parent,
        Path(__file__).parent,
    )
)


def handler_frames(failure: BaseException) -> list[str]:
    """The stack trace of a handler's exception as Lambda shows it: from the handler's frame on."""
    frames = traceback.extract_tb(failure.__traceback__)
    first = next(
        (i for i, frame in enumerate(frames) if not frame.filename.startswith(_RUNTIME_FOLDERS)),
        len(frames),
    )
    return traceback.format_list(frames[first:])


def function_error_cause(error_type: str, message: str, request_id: str, trace: list[str]) -> str:
    """AWS's Cause of a function error: the runtime's JSON error object, compact as AWS has it."""
    return json.dumps(
        {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": trace,
        },
        separators=(",", ":"),
    )


async def call_function(
    registration: Registration, event: Any, context: ActivityContext, *, function: str
) -> LambdaPayload | LambdaError:
    """Run the function once as Lambda would; never raises for the function's own errors.

    `function` is the name or ARN the caller invoked (the context's function
    name and ARN come from it). A return value is encoded as JSON (bytes and
    bytearray are taken as the raw payload); a value that cannot be encoded
    is a ``Runtime.MarshalError``.
    """
    request_id = str(uuid.uuid4())
    lambda_context = LambdaContext(
        function_name=lambda_name(function),
        invoked_function_arn=function_arn(function),
        aws_request_id=request_id,
        activity=context,
    )
    try:
        value = await call_handler(registration, event, lambda_context)
    except Exception as failure:  # the function's own error is the Task's failure
        # A StopIteration arrives carried (`HandlerStopIteration`): named as itself.
        raised = failure.stop if isinstance(failure, HandlerStopIteration) else failure
        error_type = type(raised).__name__
        trace = handler_frames(raised)
        return LambdaError(
            error_type,
            function_error_cause(error_type, str(raised), request_id, trace),
            request_id,
        )
    if isinstance(value, bytes | bytearray):
        return LambdaPayload(bytes(value), request_id)
    try:
        encoded = json.dumps(value, allow_nan=False).encode()
    except (TypeError, ValueError) as failure:
        message = f"Unable to marshal response: {failure}"
        return LambdaError(
            "Runtime.MarshalError",
            function_error_cause("Runtime.MarshalError", message, request_id, []),
            request_id,
        )
    return LambdaPayload(encoded, request_id)


def invoke_result(payload: Any, request_id: str, *, length: int, now: datetime) -> dict[str, Any]:
    """The result of ``arn:aws:states:::lambda:invoke`` as AWS returns it."""
    date = format_datetime(now.astimezone(UTC), usegmt=True)
    headers = {
        "Connection": "keep-alive",
        "Content-Length": str(length),
        "Content-Type": "application/json",
        "Date": date,
        "X-Amz-Executed-Version": "$LATEST",
        "x-amzn-Remapped-Content-Length": "0",
        "x-amzn-RequestId": request_id,
        "X-Amzn-Trace-Id": f"root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};sampled=0",
    }
    return {
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {name: [value] for name, value in headers.items()},
            "HttpHeaders": headers,
            "HttpStatusCode": 200,
        },
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": 200,
    }
