"""Map: run the item processor once per item; the result is the array of outputs in item order.

JSONPath: InputPath → ItemsPath (must point to an array) → ItemSelector (or
the deprecated Parameters) per item with ``$$.Map.Item`` → processor.
JSONata: Items (an array, or the input itself) → ItemSelector → processor.
MaxConcurrency 0 means unlimited. Inline mode runs the iterations here,
as anyio tasks, and fails on the first failed iteration (or, with
ToleratedFailureCount/Percentage, beyond them with
States.ExceedToleratedFailureThreshold). DISTRIBUTED mode is dispatched
whole to `engine/states/distributed_map.py`: a Map Run whose items (or
batches) run as child executions on any worker.
"""

from __future__ import annotations

from typing import Any

from engine import keys
from engine.states.children import Child, run_children
from engine.states.common import (
    effective_input,
    finish_result,
    jsonata,
    jsonata_typed,
    payload_template,
)
from engine.states.dynamic import dynamic_int
from engine.states.recovery import with_recovery
from engine.walk import Frame, Transition, enter
from statemachine.dataflow import Template, evaluate_template
from statemachine.errors import States, StatesError
from statemachine.jsonata import JsonataTemplate, QueryEvaluationError
from statemachine.model import MapState
from statemachine.paths import resolve, to_json

__all__ = ["run_map"]


async def _items(frame: Frame, state: MapState, effective: Any) -> list[Any]:
    if state.jsonata:
        if state.items is None:
            if not isinstance(effective, list):
                raise QueryEvaluationError(
                    f"Map state input must be an array but was: {to_json(effective)}",
                    location="Items",
                )
            return effective
        return list(await jsonata_typed(frame, state.items, "Items", "array"))
    if state.items_path is None:
        items = effective
        where = "$"
    else:
        context = frame.path_context()
        items = resolve(state.items_path, effective, context, frame.variables.visible())
        where = state.items_path.text
    if not isinstance(items, list):
        raise StatesError(
            States.RUNTIME,
            f"Reference path '{where}' must point to array. Value: {to_json(items)}",
        )
    return items


async def _select(frame: Frame, state: MapState, effective: Any, index: int, item: Any) -> Any:
    selector = state.item_selector
    if selector is None:
        return item
    if isinstance(selector, JsonataTemplate):
        return await jsonata(frame, selector, "ItemSelector", map_item=(index, item))
    assert isinstance(selector, Template)
    return payload_template(frame, selector, effective, map_item=(index, item))


# The parts of `$$` each Map item gets a copy of (what a handler could change in place).
_OWN_PARTS = ("Execution", "StateMachine", "State", "Task")


def _selected(frame: Frame, selector: Template, effective: Any, items: list[Any]) -> list[Any]:
    """A JSONPath ItemSelector's input for every item, with the Map's `$$` and variables built once.

    Each item's context object is the Map state's own (`Frame.context`,
    built once) with its ``Map.Item``; its Execution, StateMachine and State
    objects are each item's own shallow copies, so a handler that changes
    the `$$` it was given cannot change what its sibling items see.
    """
    variables = frame.variables.visible()
    if not frame.walk.reads_context:  # no path of the machine reads `$$`
        return [evaluate_template(selector, effective, {}, variables, frame) for _ in items]
    shared = frame.context()
    return [
        evaluate_template(
            selector,
            effective,
            {
                **shared,
                **{key: {**shared[key]} for key in _OWN_PARTS if key in shared},
                "Map": {"Item": {"Index": index, "Value": item}},
            },
            variables,
            frame,
        )
        for index, item in enumerate(items)
    ]


async def _batches(frame: Frame, state: MapState, effective: Any, inputs: list[Any]) -> list[Any]:
    """Group the selected items into ItemBatcher's batch inputs."""
    from engine.states.distributed_map import batch_limits  # Distributed Map loads when used

    batcher = state.item_batcher
    assert batcher is not None
    max_items, max_bytes, base = await batch_limits(frame, batcher, effective)
    batches: list[Any] = []
    current: list[Any] = []
    size = len(frame.walk.payload(base).encode()) + len(',"Items":[]')
    used = size
    for item in inputs:
        item_size = len(frame.walk.payload(item).encode()) + 1
        full = max_items is not None and len(current) >= max_items
        too_big = max_bytes is not None and current and used + item_size > max_bytes
        if full or too_big:
            batches.append({**base, "Items": current})
            current, used = [], size
        current.append(item)
        used += item_size
    if current:
        batches.append({**base, "Items": current})
    return batches


async def run_map(frame: Frame, state: MapState) -> Transition:
    enter(frame, input_payload=frame.input)

    async def attempt(number: int) -> tuple[Any, dict[str, Any] | None]:
        if state.mode == "DISTRIBUTED":  # child executions: engine/states/distributed_map.py
            from engine.states.distributed_map import run_distributed  # loaded when used

            with frame.evaluating():
                effective = effective_input(frame)
                listed = (
                    None if state.item_reader is not None else await _items(frame, state, effective)
                )
            result = await run_distributed(frame, state, number, effective, listed, _select)
            with frame.evaluating():
                return await finish_result(frame, result)
        with frame.evaluating():
            effective = effective_input(frame)
            items = await _items(frame, state, effective)
            concurrency = (
                await dynamic_int(
                    frame,
                    state.max_concurrency,
                    effective,
                    numeric_strings=True,
                    below_minimum="Expected non-negative integer for MaxConcurrency, "
                    "got '{value}' instead.",
                )
                or 0
            )
            selector = state.item_selector
            if isinstance(selector, Template):  # JSONPath: no coroutine per item
                inputs = _selected(frame, selector, effective, items)
            else:
                inputs = [
                    await _select(frame, state, effective, i, item) for i, item in enumerate(items)
                ]
            if state.item_batcher is not None:
                inputs = await _batches(frame, state, effective, inputs)
        frame.record_once(
            keys.map_started(frame.key, number),
            lambda: (None, [("MapStateStarted", {"length": len(inputs)})]),
            thread=frame.thread,
        )
        children = [
            Child(
                scope=state.processor,
                input=value,
                prefix=keys.iteration_prefix(frame.key, number, index),
                map_name=state.name,
                index=index,
            )
            for index, value in enumerate(inputs)
        ]
        # An inline Map has no tolerated failures (a DISTRIBUTED one went to
        # run_distributed above): the first failed iteration fails the Map.
        outcome = await run_children(frame, children, max_concurrency=concurrency)
        frame.record_once(
            keys.map_succeeded(frame.key, number),
            lambda: (None, [("MapStateSucceeded", {})]),
            thread=frame.thread,
        )
        results = list(outcome.outputs)
        for index, error in outcome.failures:
            results[index] = {"Error": error.error, "Cause": error.cause}
        with frame.evaluating():
            return await finish_result(frame, results)

    return await with_recovery(frame, state, attempt)
