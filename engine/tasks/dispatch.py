"""Running a Task's work in this process, by what its Resource resolves to.

`engine.resources.resolve_resource` decides (the one dispatch rule); this
module runs the result: a Lambda function (its payload checked against
256 KiB, text kept as text), the ``lambda:invoke`` integration (AWS's
result envelope around the payload), a registered handler (called through
`activities.registry.call_handler`), or an enabled built-in — HTTP and
shell in a worker thread, SQL inside a store transaction under the
execution's lease. Every path returns an `Outcome`; a handler's own
exception is the Task's failure, never the worker's.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from activities.handler_threads import run_in_thread
from activities.registry import ActivityContext, ActivityError, call_handler
from engine.callbacks import run_sql_effect
from engine.resources import resolve_resource
from engine.tasks.call import Call
from engine.tasks.outcome import (
    Failed,
    Outcome,
    Succeeded,
    encode_result,
    from_record,
    too_large,
)
from statemachine.errors import States
from statemachine.quotas import MAX_PAYLOAD_BYTES

if TYPE_CHECKING:
    from activities.lambda_ import LambdaError, LambdaPayload

__all__ = ["run_in_process"]


def handler_input(value: Any) -> Any:
    """The handler's own copy of its input: what it changes in place stays its own.

    The walk shares payloads rather than copying them (a Pass's Result is the
    definition's object, a Map's items are its input's), so a handler that
    changed its input in place would change the definition for later
    executions, or what the Map records, while a resumed run (its state
    rebuilt from the journal) would not see it. A JSON value's copy; a
    string, number, boolean or null is immutable and passed as it is.
    """
    if isinstance(value, dict | list):
        try:
            return _decode(_encode(value))
        except (msgspec.EncodeError, UnicodeEncodeError):  # not JSON's text (a lone surrogate)
            return copy.deepcopy(value)
    return value


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


async def run_in_process(call: Call, context: Callable[[], ActivityContext]) -> Outcome:
    """Run the attempt's work here and return its outcome.

    `context` builds what the handler is given; it is built only for work
    that takes it (a registered handler of one argument never sees it).
    """
    registry = call.walk.registry
    resolution = resolve_resource(call.resource, registry)
    registration = resolution.registration
    if resolution.kind == "handler":  # the commonest, run here: no coroutine of its own
        assert registration is not None
        try:
            value = await call_handler(
                registration,
                handler_input(call.effective),
                context() if registration.wants_context else None,
            )
        except ActivityError as failure:
            outcome: Outcome = Failed(failure.error, failure.cause)
        except Exception as failure:  # a handler's own exception is the Task's failure
            outcome = Failed(type(failure).__name__, str(failure))
        else:
            outcome = encode_result(value, call.limit_name)
        if registration.inline:
            # On the event loop no timer could stop it: a run past TimeoutSeconds or
            # HeartbeatSeconds times out, as it would have in a thread.
            return call.overran() or outcome
        return outcome
    if resolution.kind == "lambda":
        from activities.lambda_ import call_function

        assert registration is not None
        answer = await call_function(registration, call.effective, context(), function=call.base)
        return _lambda_outcome(call, answer)
    if resolution.kind == "lambda_invoke":
        return await _lambda_invoke(call, context())
    if resolution.builtin == "http":
        from activities.http import http_invoke

        http = functools.partial(http_invoke, policy=registry.http_policy)
        return await _builtin(call, http, context())
    if resolution.builtin == "sql":
        return await _sql(call)
    if resolution.builtin == "shell":
        from activities.shell import shell_run

        shell = functools.partial(shell_run, allowed=registry.shell_commands)
        return await _builtin(call, shell, context())
    return Failed(States.RUNTIME, resolution.cause)


async def _builtin(
    call: Call, fn: Callable[[Any, ActivityContext], Any], context: ActivityContext
) -> Outcome:
    try:
        value = await run_in_thread(fn, call.effective, context)
    except ActivityError as failure:
        return Failed(failure.error, failure.cause)
    return encode_result(value, call.limit_name)


def _payload(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        # Lambda hands back a payload that is not JSON as the text it is.
        return raw.decode("utf-8", errors="replace")


def _lambda_outcome(call: Call, answer: LambdaPayload | LambdaError) -> Outcome:
    from activities.lambda_ import LambdaError

    if isinstance(answer, LambdaError):
        return Failed(answer.error, answer.cause)
    if len(answer.payload) > MAX_PAYLOAD_BYTES:
        return too_large(call.limit_name)
    return Succeeded(_payload(answer.payload))


def _invoke_event(payload: Any) -> Any:
    """The event a lambda:invoke Payload hands the function, as AWS sends it.

    No Payload (or null) is an empty invocation, which Lambda's runtimes read
    as ``{}``; a string is sent as the request body itself, so one holding
    JSON text arrives parsed; anything else is sent as its JSON.
    """
    if payload is None:
        return {}
    if isinstance(payload, str):
        try:
            return msgspec.json.decode(payload)
        except msgspec.DecodeError:
            return payload
    return payload


async def _lambda_invoke(call: Call, context: ActivityContext) -> Outcome:
    from activities.lambda_ import LambdaError, call_function, invoke_result

    parameters = call.effective if isinstance(call.effective, dict) else {}
    function_name = parameters.get("FunctionName")
    if not isinstance(function_name, str):
        return Failed(
            States.RUNTIME,
            "The lambda:invoke Task needs a FunctionName string in its Parameters.",
        )
    function = call.walk.registry.resolve_lambda(function_name)
    if function is None:
        return Failed(
            "Lambda.ResourceNotFoundException",
            f"Function not found: {function_name} (no Lambda function of that name is registered).",
        )
    answer = await call_function(
        function, _invoke_event(parameters.get("Payload")), context, function=function_name
    )
    if isinstance(answer, LambdaError):
        return Failed(answer.error, answer.cause)
    if len(answer.payload) > MAX_PAYLOAD_BYTES:
        return too_large(call.limit_name)
    result = invoke_result(
        _payload(answer.payload),
        answer.request_id,
        length=len(answer.payload),
        now=call.walk.clock.now(),
    )
    return encode_result(result, call.limit_name)


async def _sql(call: Call) -> Outcome:
    from activities.sql import parse_statements

    try:
        statements = parse_statements(call.effective)
    except ActivityError as failure:
        return Failed(failure.error, failure.cause)
    services = call.walk.services
    record: dict[str, Any] = await services.run_db(
        run_sql_effect,
        services.store,
        execution_id=call.walk.execution_id,
        key=call.key,
        worker_id=services.worker_id,
        statements=statements,
        now=call.walk.clock.now(),
        role=call.walk.registry.sql_role,
    )
    return from_record(record)
