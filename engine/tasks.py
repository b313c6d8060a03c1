"""Calling a Task's Resource: journaled scheduling, timeouts, heartbeats, callbacks, outcomes.

`invoke` is the one place where work leaves the process. It journals the
scheduling events and commits them before anything runs, then journals the
outcome; a recorded outcome is never produced again. What runs depends on
the Resource:

- a mocked state (mock mode) answers from its canned response;
- ``arn:aws:lambda:…:function:NAME`` runs the registered Lambda function
  (LambdaFunctionScheduled/Started/Succeeded/Failed/TimedOut events);
- ``arn:aws:states:::lambda:invoke`` runs the function named by FunctionName
  and wraps its payload in AWS's integration result;
- ``arn:aws:states:…:activity:NAME`` queues the task for activity workers and
  waits for their answer;
- the built-ins (HTTP, SQL, shell) and registered handlers run in process.

A ``.waitForTaskToken`` Resource runs its handler (which is given the
token), records TaskSubmitted, then waits durably: the token is in the
store and the execution suspends (``Suspend``) until `engine.callbacks`
journals an answer or the timeout / heartbeat deadline passes.
TimeoutSeconds counts from the recorded start, so a rerun after a crash
gets only what is left of it; a missed heartbeat fails the attempt with
States.Timeout flagged so the States.HeartbeatTimeout matcher can tell.
"""

from __future__ import annotations

import functools
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import anyio
import msgspec

from activities.http import HTTP_RESOURCE, http_invoke
from activities.lambda_ import LambdaError, call_function, invoke_result
from activities.registry import ActivityContext, ActivityError, Registration
from activities.shell import SHELL_RESOURCE, shell_run
from activities.sql import SQL_RESOURCE, parse_statements
from engine.callbacks import ensure_activity_task, run_sql_effect
from engine.journal import MISSING, Suspend
from engine.store import Checkpoint, CommitResult, LeaseLost, TokenRecord, TokenStatus
from engine.telemetry.spans import task_span_id, traceparent_for
from engine.walk import FinalError, Frame
from statemachine.errors import States
from statemachine.model import TaskState

__all__ = [
    "LAMBDA_INVOKE",
    "MAX_PAYLOAD_BYTES",
    "TaskFailure",
    "base_resource",
    "invoke",
    "is_activity_arn",
    "resource_parts",
]

MAX_PAYLOAD_BYTES = 262_144
# A Task without TimeoutSeconds gets AWS's default; it is no deadline worth waking for.
_NO_TIMEOUT = 99_999_999
_SUFFIXES = (".waitForTaskToken", ".sync:2", ".sync")
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"

Outcome = dict[str, Any]


class TaskFailure(FinalError):
    """A task attempt's failure, as journaled."""

    def __init__(self, error: str, cause: str | None, *, heartbeat: bool = False) -> None:
        super().__init__(error, cause)
        self.heartbeat = heartbeat


def base_resource(resource: str) -> str:
    """The Resource without its integration-pattern suffix."""
    for suffix in _SUFFIXES:
        if resource.endswith(suffix):
            return resource[: -len(suffix)]
    return resource


def resource_parts(resource: str) -> tuple[str, str]:
    """(resourceType, resource) as AWS's Task events name them."""
    if resource.startswith("arn:aws:states:::"):
        rest = resource[len("arn:aws:states:::") :]
        service, _, api = rest.partition(":")
        return service, api or service
    if resource.startswith("arn:aws:lambda:"):
        return "lambda", resource
    return "stepwise", resource


def is_activity_arn(resource: str) -> bool:
    """Whether `resource` is an external activity ARN (…:states:REGION:ACCOUNT:activity:NAME)."""
    parts = resource.split(":")
    return len(parts) == 7 and parts[:3] == ["arn", "aws", "states"] and parts[5] == "activity"


