"""Wait: continue after a number of seconds or at a timestamp, durably.

The due time is computed once and journaled; a short wait sleeps in the
worker, a long one suspends the execution (no worker held) and a timer
wakes it on any worker. A past timestamp continues at once; a delay of
2^31 seconds or more is rejected as AWS does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from engine import keys
from engine.states.common import effective_input, evaluate_assign, exit_state, jsonata, output_path
from engine.states.dynamic import dynamic_value
from engine.walk import Frame, Transition, enter
from statemachine.errors import States, StatesError
from statemachine.jsonata import QueryEvaluationError
from statemachine.model import Dynamic, WaitState
from statemachine.paths import MISSING, find, to_json
from statemachine.timestamps import parse_timestamp

__all__ = ["run_wait"]

MAX_DELAY_SECONDS = 2**31
TOO_LONG = "Wait state delay is too long."


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else to_json(value)


async def _value(frame: Frame, dynamic: Dynamic, effective: Any, field: str) -> Any:
    """The field's value; a `…Path` that selects nothing fails with AWS's wording."""
    if dynamic.path is None:
        return await dynamic_value(frame, dynamic, effective)
    value = find(dynamic.path, effective, frame.path_context(), frame.variables.visible())
    if value is MISSING:
        raise StatesError(
            States.RUNTIME,
            f"The {field} parameter does not reference an input value: {dynamic.path.text}",
        )
    return value


async def _due(frame: Frame, state: WaitState, effective: Any) -> datetime:
    entered = frame.entered_time or frame.walk.clock.now()
    if state.seconds is not None:
        dynamic = state.seconds
        value = await _value(frame, dynamic, effective, "SecondsPath")
        if isinstance(value, float) and value.is_integer() and dynamic.expression is not None:
            value = int(value)
        where = dynamic.path.text if dynamic.path else ""
        if dynamic.expression is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise StatesError(
                    States.QUERY_EVALUATION_ERROR,
                    "The JSONata expression specified for the field 'Seconds' returned an "
                    "unexpected result type. Expected 'integer'",
                )
        elif isinstance(value, bool) or not isinstance(value, int):
            raise StatesError(
                States.RUNTIME,
                f"The SecondsPath parameter cannot be parsed as a long value: {where} == "
                f"{_shown(value)}",
            )
        elif value < 0:
            raise StatesError(
                States.RUNTIME,
                f"The SecondsPath parameter references a negative value: {where} == {value}",
            )
        if value >= MAX_DELAY_SECONDS:
            raise StatesError(States.RUNTIME, TOO_LONG)
        return entered + timedelta(seconds=value)
    assert state.timestamp is not None
    dynamic = state.timestamp
    value = await _value(frame, dynamic, effective, "TimestampPath")
    when = parse_timestamp(value) if isinstance(value, str) else None
    if when is None:
        if dynamic.expression is not None:
            raise QueryEvaluationError(
                "The Timestamp field cannot be parsed as an ISO-8601 extended offset "
                f"date-time format string: {_shown(value)}",
                location="Timestamp",
            )
        where = dynamic.path.text if dynamic.path else ""
        raise StatesError(
            States.RUNTIME,
            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset "
            f"date-time format string: {where} == {_shown(value)}",
        )
    if (when - entered).total_seconds() >= MAX_DELAY_SECONDS:
        raise StatesError(States.RUNTIME, TOO_LONG)
    return when


async def run_wait(frame: Frame, state: WaitState) -> Transition:
    enter(frame, input_payload=frame.input)
    with frame.evaluating():
        effective = effective_input(frame)

        async def due() -> tuple[str, tuple[()]]:
            return (await _due(frame, state, effective)).isoformat(), ()

        recorded = await frame.record_once_async(keys.wait_due(frame.key), due)
    await frame.walk.sleep_until(datetime.fromisoformat(str(recorded)))
    with frame.evaluating():
        assigned = await evaluate_assign(frame, state.assign, dollar=effective)
        if state.jsonata:
            output = (
                frame.input
                if state.output is None
                else await jsonata(frame, state.output, "Output")
            )
        else:
            output = output_path(frame, effective)
    return exit_state(frame, Transition(output, None if state.end else state.next, assigned))
