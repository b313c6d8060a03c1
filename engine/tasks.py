"""Calling a Task's handler: journaled scheduling, timeouts, heartbeats, outcomes.

`invoke` is the one place where work leaves the process. It journals
TaskScheduled/TaskStarted and commits them before the handler runs, then
journals the outcome. TimeoutSeconds counts from the recorded TaskStarted
time, so a rerun after a crash gets only what is left of it; a missed
heartbeat fails the attempt with States.Timeout (AWS reports heartbeat
timeouts under that name) flagged so the States.HeartbeatTimeout matcher
can tell.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime, timedelta
from typing import Any

import anyio
import msgspec

from activities.registry import ActivityContext, ActivityError, Registration
from engine.journal import MISSING
from engine.walk import FinalError, Frame
from statemachine.errors import States
from statemachine.model import TaskState

__all__ = ["MAX_PAYLOAD_BYTES", "TaskFailure", "invoke", "resource_parts"]

MAX_PAYLOAD_BYTES = 262_144


class TaskFailure(FinalError):
    """A task attempt's failure, as journaled."""

    def __init__(self, error: str, cause: str | None, *, heartbeat: bool = False) -> None:
        super().__init__(error, cause)
        self.heartbeat = heartbeat


def resource_parts(resource: str) -> tuple[str, str]:
    """(resourceType, resource) as AWS's Task events name them."""
    if resource.startswith("arn:aws:states:::"):
        rest = resource[len("arn:aws:states:::") :]
        service, _, api = rest.partition(":")
        return service, api or service
    if resource.startswith("arn:aws:lambda:"):
        return "lambda", resource
    return "stepwise", resource


async def invoke(
    frame: Frame,
    state: TaskState,
    effective: Any,
    attempt: int,
    *,
    timeout: float,
    heartbeat: float,
) -> Any:
    """The attempt's result (recorded or live); raises TaskFailure on failure."""
    walk = frame.walk
    key = f"{frame.key}:t{attempt}"
    outcome = walk.journal.replay(f"{key}:r", frame.thread)
    if outcome is MISSING:
        resource_type, resource = resource_parts(state.resource)
        started = walk.journal.replay(f"{key}:s", frame.thread)
        if started is MISSING:
            scheduled: dict[str, Any] = {
                "resourceType": resource_type,
                "resource": resource,
                "region": "local",
                "parameters": walk.payload(effective),
            }
            if timeout < math.inf:
                scheduled["timeoutInSeconds"] = int(timeout)
            if heartbeat < math.inf:
                scheduled["heartbeatInSeconds"] = int(heartbeat)
            started = walk.journal.record(
                f"{key}:s",
                walk.clock.now().isoformat(),
                thread=frame.thread,
                events=[
                    ("TaskScheduled", scheduled),
                    ("TaskStarted", {"resourceType": resource_type, "resource": resource}),
                ],
            )
        # The record of the start commits before the effect leaves the process.
        await walk.checkpoint()
        started_at = datetime.fromisoformat(str(started))
        outcome = await _run_handler(frame, state, effective, attempt, started_at, timeout, heartbeat)
        events: list[tuple[str, dict[str, Any]]]
        if "ok" in outcome:
            events = [
                (
                    "TaskSucceeded",
                    {
                        "resourceType": resource_type,
                        "resource": resource,
                        "output": walk.payload(outcome["ok"]),
                    },
                )
            ]
        else:
            kind = "TaskTimedOut" if outcome["error"] == States.TIMEOUT else "TaskFailed"
            details = {"resourceType": resource_type, "resource": resource, "error": outcome["error"]}
            if outcome.get("cause") is not None:
                details["cause"] = outcome["cause"]
            events = [(kind, details)]
        walk.journal.record(f"{key}:r", outcome, thread=frame.thread, events=events)
    if "ok" in outcome:
        return outcome["ok"]
    raise TaskFailure(outcome["error"], outcome.get("cause"), heartbeat=bool(outcome.get("hb")))


async def _run_handler(
    frame: Frame,
    state: TaskState,
    effective: Any,
    attempt: int,
    started_at: datetime,
    timeout: float,
    heartbeat: float,
) -> dict[str, Any]:
    walk = frame.walk
    registration = walk.registry.resolve(state.resource)
    if registration is None:
        return {
            "error": States.RUNTIME,
            "cause": f"No handler is registered for the resource '{state.resource}'.",
        }
    elapsed = (walk.clock.now() - started_at).total_seconds()
    remaining = max(0.0, timeout - elapsed)
    last_beat = [anyio.current_time()]

    def beat() -> None:
        last_beat[0] = anyio.current_time()

    deadline = started_at + timedelta(seconds=timeout) if timeout < math.inf else None
    context = ActivityContext(
        execution_id=walk.execution_id,
        state_name=state.name,
        attempt=attempt,
        idempotency_key=f"{walk.execution_id}/{frame.key}/{attempt}",
        resource=state.resource,
        deadline=deadline,
        task_token=frame.task_token,
        state_path=frame.key,
        _heartbeat=beat,
    )
    missed_heartbeat = False
    result: dict[str, Any] | None = None
    with anyio.move_on_after(remaining) as timeout_scope:
        async with anyio.create_task_group() as group:
            if heartbeat < math.inf:

                async def watch() -> None:
                    nonlocal missed_heartbeat
                    while True:
                        due = last_beat[0] + heartbeat
                        now = anyio.current_time()
                        if now >= due:
                            missed_heartbeat = True
                            group.cancel_scope.cancel()
                            return
                        await anyio.sleep(due - now)

                group.start_soon(watch)
            result = await _call(registration, effective, context)
            group.cancel_scope.cancel()
    if timeout_scope.cancelled_caught or missed_heartbeat or result is None:
        return {"error": States.TIMEOUT, "cause": None, "hb": missed_heartbeat}
    return result


async def _call(registration: Registration, effective: Any, context: ActivityContext) -> dict[str, Any]:
    args = (effective, context) if registration.wants_context else (effective,)
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
    try:
        encoded = msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError) as failure:
        return {"error": "States.Runtime", "cause": f"The task result is not JSON: {failure}"}
    if len(encoded) > MAX_PAYLOAD_BYTES:
        return {
            "error": States.DATA_LIMIT_EXCEEDED,
            "cause": (
                f"The state/task '{context.state_name}' returned a result with a size exceeding "
                "the maximum number of bytes service limit."
            ),
        }
    return {"ok": msgspec.json.decode(encoded)}