class _Events:
    """The event names of one family: Task*, LambdaFunction* or Activity*."""

    def __init__(self, family: str, resource_type: str, resource: str) -> None:
        self.family = family
        self.base = {"resourceType": resource_type, "resource": resource}

    def scheduled(self, walk_payload: str, timeout: float, heartbeat: float) -> list[Any]:
        limits: dict[str, Any] = {}
        if timeout < _NO_TIMEOUT:
            limits["timeoutInSeconds"] = int(timeout)
        if heartbeat < math.inf:
            limits["heartbeatInSeconds"] = int(heartbeat)
        if self.family == "lambda":
            details = {"resource": self.base["resource"], "input": walk_payload}
            details.update({k: v for k, v in limits.items() if k == "timeoutInSeconds"})
            return [("LambdaFunctionScheduled", details), ("LambdaFunctionStarted", {})]
        if self.family == "activity":
            return [
                (
                    "ActivityScheduled",
                    {"resource": self.base["resource"], "input": walk_payload, **limits},
                )
            ]
        details = {**self.base, "region": "local", "parameters": walk_payload, **limits}
        return [("TaskScheduled", details), ("TaskStarted", dict(self.base))]

    def outcome(self, outcome: Outcome, payload: Callable[[Any], str]) -> list[Any]:
        prefix = {"lambda": "LambdaFunction", "activity": "Activity"}.get(self.family, "Task")
        base = {} if self.family in ("lambda", "activity") else dict(self.base)
        if "ok" in outcome:
            return [(f"{prefix}Succeeded", {**base, "output": payload(outcome["ok"])})]
        kind = "TimedOut" if outcome["error"] == States.TIMEOUT else "Failed"
        details = {**base, "error": outcome["error"]}
        if outcome.get("cause") is not None:
            details["cause"] = outcome["cause"]
        return [(f"{prefix}{kind}", details)]


async def invoke(
    frame: Frame,
    state: TaskState,
    effective: Any,
    attempt: int,
    *,
    timeout: float,
    heartbeat: float,
) -> Any:
    """The attempt's result (recorded or live); raises TaskFailure on failure.

    May raise Suspend while a callback or activity task waits for its answer.
    """
    walk = frame.walk
    key = f"{frame.key}:t{attempt}"
    outcome = walk.journal.replay(f"{key}:r", frame.thread)
    if outcome is MISSING:
        call = _Call(frame, state, effective, attempt, key, timeout, heartbeat)
        outcome = await call.run()
        walk.journal.record(
            f"{key}:r",
            outcome,
            thread=frame.thread,
            events=call.events.outcome(outcome, walk.payload),
        )
    if "ok" in outcome:
        return outcome["ok"]
    raise TaskFailure(outcome["error"], outcome.get("cause"), heartbeat=bool(outcome.get("hb")))


