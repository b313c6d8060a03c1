"""Fail: stop the execution (or fail the enclosing branch/iteration) with an Error and Cause.

A Fail state has no Exited event and no output processing. JSONPath
ErrorPath/CausePath take a path or an intrinsic; JSONata Error/Cause
expressions must yield strings.
"""

from __future__ import annotations

from typing import Any

from engine.states.common import jsonata_typed
from engine.walk import FinalError, Frame, Transition, enter
from statemachine.errors import States, StatesError
from statemachine.model import Dynamic, FailState
from statemachine.paths import MISSING, find

__all__ = ["run_fail"]


async def _value(frame: Frame, dynamic: Dynamic | None) -> str | None:
    if dynamic is None:
        return None
    value: Any
    context = frame.path_context()
    variables = frame.variables.visible()
    if dynamic.expression is not None:
        return str(await jsonata_typed(frame, dynamic.expression, dynamic.field, "string"))
    if dynamic.intrinsic is not None:  # loaded with its definition (statemachine.parts)
        from statemachine.intrinsics import evaluate_intrinsic

        value = evaluate_intrinsic(dynamic.intrinsic, frame.input, context, variables, frame)
    elif dynamic.path is not None:
        value = find(dynamic.path, frame.input, context, variables)
        if value is MISSING:
            document = context if dynamic.path.root == "context" else frame.input
            raise StatesError(
                States.RUNTIME,
                f"The JSONPath '{dynamic.path.text}' specified for the field '{dynamic.field}' "
                f"could not be found in the input '{frame.walk.payload(document)}'",
            )
    else:
        return None if dynamic.literal is None else str(dynamic.literal)
    if not isinstance(value, str):
        raise StatesError(
            States.RUNTIME,
            f"The {dynamic.field} field refers to value {frame.walk.payload(value)} "
            "which is not a valid string.",
        )
    return value


async def run_fail(frame: Frame, state: FailState) -> Transition:
    enter(frame, input_payload=frame.input)
    with frame.evaluating():
        error = await _value(frame, state.error)
        cause = await _value(frame, state.cause)
    raise FailStateError(error, cause)


class FailStateError(FinalError):
    """Raised by a Fail state; `error` may be absent (None) as on AWS."""

    def __init__(self, error: str | None, cause: str | None) -> None:
        super().__init__(error or "", cause)
        self.error_absent = error is None
