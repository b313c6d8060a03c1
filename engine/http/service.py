"""What every operation of the HTTP API works with: the engine, the ARN format and the store ids.

An operation is ``async (service, members) -> response document``. The
`Service` carries the running `Engine` (its lifecycle is the only way an
operation starts, stops, describes or lists an execution), the `Arns` the
answers are written in, and the few settings the operations read. It also
owns the translation between the ARNs a caller sends — any region and
account, the engine's own ``local`` form included — and the ids the store
keeps, so every operation reads a request's ARN the same way.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

from engine.api import Engine
from engine.arns import Arns, ParsedArn
from engine.http.protocol import AwsError, Members
from engine.runner import execution_arn
from engine.store import ExecutionRecord

__all__ = ["Operation", "Service", "decode_token", "encode_token", "unsupported"]


@dataclass
class Service:
    """The running server's engine, ARN format and settings, shared by every operation."""

    engine: Engine
    arns: Arns = field(default_factory=Arns)
    # GetActivityTask answers an empty poll after this long: under botocore's
    # 60 s read timeout, as AWS's own answers are.
    activity_poll_seconds: float = 50.0
    # Long polls in flight at once; each holds a thread while it waits, and
    # the engine's own waits need threads too. More get ActivityWorkerLimitExceeded.
    activity_pollers: anyio.CapacityLimiter = field(
        default_factory=lambda: anyio.CapacityLimiter(16)
    )
    # StartSyncExecution waits at most this long (EXPRESS runs at most 5 minutes on AWS).
    sync_timeout_seconds: float = 300.0

    def run_db(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Run a blocking store call off the event loop, as the engine's lifecycle does."""
        return self.engine.lifecycle.run_db(fn, *args, **kwargs)

    # -- ARNs ------------------------------------------------------------------
    def execution_id(self, arn: ParsedArn) -> str:
        """The store's id of the execution an execution ARN names (a Map Run's child too)."""
        if arn.qualifier is None:
            raise AwsError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn.resource}'")
        return execution_arn(arn.resource, arn.qualifier)

    def execution_arn(self, record: ExecutionRecord) -> str:
        return self.arns.execution(record.machine, record.name)

    def machine_arn(self, name: str, qualifier: int | str | None = None) -> str:
        return self.arns.state_machine(name, qualifier)

    @staticmethod
    def machine_reference(arn: ParsedArn, *, labelled: bool = False) -> str:
        """What the lifecycle resolves: ``NAME``, or ``NAME:VERSION`` / ``NAME:ALIAS``.

        A Distributed Map's labelled ARN (``NAME/label``) is refused unless
        `labelled`, with AWS's reason.
        """
        if "/" in arn.resource and not labelled:
            raise AwsError(
                "ValidationException",
                "This API does not support labelled ARNs.",
                reason="API_DOES_NOT_SUPPORT_LABELED_ARNS",
            )
        return arn.resource if arn.qualifier is None else f"{arn.resource}:{arn.qualifier}"


Operation = Callable[[Service, Members], Awaitable[dict[str, Any]]]


def unsupported(name: str, why: str) -> Operation:
    """An operation Stepwise does not serve yet: AWS's answer for an unsupported call."""

    async def operation(service: Service, members: Members) -> dict[str, Any]:
        raise AwsError("UnknownOperationException", f"Stepwise does not support {name} yet: {why}")

    operation.__name__ = name
    return operation


class _Token(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A page token of the listings this API pages itself: what it lists, and where it is."""

    scope: str
    position: int


def encode_token(scope: str, position: int) -> str:
    """An opaque page token for `scope` (what the listing lists) at `position`."""
    return base64.urlsafe_b64encode(msgspec.json.encode(_Token(scope, position))).decode()


def decode_token(text: str | None, scope: str) -> int:
    """The position a page token names (0 for none); InvalidToken when it is not ours."""
    if text is None:
        return 0
    try:
        token = msgspec.json.decode(base64.urlsafe_b64decode(text.encode()), type=_Token)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise AwsError("InvalidToken", f"Invalid Token: '{text[:40]}'") from None
    if token.scope != scope or token.position < 0:
        raise AwsError("InvalidToken", "Invalid Token: the nextToken belongs to another listing")
    return token.position
