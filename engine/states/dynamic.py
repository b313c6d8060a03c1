"""Resolve `Dynamic` fields: a literal, a JSONPath `…Path`, an intrinsic, or a JSONata expression.

AWS's messages name the field and the offending value; JSONPath problems are
States.Runtime, JSONata ones States.QueryEvaluationError.
"""

from __future__ import annotations

from typing import Any

from engine.states.common import jsonata
from engine.walk import Frame
from statemachine.errors import States, StatesError
from statemachine.jsonata import json_type
from statemachine.model import Dynamic
from statemachine.paths import resolve

__all__ = ["dynamic_int", "dynamic_number", "dynamic_value"]


async def dynamic_value(frame: Frame, dynamic: Dynamic, data: Any) -> Any:
    """The field's value, before any type check."""
    if dynamic.expression is not None:
        return await jsonata(frame, dynamic.expression, dynamic.field)
    if dynamic.intrinsic is not None:  # loaded with its definition (statemachine.parts)
        from statemachine.intrinsics import evaluate_intrinsic

        return evaluate_intrinsic(
            dynamic.intrinsic, data, frame.path_context(), frame.variables.visible(), frame
        )
    if dynamic.path is not None:
        return resolve(dynamic.path, data, frame.path_context(), frame.variables.visible())
    return dynamic.literal


def _numeric_string(dynamic: Dynamic, value: Any, convert: type[int] | type[float]) -> Any:
    """A `…Path` value that is a number written as a string, read as AWS reads it."""
    if dynamic.path is not None and isinstance(value, str):
        try:
            return convert(value)
        except ValueError:
            return value
    return value


async def dynamic_int(
    frame: Frame,
    dynamic: Dynamic | None,
    data: Any,
    *,
    minimum: int = 0,
    numeric_strings: bool = False,
    below_minimum: str | None = None,
) -> int | None:
    """An integer field (MaxConcurrency, TimeoutSeconds …); None when absent.

    `numeric_strings`: a `…Path` may select a string such as "3", read as 3
    (AWS does for the Map's MaxConcurrencyPath and ToleratedFailureCountPath).
    `below_minimum`: AWS's message for a value under `minimum`, with
    ``{value}`` standing for the value.
    """
    if dynamic is None:
        return None
    value = await dynamic_value(frame, dynamic, data)
    if numeric_strings:
        value = _numeric_string(dynamic, value, int)
    integral = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and value.is_integer():
        value, integral = int(value), True
    if dynamic.expression is not None and (not integral or value < minimum):
        raise StatesError(
            States.QUERY_EVALUATION_ERROR,
            f"The JSONata expression specified for the field '{dynamic.field}' returned an "
            f"unexpected result type. Expected 'integer', but was '{json_type(value)}'",
        )
    if not integral:
        shown = value if isinstance(value, str) else frame.walk.payload(value)
        raise StatesError(
            States.RUNTIME,
            f'The {dynamic.field} field refers to value "{shown}" '
            f"which is not a valid integer: {dynamic.path.text if dynamic.path else value}",
        )
    if value < minimum:
        raise StatesError(
            States.RUNTIME,
            below_minimum.format(value=value)
            if below_minimum is not None
            else f"The {dynamic.field} field refers to value {value} which is below {minimum}.",
        )
    return int(value)


async def dynamic_number(
    frame: Frame, dynamic: Dynamic | None, data: Any, *, numeric_strings: bool = False
) -> float | None:
    """A float field (ToleratedFailurePercentage); None when absent.

    `numeric_strings`: a `…Path` may select an integer written as a string ("10").
    """
    if dynamic is None:
        return None
    value = await dynamic_value(frame, dynamic, data)
    if numeric_strings:
        value = _numeric_string(dynamic, value, int)
    if isinstance(value, bool) or not isinstance(value, int | float):
        if dynamic.expression is not None:
            raise StatesError(
                States.QUERY_EVALUATION_ERROR,
                f"The JSONata expression specified for the field '{dynamic.field}' returned an "
                f"unexpected result type. Expected 'number', but was '{json_type(value)}'",
            )
        shown = value if isinstance(value, str) else frame.walk.payload(value)
        where = dynamic.path.text if dynamic.path else ""
        raise StatesError(
            States.RUNTIME,
            f'The {dynamic.field} field refers to value "{shown}" which is not a valid float: '
            f"{where}",
        )
    return float(value)
