"""The data-flow pipeline every state shares, applied in one place.

JSONPath: raw input → InputPath → Parameters → (work) → Assign →
ResultSelector → ResultPath (into the raw input) → OutputPath. JSONata:
Arguments → (work) → Assign / Output over ``$states``. Each function here
is one step of that pipeline; the per-state modules call them in order.
Evaluation errors come out with AWS's prefix naming the state (see
`Frame.evaluating`). A JSONata evaluation runs on the event loop for at
most `INLINE_SECONDS`; one that takes longer (or holds a regex literal) is
run again off the loop — in the sandbox process, bounded in time and
memory — so it never delays the other executions on the worker.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import anyio
import msgspec
from anyio.lowlevel import RunVar

from engine.walk import FinalError, Frame, Transition
from statemachine.dataflow import (
    Template,
    apply_input_path,
    apply_output_path,
    evaluate_template,
)
from statemachine.errors import States, StatesError
from statemachine.jsonata import (
    Expression,
    JsonataTemplate,
    QueryEvaluationError,
    check_result_type,
    check_variable_name,
)
from statemachine.jsonata import evaluate_template as evaluate_jsonata
from statemachine.model import ParallelState, TaskState
from statemachine.paths import Path, apply_result_path
from statemachine.quotas import MAX_PAYLOAD_BYTES, MAX_VARIABLE_BYTES

__all__ = [
    "INLINE_SECONDS",
    "MAX_PAYLOAD_BYTES",
    "MAX_VARIABLE_BYTES",
    "NOTHING",
    "effective_input",
    "evaluate_assign",
    "exit_state",
    "finish_result",
    "jsonata",
    "jsonata_typed",
    "jsonpath_result",
    "output_path",
    "payload_template",
    "task_input",
]


# What an evaluation gets for `$$` or the variables when none of its paths reads them.
NOTHING: Final[Mapping[str, Any]] = MappingProxyType({})


def effective_input(frame: Frame) -> Any:
    """InputPath applied to the raw input (JSONPath mode); the raw input in JSONata mode."""
    state = frame.state
    if state.jsonata:
        return frame.input
    if state.input_path_null:
        return apply_input_path(None, frame.input, frame.path_context(), _vars(frame))
    if state.input_path is None:
        return frame.input
    return apply_input_path(state.input_path, frame.input, frame.path_context(), _vars(frame))


async def task_input(frame: Frame, state: TaskState | ParallelState) -> Any:
    """What a Task's handler or a Parallel's branches get: Arguments, or InputPath+Parameters."""
    if state.jsonata:
        if state.arguments is None:
            return frame.input
        return await jsonata(frame, state.arguments, "Arguments")
    return payload_template(frame, state.parameters, effective_input(frame))


def output_path(frame: Frame, value: Any) -> Any:
    """OutputPath applied to `value` (JSONPath mode)."""
    state = frame.state
    if state.output_path_null:
        return apply_output_path(None, value, frame.path_context(), _vars(frame))
    if state.output_path is None:
        return value
    return apply_output_path(state.output_path, value, frame.path_context(), _vars(frame))


def payload_template(
    frame: Frame, template: Template | None, value: Any, *, map_item: tuple[int, Any] | None = None
) -> Any:
    """Evaluate Parameters / ResultSelector / ItemSelector against `value` (absent: `value`)."""
    if template is None:
        return value
    # `$$` and the variables are built only for a template whose paths read them.
    return evaluate_template(
        template,
        value,
        frame.path_context(map_item=map_item) if template.reads_context else NOTHING,
        _vars(frame) if template.reads_variables else NOTHING,
        frame,
    )


async def jsonata(
    frame: Frame,
    template: JsonataTemplate,
    field: str,
    *,
    map_item: tuple[int, Any] | None = None,
    **states: Any,
) -> Any:
    """Evaluate a JSONata template with ``$states`` = input, context and `states`."""
    binding = {"input": frame.input, "context": frame.context(map_item=map_item), **states}
    services = frame.walk.services
    limits = services.jsonata_limits
    sandbox = services.sandbox
    variables = _vars(frame)
    if not _nondeterministic(template):
        known_slow = _sources(template) in _SLOW
        if not template.uses_regex and not known_slow:
            quick = msgspec.structs.replace(
                limits, timeout_seconds=min(limits.timeout_seconds, INLINE_SECONDS)
            )
            try:
                return evaluate_jsonata(
                    template,
                    field=field,
                    states=binding,
                    variables=variables,
                    nondeterminism=frame,
                    limits=quick,
                )
            except QueryEvaluationError as error:
                if not error.timed_out or quick.timeout_seconds >= limits.timeout_seconds:
                    raise
                # A Map's next iterations go straight off the loop.
                if len(_SLOW) >= _SLOW_REMEMBERED:
                    _SLOW.clear()
                _SLOW.add(_sources(template))
        # Pure, so running it again from the start gives what the inline run would have.
        call = functools.partial(
            evaluate_jsonata if sandbox is None else sandbox.evaluate_isolated,
            template,
            field=field,
            states=binding,
            variables=variables,
            nondeterminism=_NO_NONDETERMINISM,
            limits=limits,
        )
        return await anyio.to_thread.run_sync(
            call, abandon_on_cancel=True, limiter=_evaluation_limiter()
        )
    # $uuid, $random and $now journal through the frame, which only the loop
    # may touch: such templates are evaluated here, as before.
    if sandbox is not None and template.uses_regex:
        # A regex can backtrack inside C code where no cooperative check runs:
        # such templates are evaluated in a process that is killed at the limit.
        return sandbox.evaluate(
            template,
            field=field,
            states=binding,
            variables=variables,
            nondeterminism=frame,
            limits=limits,
        )
    return evaluate_jsonata(
        template,
        field=field,
        states=binding,
        variables=variables,
        nondeterminism=frame,
        limits=limits,
    )


# How long one JSONata evaluation may hold the event loop before it is run
# again off the loop. Nearly every evaluation takes microseconds.
INLINE_SECONDS: Final = 0.05

_NONDETERMINISTIC: Final = ("$uuid", "$random", "$now", "$millis")

# Templates that outran INLINE_SECONDS once in this process (by their
# expressions' sources): evaluated off the loop from then on, without first
# spending the budget again.
_SLOW: set[tuple[str, ...]] = set()
_SLOW_REMEMBERED: Final = 1024


def _sources(template: JsonataTemplate) -> tuple[str, ...]:
    return tuple(expression.source for expression in template.expressions)


# Threads evaluating off the loop, per event loop: their own few, so slow
# evaluations never take the threads sync handlers run in.
_LIMITER: RunVar[anyio.CapacityLimiter] = RunVar("stepwise_evaluation_limiter")


def _evaluation_limiter() -> anyio.CapacityLimiter:
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(4)
        _LIMITER.set(limiter)
        return limiter


def _nondeterministic(template: JsonataTemplate) -> bool:
    return any(name in e.text for e in template.expressions for name in _NONDETERMINISTIC)


class _NoNondeterminism:
    """What an evaluation off the loop gets: it never holds $uuid, $random or $now."""

    def uuid(self) -> str:
        raise _off_loop_misuse()

    def random(self) -> float:
        raise _off_loop_misuse()

    def now(self) -> datetime:
        raise _off_loop_misuse()


def _off_loop_misuse() -> AssertionError:
    return AssertionError("a nondeterministic JSONata template was evaluated off the loop")


_NO_NONDETERMINISM: Final = _NoNondeterminism()


async def jsonata_typed(
    frame: Frame, template: JsonataTemplate, field: str, expected: str, **states: Any
) -> Any:
    """A JSONata field whose result must have one JSON type (AWS's type errors otherwise)."""
    value = await jsonata(frame, template, field, **states)
    source = template.value
    text = source.text if isinstance(source, Expression) else frame.walk.payload(_source(source))
    return check_result_type(value, expected=expected, field=field, expression_text=text)


def _source(value: Any) -> Any:
    """A template's JSON as written: each compiled expression back to its `{% … %}` text."""
    if isinstance(value, Expression):
        return value.source
    if isinstance(value, dict):
        return {key: _source(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_source(item) for item in value]
    return value


async def evaluate_assign(
    frame: Frame,
    template: Template | JsonataTemplate | None,
    *,
    dollar: Any,
    **states: Any,
) -> dict[str, Any] | None:
    """Evaluate an Assign block against the variables' entry values; None when there is none."""
    if template is None:
        return None
    if isinstance(template, JsonataTemplate):
        values = await jsonata(frame, template, "Assign", **states)
    else:
        values = payload_template(frame, template, dollar)
    if not isinstance(values, dict):
        raise StatesError(States.RUNTIME, "Assign must evaluate to an object of variables.")
    total = 0
    for name, value in values.items():
        problem = check_variable_name(name)
        if problem:
            raise StatesError(States.RUNTIME, problem)
        size = len(frame.walk.payload(value).encode())
        if size > MAX_VARIABLE_BYTES:
            raise StatesError(
                States.RUNTIME,
                f"The variable '{name}' is {size} bytes, over the {MAX_VARIABLE_BYTES}-byte "
                "limit for one variable.",
            )
        total += size
    if total > MAX_VARIABLE_BYTES:
        raise StatesError(
            States.RUNTIME,
            f"The Assign block assigns {total} bytes, over the {MAX_VARIABLE_BYTES}-byte limit "
            "for one Assign.",
        )
    frame.variables.check_assign(values)
    return values


def jsonpath_result(frame: Frame, result: Any) -> Any:
    """`finish_result` of a JSONPath state without Assign, awaiting nothing: its output.

    ResultSelector → ResultPath → OutputPath; a Task's or Map's commonest
    end, spared a coroutine.
    """
    selected = payload_template(frame, getattr(frame.state, "result_selector", None), result)
    return output_path(frame, merge_result(frame, selected))


async def finish_result(frame: Frame, result: Any) -> tuple[Any, dict[str, Any] | None]:
    """Turn a Task/Map/Parallel result into the state output (and its assignments)."""
    state = frame.state
    if not state.jsonata and state.assign is None:
        return jsonpath_result(frame, result), None
    if state.jsonata:
        assigned = await evaluate_assign(frame, state.assign, dollar=result, result=result)
        output = (
            result
            if state.output is None
            else await jsonata(frame, state.output, "Output", result=result)
        )
        return output, assigned
    assigned = (
        None if state.assign is None else await evaluate_assign(frame, state.assign, dollar=result)
    )
    selected = payload_template(frame, getattr(state, "result_selector", None), result)
    merged = merge_result(frame, selected)
    return output_path(frame, merged), assigned


def merge_result(frame: Frame, result: Any) -> Any:
    """ResultPath: place `result` into the raw input."""
    state = frame.state
    path: Path | None = getattr(state, "result_path", None)
    if getattr(state, "result_path_null", False):
        return apply_result_path(frame.input, None, result)
    if path is None:
        return result
    return apply_result_path(frame.input, path, result)


def exit_state(frame: Frame, transition: Transition, *, pure: bool = False) -> Transition:
    """Make the state's exit record (output, next, assignments) with its Exited event.

    `run_scope` records it once the state returns (on replay it returns the
    record instead of running the state). `pure` says nothing ran since the
    entry that could change the input in place (no handler, no child, no
    await: a JSONPath Pass or Choice), so an output that is the input is the
    entered event's text.

    A state output over 256 KiB fails the execution at once: AWS treats
    oversized state I/O as terminal, beyond Retry and Catch.
    """
    result = frame.result_text
    if result is not None and result[0] is transition.output:
        output_text = result[1]  # the Task's result, unchanged: its event's text
    elif pure and transition.output is frame.input and frame.input_text is not None:
        output_text = frame.input_text
    else:
        output_text = frame.walk.payload(transition.output)
    # A character is at most 4 bytes of UTF-8: a short text needs no encoding to check.
    if len(output_text) > _SURELY_SMALL and len(output_text.encode()) > MAX_PAYLOAD_BYTES:
        raise FinalError(
            States.DATA_LIMIT_EXCEEDED,
            f"The state/task '{frame.state.name}' returned a result with a size exceeding "
            "the maximum number of bytes service limit.",
            uncatchable=True,
        )
    details: dict[str, Any] = {"name": frame.state.name, "output": output_text}
    if transition.assigned:
        details["assignedVariables"] = {
            k: frame.walk.payload(v) for k, v in transition.assigned.items()
        }
        details["assignedVariablesDetails"] = {"truncated": False}
    record: dict[str, Any] = {"o": transition.output, "n": transition.next}
    if transition.assigned:
        record["v"] = transition.assigned
    frame.exit_record = (record, [(frame.state.exited_event, details)])
    frame.output_text = output_text
    return transition


_SURELY_SMALL: Final = MAX_PAYLOAD_BYTES // 4


def _vars(frame: Frame) -> dict[str, Any]:
    return frame.variables.visible()
