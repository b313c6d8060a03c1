"""Distributed Map's own steps: the items its ItemReader reads, the files its ResultWriter writes.

`run_map` (engine/states/map.py) sends a DISTRIBUTED Map here at two points.
`reader_items` gives the items of an ``ItemReader``: the reader
(`engine.itemreader`) streams them from local S3 storage
(`engine.s3local`) and the list is recorded in the journal under the
attempt's ``map_items`` key, so a replay — on any worker, after any crash —
iterates exactly the items the first read saw. `write_results` turns the
children's outcomes into what a ``ResultWriter`` asks for: AWS's result
files under ``PREFIX/<map run id>/`` and the ``MapRunArn`` /
``ResultWriterDetails`` output, or (``WriterConfig`` alone) the transformed
array; it runs once and is journaled under ``map_results``, and the Map
Run's id is journaled with it, so a rerun writes the same files. Reader
and writer failures are ``States.ItemReaderFailed`` and
``States.ResultWriterFailed`` with their own causes, matched by Retry and
Catch as AWS's are. The children still run in-process as iterations, so a
child's ARN (``…:execution:<machine>/<label>:<id>``) and dates are derived
from the Map Run's.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from engine import keys
from engine.itemreader import reader_request, stream_items
from engine.journal import Events
from engine.resultwriter import ChildResult, transform, write_result_files
from engine.s3local import LocalS3, s3_root
from engine.states.children import ChildOutcome
from engine.states.common import jsonata, payload_template
from engine.walk import FinalError, Frame
from statemachine.dataflow import compile_template
from statemachine.errors import States, StatesError
from statemachine.jsonata import compile_jsonata_template
from statemachine.model import MapState
from statemachine.timestamps import format_timestamp

__all__ = ["reader_items", "write_results"]

T = TypeVar("T")


async def _final(code: States, step: Callable[[], Awaitable[T]]) -> T:
    """Run `step`; a `code` error it raises keeps its own cause (no state prefix)."""
    try:
        return await step()
    except StatesError as error:
        if error.error == code and not isinstance(error, FinalError):
            raise FinalError(error.error, error.cause) from None
        raise


async def reader_items(
    frame: Frame, state: MapState, effective: Any, attempt_number: int
) -> list[Any]:
    """The items of `state`'s ItemReader for this attempt: read once, then replayed."""

    async def produce() -> tuple[list[Any], Events]:
        request = await reader_request(frame, state.item_reader, effective)
        storage = LocalS3(s3_root(), error=States.ITEM_READER_FAILED)
        return list(stream_items(request, storage)), ()

    key = keys.map_items(frame.key, attempt_number)
    items = await _final(
        States.ITEM_READER_FAILED,
        lambda: frame.record_once_async(key, produce, thread=frame.thread),
    )
    return list(items)


async def _writer_arguments(frame: Frame, writer: dict[str, Any], effective: Any) -> dict[str, Any]:
    if "Arguments" in writer:
        arguments = await jsonata(frame, compile_jsonata_template(writer["Arguments"]), "Arguments")
    elif "Parameters" in writer:
        arguments = payload_template(frame, compile_template(writer["Parameters"]), effective)
    else:
        arguments = {}
    if not isinstance(arguments, dict):
        raise StatesError(
            States.RESULT_WRITER_FAILED,
            f"The ResultWriter's parameters must be an object, not {arguments!r}",
        )
    return arguments


def _children(
    frame: Frame, state: MapState, run_id: str, now: str, inputs: list[Any], outcome: ChildOutcome
) -> tuple[str, list[ChildResult]]:
    """The Map Run's ARN and one `ChildResult` per child, in item order."""
    machine_arn = str(frame.walk.machine_id)
    label = state.label or run_id[:8]
    labelled = f"{machine_arn}/{label}"
    map_run_arn = f"{labelled.replace(':stateMachine:', ':mapRun:', 1)}:{run_id}"
    execution_prefix = labelled.replace(":stateMachine:", ":execution:", 1)
    failed = dict(outcome.failures)
    children = []
    for index, value in enumerate(inputs):
        name = str(uuid.uuid5(uuid.UUID(run_id), str(index)))
        error = failed.get(index)
        children.append(
            ChildResult(
                execution_arn=f"{execution_prefix}:{name}",
                name=name,
                state_machine_arn=labelled,
                input=value,
                status="SUCCEEDED" if error is None else "FAILED",
                start_date=now,
                stop_date=now,
                output=outcome.outputs[index] if error is None else None,
                error=None if error is None else error.error,
                cause=None if error is None else error.cause,
            )
        )
    return map_run_arn, children


async def write_results(
    frame: Frame,
    state: MapState,
    effective: Any,
    attempt_number: int,
    inputs: list[Any],
    outcome: ChildOutcome,
) -> Any:
    """The Map's result under its ResultWriter: exported files' details, or a transformed array."""
    writer: dict[str, Any] = state.result_writer
    config: dict[str, Any] = writer.get("WriterConfig") or {}
    exporting = "Resource" in writer
    transformation = config.get("Transformation", "NONE" if exporting else "COMPACT")
    # Both journaled, outside the write step, so a replay draws the same sequence.
    run_id = frame.uuid()
    now = format_timestamp(frame.now())

    async def produce() -> tuple[Any, Events]:
        map_run_arn, children = _children(frame, state, run_id, now, inputs, outcome)
        if not exporting:
            return transform(children, transformation), ()
        arguments = await _writer_arguments(frame, writer, effective)
        storage = LocalS3(s3_root(), error=States.RESULT_WRITER_FAILED)
        details = write_result_files(
            storage,
            bucket=arguments.get("Bucket"),
            prefix=arguments.get("Prefix", ""),
            map_run_arn=map_run_arn,
            children=children,
            transformation=transformation,
            output_type=config.get("OutputType", "JSON"),
        )
        return details, ()

    key = keys.map_results(frame.key, attempt_number)
    return await _final(
        States.RESULT_WRITER_FAILED,
        lambda: frame.record_once_async(key, produce, thread=frame.thread),
    )