class _Call:
    """One live attempt of one Task."""

    def __init__(
        self,
        frame: Frame,
        state: TaskState,
        effective: Any,
        attempt: int,
        key: str,
        timeout: float,
        heartbeat: float,
    ) -> None:
        self.frame = frame
        self.walk = frame.walk
        self.state = state
        self.effective = effective
        self.attempt = attempt
        self.key = key
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.resource = state.resource
        self.base = base_resource(state.resource)
        self.callback = state.resource.endswith(".waitForTaskToken")
        family = "task"
        if self.base.startswith("arn:aws:lambda:"):
            family = "lambda"
        elif is_activity_arn(self.base):
            family = "activity"
        self.resource_type, _ = resource_parts(self.base)
        # Task* events name the Resource as written (".waitForTaskToken" included).
        resource_type, resource = resource_parts(self.resource if family == "task" else self.base)
        self.events = _Events(family, resource_type, resource)
        self.started_at = datetime.min

    # -- the shape of an attempt --------------------------------------------------
    async def run(self) -> Outcome:
        walk, journal = self.walk, self.walk.journal
        started = journal.replay(f"{self.key}:s", self.frame.thread)
        if started is MISSING:
            started = journal.record(
                f"{self.key}:s",
                walk.clock.now().isoformat(),
                thread=self.frame.thread,
                events=self.events.scheduled(
                    walk.payload(self.effective), self.timeout, self.heartbeat
                ),
            )
        # The record of the start commits before the effect leaves the process.
        await walk.checkpoint()
        self.started_at = datetime.fromisoformat(str(started))
        mocked = self._mocked()
        if mocked is not None:
            return mocked
        if self.events.family == "activity":
            return await self._activity()
        if self.callback:
            return await self._callback()
        return await self._limited(self._dispatch)

    def _mocked(self) -> Outcome | None:
        registry = self.walk.registry
        if registry.mocks is None or registry.mock_test_case is None:
            return None
        journal = self.walk.journal
        index = 0
        while f"mock:{self.state.name}:{index}" in journal:
            index += 1
        answer = registry.mocks.response(
            self.walk.machine_name, registry.mock_test_case, self.state.name, index
        )
        if answer is None:
            return None
        journal.record(f"mock:{self.state.name}:{index}", self.key)
        if answer.failed:
            return {"error": answer.error, "cause": answer.cause}
        return {"ok": answer.value}

    def context(self, beat: Callable[[], None] | None = None) -> ActivityContext:
        deadline = None
        if self.timeout < _NO_TIMEOUT:
            deadline = self.started_at + timedelta(seconds=self.timeout)
        return ActivityContext(
            execution_id=self.walk.execution_id,
            state_name=self.state.name,
            attempt=self.attempt,
            idempotency_key=f"{self.walk.execution_id}/{self.frame.key}/{self.attempt}",
            resource=self.resource,
            deadline=deadline,
            task_token=self.frame.task_token,
            state_path=self.frame.key,
            traceparent=self._traceparent(),
            _heartbeat=beat,
        )

    def _traceparent(self) -> str | None:
        """W3C trace context naming this attempt's span, so a handler's spans nest under it."""
        trace_id = self.walk.services.trace_id
        last = self.walk.journal.event_id(f"{self.key}:s")
        if not trace_id or not last:
            return None
        # The :s record holds ...Scheduled (+ ...Started except for activities).
        scheduled = last if self.events.family == "activity" else last - 1
        return traceparent_for(trace_id, task_span_id(trace_id, scheduled))

    async def _limited(self, body: Callable[[ActivityContext], Awaitable[Outcome]]) -> Outcome:
        """Run `body` under TimeoutSeconds (from the recorded start) and HeartbeatSeconds."""
        elapsed = (self.walk.clock.now() - self.started_at).total_seconds()
        remaining = max(0.0, self.timeout - elapsed)
        # Monotonic time, not the loop's: sync handlers beat from their worker thread.
        last_beat = [time.monotonic()]

        def beat() -> None:
            last_beat[0] = time.monotonic()

        context = self.context(beat)
        missed_heartbeat = False
        result: Outcome | None = None
        with anyio.move_on_after(remaining) as timeout_scope:
            async with anyio.create_task_group() as group:
                if self.heartbeat < math.inf:
                    heartbeat = self.heartbeat

                    async def watch() -> None:
                        nonlocal missed_heartbeat
                        while True:
                            due = last_beat[0] + heartbeat
                            now = time.monotonic()
                            if now >= due:
                                missed_heartbeat = True
                                group.cancel_scope.cancel()
                                return
                            await anyio.sleep(due - now)

                    group.start_soon(watch)
                result = await body(context)
                group.cancel_scope.cancel()
        if timeout_scope.cancelled_caught or missed_heartbeat or result is None:
            return {"error": States.TIMEOUT, "cause": None, "hb": missed_heartbeat}
        return result

    # -- what runs -----------------------------------------------------------------
    async def _dispatch(self, context: ActivityContext) -> Outcome:
        registry = self.walk.registry
        if self.base.startswith("arn:aws:lambda:"):
            function = registry.resolve_lambda(self.base)
            if function is not None:
                answer = await call_function(function, self.effective, context, function=self.base)
                return self._lambda_outcome(answer)
        if self.base == LAMBDA_INVOKE:
            return await self._lambda_invoke(context)
        registration = registry.resolve(self.resource) or registry.resolve(self.base)
        if registration is not None:
            return await self._handler(registration, context)
        if self.base == HTTP_RESOURCE and "http" in registry.builtins:
            return await self._builtin(http_invoke, context)
        if self.base == SQL_RESOURCE and "sql" in registry.builtins:
            return await self._sql()
        if self.base == SHELL_RESOURCE and "shell" in registry.builtins:
            allowed = registry.shell_commands
            return await self._builtin(functools.partial(shell_run, allowed=allowed), context)
        return self._unresolved()

    def _unresolved(self) -> Outcome:
        what = self.resource
        if self.base in (HTTP_RESOURCE, SQL_RESOURCE, SHELL_RESOURCE):
            name = {HTTP_RESOURCE: "http", SQL_RESOURCE: "sql", SHELL_RESOURCE: "shell"}[self.base]
            return {
                "error": States.RUNTIME,
                "cause": f"The built-in activity '{name}' for the resource '{what}' is not "
                "enabled by the operator.",
            }
        return {
            "error": States.RUNTIME,
            "cause": f"No handler is registered for the resource '{what}'.",
        }

    def _limit_name(self) -> str:
        return self.state.name if self.resource_type == "stepwise" else self.resource_type

    def _too_large(self) -> Outcome:
        return {
            "error": States.DATA_LIMIT_EXCEEDED,
            "cause": (
                f"The state/task '{self._limit_name()}' returned a result with a size exceeding "
                "the maximum number of bytes service limit."
            ),
        }

    def _encode(self, value: Any) -> Outcome:
        try:
            encoded = msgspec.json.encode(value)
        except (TypeError, msgspec.EncodeError) as failure:
            return {"error": States.RUNTIME, "cause": f"The task result is not JSON: {failure}"}
        if len(encoded) > MAX_PAYLOAD_BYTES:
            return self._too_large()
        return {"ok": msgspec.json.decode(encoded)}

    async def _handler(self, registration: Registration, context: ActivityContext) -> Outcome:
        args = (self.effective, context) if registration.wants_context else (self.effective,)
        try:
            if registration.is_async:
                value = await registration.handler(*args)
            else:
                value = await anyio.to_thread.run_sync(
                    functools.partial(registration.handler, *args), abandon_on_cancel=True
                )
        except ActivityError as failure:
            return {"error": failure.error, "cause": failure.cause}
        except Exception as failure:  # a handler's own exception is the Task's failure
            return {"error": type(failure).__name__, "cause": str(failure)}
        return self._encode(value)

    async def _builtin(
        self, fn: Callable[[Any, ActivityContext], Any], context: ActivityContext
    ) -> Outcome:
        try:
            value = await anyio.to_thread.run_sync(
                functools.partial(fn, self.effective, context), abandon_on_cancel=True
            )
        except ActivityError as failure:
            return {"error": failure.error, "cause": failure.cause}
        return self._encode(value)

    def _payload(self, raw: bytes) -> Any:
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            # Lambda hands back a payload that is not JSON as the text it is.
            return raw.decode("utf-8", errors="replace")

    def _lambda_outcome(self, answer: Any) -> Outcome:
        if isinstance(answer, LambdaError):
            return {"error": answer.error, "cause": answer.cause}
        if len(answer.payload) > MAX_PAYLOAD_BYTES:
            return self._too_large()
        return {"ok": self._payload(answer.payload)}

    async def _lambda_invoke(self, context: ActivityContext) -> Outcome:
        registry = self.walk.registry
        parameters = self.effective if isinstance(self.effective, dict) else {}
        function_name = parameters.get("FunctionName")
        if not isinstance(function_name, str):
            return {
                "error": States.RUNTIME,
                "cause": "The lambda:invoke Task needs a FunctionName string in its Parameters.",
            }
        function = registry.resolve_lambda(function_name)
        if function is None:
            return {
                "error": "Lambda.ResourceNotFoundException",
                "cause": f"Function not found: {function_name} (no Lambda function of that "
                "name is registered).",
            }
        event = parameters.get("Payload")
        answer = await call_function(function, event, context, function=function_name)
        if isinstance(answer, LambdaError):
            return {"error": answer.error, "cause": answer.cause}
        if len(answer.payload) > MAX_PAYLOAD_BYTES:
            return self._too_large()
        result = invoke_result(
            self._payload(answer.payload),
            answer.request_id,
            length=len(answer.payload),
            now=self.walk.clock.now(),
        )
        return self._encode(result)

    async def _sql(self) -> Outcome:
        try:
            statements = parse_statements(self.effective)
        except ActivityError as failure:
            return {"error": failure.error, "cause": failure.cause}
        runtime = self.walk.services
        outcome: Outcome = await runtime.run_db(
            run_sql_effect,
            runtime.store,
            execution_id=self.walk.execution_id,
            key=self.key,
            worker_id=runtime.worker_id,
            statements=statements,
            now=self.walk.clock.now(),
        )
        return outcome

    # -- waiting for an answer -------------------------------------------------------
    async def _register_token(self, token: str) -> None:
        runtime = self.walk.services
        record = TokenRecord(
            token=token,
            execution_id=self.walk.execution_id,
            key=f"{self.key}:cb",
            state_name=self.state.name,
            heartbeat_at=self.started_at,
            created_at=self.walk.clock.now(),
        )
        result = await runtime.committer.commit(
            Checkpoint(execution_id=self.walk.execution_id, tokens=[record])
        )
        if result != CommitResult.OK:
            raise LeaseLost(f"execution {self.walk.execution_id}: {result} registering a token")

    async def _callback(self) -> Outcome:
        journal = self.walk.journal
        token = self.frame.task_token
        assert token is not None
        if journal.replay(f"{self.key}:sub", self.frame.thread) is MISSING:
            await self._register_token(token)
            sent = await self._limited(self._dispatch)
            if "ok" not in sent:
                await self._close(token)
                return sent
            journal.record(
                f"{self.key}:sub",
                None,
                thread=self.frame.thread,
                events=[
                    ("TaskSubmitted", {**self.events.base, "output": self.walk.payload(sent["ok"])})
                ],
            )
        return await self._wait(token)

    async def _activity(self) -> Outcome:
        journal = self.walk.journal
        # Drawn here, not with frame.uuid(), so the frame's own random draws keep their keys.
        token = journal.record_once(f"{self.key}:token", lambda: (str(uuid.uuid4()), ()))
        if journal.replay(f"{self.key}:reg") is MISSING:
            await self._register_token(str(token))
            runtime = self.walk.services
            await runtime.run_db(
                ensure_activity_task,
                runtime.store,
                token=str(token),
                activity=self.base,
                execution_id=self.walk.execution_id,
                key=self.key,
                input=self.walk.payload(self.effective),
            )
            journal.record(f"{self.key}:reg", True)
        polled = journal.replay(f"{self.key}:polled")
        if polled is not MISSING and journal.replay(f"{self.key}:as", self.frame.thread) is MISSING:
            journal.record(
                f"{self.key}:as",
                None,
                thread=self.frame.thread,
                events=[("ActivityStarted", {"workerName": polled.get("worker", "")})],
            )
        return await self._wait(str(token))

    async def _close(self, token: str) -> bool:
        """Close the token as timed out; False when an answer got there first."""
        runtime = self.walk.services
        record = TokenRecord(
            token=token,
            execution_id=self.walk.execution_id,
            key=f"{self.key}:cb",
            state_name=self.state.name,
            status=TokenStatus.TIMED_OUT,
        )
        result = await runtime.committer.commit(
            Checkpoint(execution_id=self.walk.execution_id, tokens=[record])
        )
        if result != CommitResult.OK:
            raise LeaseLost(f"execution {self.walk.execution_id}: {result} closing a token")
        current = await runtime.run_db(runtime.store.get_token, token)
        return bool(current.status == TokenStatus.TIMED_OUT)

    async def _wait(self, token: str) -> Outcome:
        journal = self.walk.journal
        answer = journal.replay(f"{self.key}:cb")
        if answer is not MISSING:
            if "ok" in answer:
                return self._encode(answer["ok"])
            return {"error": answer.get("error") or "", "cause": answer.get("cause")}
        now = self.walk.clock.now()
        dues: list[datetime] = []
        if self.timeout < _NO_TIMEOUT:
            deadline = self.started_at + timedelta(seconds=self.timeout)
            if now >= deadline:
                return await self._timed_out(token, heartbeat=False)
            dues.append(deadline)
        if self.heartbeat < math.inf:
            runtime = self.walk.services
            record = await runtime.run_db(runtime.store.get_token, token)
            last = record.heartbeat_at or self.started_at
            beat_due = last + timedelta(seconds=self.heartbeat)
            if now >= beat_due:
                return await self._timed_out(token, heartbeat=True)
            dues.append(beat_due)
        raise Suspend(min(dues) if dues else None)

    async def _timed_out(self, token: str, *, heartbeat: bool) -> Outcome:
        if not await self._close(token):
            # An answer was journaled meanwhile: wake again at once and read it.
            raise Suspend(self.walk.clock.now())
        return {"error": States.TIMEOUT, "cause": None, "hb": heartbeat}
