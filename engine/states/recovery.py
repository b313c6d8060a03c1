"""Retry and Catch around one state visit (Task, Parallel, Map).

Each attempt runs the state's whole pipeline. On an error the first
retrier whose ErrorEquals matches decides: retry after a durable timer
(backoff and jitter, the jitter's random draw journaled) or, when it is
exhausted, hand the error to Catch; AWS never falls through to a later
retrier. States.Runtime is neither retried nor caught. A catcher's output
is the Error Output placed by its ResultPath (JSONPath) or its Output
(JSONata), and its Assign replaces the state's.

Parallel and Map record `<Type>StateFailed` once, when the state itself
fails — the error is caught or ends the execution — never before a retry,
and not for States.Runtime or the terminal limits, which end the execution
at once: the events AWS records for the same failures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine import keys
from engine.states.common import evaluate_assign, exit_state, jsonata
from engine.walk import FinalError, Frame, Transition
from statemachine.errors import States, StatesError
from statemachine.model import MapState, ParallelState, TaskState
from statemachine.paths import apply_result_path
from statemachine.retry import decide_retry, find_catcher, retry_delay

__all__ = ["with_recovery"]

Attempt = Callable[[int], Awaitable[tuple[Any, dict[str, Any] | None]]]


async def with_recovery(
    frame: Frame, state: TaskState | ParallelState | MapState, attempt: Attempt
) -> Transition:
    """Run `attempt(n)` until it succeeds, is caught, or fails the state."""
    counts = [0] * len(state.retry)
    number = 0
    while True:
        frame.retry_count = number
        try:
            output, assigned = await attempt(number)
        except StatesError as raised:
            error = frame.prefix(raised)
            heartbeat = bool(getattr(raised, "heartbeat", False))
            if error.error == States.RUNTIME or error.uncatchable:
                raise error from None
            decision = decide_retry(state.retry, error.error, counts, heartbeat=heartbeat)
            if decision is None:
                _record_state_failed(frame, state, number)
            if decision is not None:
                retrier = state.retry[decision.retrier_index]
                counts[decision.retrier_index] = decision.retry_number
                draw = frame.random() if retrier.jitter == "FULL" else 0.0
                delay = retry_delay(retrier, decision.retry_number, draw)
                await frame.walk.timer(frame, keys.retry_timer(frame.key, number), delay)
                number += 1
                continue
            index = find_catcher(state.catch, error.error, heartbeat=heartbeat)
            if index is None:
                raise error from None
            return await _caught(frame, state, index, error)
        return exit_state(frame, Transition(output, None if state.end else state.next, assigned))


def _record_state_failed(
    frame: Frame, state: TaskState | ParallelState | MapState, number: int
) -> None:
    if isinstance(state, MapState):
        key, event = keys.map_failed(frame.key, number), "MapStateFailed"
    elif isinstance(state, ParallelState):
        key, event = keys.parallel_failed(frame.key, number), "ParallelStateFailed"
    else:
        return
    frame.record_once(key, lambda: (None, [(event, {})]), thread=frame.thread)


async def _caught(
    frame: Frame, state: TaskState | ParallelState | MapState, index: int, error: FinalError
) -> Transition:
    catcher = state.catch[index]
    plan = state.catch_plans[index]
    error_output = {"Error": error.error, "Cause": error.cause if error.cause is not None else ""}
    with frame.evaluating():
        if state.jsonata:
            assigned = await evaluate_assign(
                frame, plan.assign, dollar=error_output, errorOutput=error_output
            )
            output = (
                error_output
                if plan.output is None
                else await jsonata(frame, plan.output, "Output", errorOutput=error_output)
            )
        else:
            assigned = await evaluate_assign(frame, plan.assign, dollar=error_output)
            if plan.result_path_null:
                output = apply_result_path(frame.input, None, error_output)
            elif plan.result_path is None:
                output = error_output
            else:
                output = apply_result_path(frame.input, plan.result_path, error_output)
    return exit_state(frame, Transition(output, catcher.next, assigned))
