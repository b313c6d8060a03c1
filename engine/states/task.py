"""Task: run the work a Resource names, durably and at most once per recorded attempt.

Per attempt: TaskScheduled and TaskStarted are journaled and committed
before the handler runs (the effect leaves the process only after its
record exists); the outcome is journaled with TaskSucceeded, TaskFailed or
TaskTimedOut. On replay a recorded outcome is returned without running the
handler; an attempt scheduled but without an outcome (the process died
mid-call) runs again with the same idempotency key.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from engine import keys
from engine.states.common import (
    effective_input,
    finish_result,
    jsonpath_result,
    payload_template,
    task_input,
)
from engine.states.dynamic import dynamic_int
from engine.states.plans import Plans, TaskPlan, task_plan
from engine.states.recovery import with_recovery
from engine.tasks import invoke
from engine.walk import Frame, Transition, enter
from statemachine.errors import StatesError
from statemachine.model import TaskState
from statemachine.quotas import MAX_SECONDS

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "run_task"]

# AWS's default when a Task gives no TimeoutSeconds (the spec says 60).
DEFAULT_TIMEOUT_SECONDS = MAX_SECONDS

_PLANS: Plans[TaskState, TaskPlan] = Plans(task_plan)


async def run_task(frame: Frame, state: TaskState) -> Transition:
    enter(frame, input_payload=frame.input)
    plan = _PLANS.of(state)
    plain = not state.jsonata and state.assign is None  # its result's steps await nothing
    wait_for_token = state.resource.endswith(".waitForTaskToken")

    async def attempt(number: int) -> tuple[Any, dict[str, Any] | None]:
        frame.task_token = None
        if wait_for_token:
            frame.task_token = frame.record_once(
                # Drawn directly, not via frame.uuid(): a replay returns the
                # record without drawing, and must not shift later draws' keys.
                keys.task_token(keys.attempt(frame.key, number)),
                lambda: (str(uuid.uuid4()), ()),
            )
        if plan.whole_input:  # nothing to evaluate: the common Task
            effective, timeout, heartbeat = frame.input, None, None
        else:
            with frame.evaluating():
                # JSONPath's InputPath and Parameters await nothing: no coroutine for them.
                effective = (
                    await task_input(frame, state)
                    if state.jsonata
                    else payload_template(frame, state.parameters, effective_input(frame))
                )
                # Most Tasks give neither: no coroutine to await for an absent field.
                timeout = (
                    None
                    if state.timeout is None
                    else await dynamic_int(frame, state.timeout, frame.input, minimum=1)
                )
                heartbeat = (
                    None
                    if state.heartbeat is None
                    else await dynamic_int(frame, state.heartbeat, frame.input, minimum=1)
                )
        result = await invoke(
            frame,
            state,
            effective,
            number,
            timeout=float(timeout or DEFAULT_TIMEOUT_SECONDS),
            heartbeat=float(heartbeat) if heartbeat else math.inf,
        )
        if plan.whole_result:  # no step between the result and the output
            return result, None
        with frame.evaluating():
            if plain:
                return jsonpath_result(frame, result), None
            return await finish_result(frame, result)

    try:
        return await with_recovery(frame, state, attempt)
    except StatesError as failure:
        # Inside a Parallel branch or Map iteration AWS also records the failed
        # Task as aborted; run_children writes it where AWS has it.
        failure.failed_task = frame  # type: ignore[attr-defined]
        raise
