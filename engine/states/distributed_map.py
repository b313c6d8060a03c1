"""Distributed Map: a Map Run whose items (or batches) run as child executions on any worker.

`run_distributed` is one attempt of a DISTRIBUTED Map, called by
`engine/states/map.py`. It records ``MapStateStarted`` (length 0, as AWS),
reads the tolerated failures, then — one journaled step, ``MapRunStarted``
with the run's ARN — creates the Map Run in the store
(`engine.store.map_runs`) and streams the items into child rows in chunks:
from the ``ItemReader`` (`engine.itemreader`, local S3 via `engine.s3local`)
or the input's array, through ``ItemSelector`` and ``ItemBatcher``. Neither
the items nor the children's inputs are ever held whole or journaled: the
journal keeps only the run's id and ARN. The run's id is derived from the
parent's ARN and the state's journal key, so a crash anywhere in that step
resumes the same run after its last chunk. A redriven parent redrives the
Map Run its failed generation left (``MapRunRedriven``): only the children
that did not succeed run again. The children run the processor
as a machine of its own: a hidden state machine ``<machine>/<label>``
(``/`` is no user's name; the label is the Map's ``Label`` or a digest of
the processor), stored as any machine version is, so a child's ARN is
``…:execution:<machine>/<label>:<uuid>`` and it is claimed, leased and
replayed by any worker like every execution. The parent then suspends
holding no worker (``Suspend(None)``, as a callback wait); the commit of
the last child's end (or of the failure that exceeds the tolerance) makes
it due (`engine.store.map_run_hook`), and it records ``MapRunSucceeded`` or
``MapRunFailed`` (``States.ExceedToleratedFailureThreshold``). Its output is
the children's outputs in item order, read from the store a page at a time
— or, with a ``ResultWriter``, AWS's result files (`engine.resultwriter`)
and their details, journaled under ``map_results``; a failed run writes its
files too (children never run in ``PENDING_n.json``) before the state fails.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any, Literal, TypeVar

from engine import keys
from engine.itemreader import reader_request, stream_items
from engine.journal import Events, Suspend
from engine.resultwriter import ChildResult, ResultFiles, transform
from engine.s3local import LocalS3, s3_root
from engine.states.common import jsonata, payload_template
from engine.states.dynamic import dynamic_int, dynamic_number
from engine.walk import FinalError, Frame
from statemachine.dataflow import compile_template
from statemachine.errors import States, StatesError
from statemachine.jsonata import JsonataTemplate, compile_jsonata_template
from statemachine.model import Batcher, MapState
from statemachine.timestamps import format_timestamp

__all__ = ["Select", "batch_limits", "child_machine_name", "run_distributed"]

T = TypeVar("T")
ResultStatus = Literal["SUCCEEDED", "FAILED", "PENDING"]
# The ItemSelector of map.py: (frame, state, effective input, index, item) → child input.
Select = Callable[[Frame, MapState, Any, int, Any], Awaitable[Any]]
_CHUNK = 500  # children written per store transaction while loading
_PAGE = 1000  # children read per store call for the output
_RUN_NAMESPACE = uuid.UUID("6f1c1b1e-5d1a-4c43-9b57-3d2f00a1c0de")


async def _final(code: States, step: Callable[[], Awaitable[T]]) -> T:
    """Run `step`; a `code` error it raises keeps its own cause (no state prefix)."""
    try:
        return await step()
    except StatesError as error:
        if error.error == code and not isinstance(error, FinalError):
            raise FinalError(error.error, error.cause) from None
        raise


def _find_state(states: dict[str, Any], name: str) -> dict[str, Any] | None:
    for state_name, state in states.items():
        if state_name == name:
            found: dict[str, Any] = state
            return found
        scopes = [*state.get("Branches", [])]
        for field in ("ItemProcessor", "Iterator"):
            if field in state:
                scopes.append(state[field])
        for scope in scopes:
            inner = _find_state(scope.get("States", {}), name)
            if inner is not None:
                return inner
    return None


def processor_definition(machine_definition: str, state: MapState) -> str:
    """The Map's ItemProcessor as a state machine definition of its own (JSON text)."""
    top = json.loads(machine_definition)
    raw = _find_state(top.get("States", {}), state.name)
    assert raw is not None, f"state {state.name} not in its own machine"
    processor = dict(raw.get("ItemProcessor") or raw.get("Iterator") or {})
    processor.pop("ProcessorConfig", None)
    language = raw.get("QueryLanguage") or top.get("QueryLanguage")
    if language is not None:
        processor = {"QueryLanguage": language, **processor}
    return json.dumps(processor, separators=(",", ":"), sort_keys=True)


def child_machine_name(parent_machine: str, state: MapState, definition: str) -> str:
    """The hidden machine a Map Run's children run: ``<machine>/<label>``."""
    label = state.label or hashlib.sha256(definition.encode()).hexdigest()[:8]
    return f"{parent_machine}/{label}"


async def _tolerance(frame: Frame, state: MapState) -> tuple[int | None, float | None]:
    count = await dynamic_int(
        frame,
        state.tolerated_failure_count,
        frame.input,
        numeric_strings=True,
        below_minimum="ToleratedFailureCount cannot be negative.",
    )
    percentage = await dynamic_number(
        frame, state.tolerated_failure_percentage, frame.input, numeric_strings=True
    )
    if percentage is not None and not 0 <= percentage <= 100:
        raise StatesError(States.RUNTIME, "ToleratedFailurePercentage must be between 0 and 100.")
    return count, percentage


async def _raw_items(
    frame: Frame, state: MapState, effective: Any, items: list[Any] | None
) -> AsyncIterator[Any]:
    if items is not None:
        for item in items:
            yield item
        return
    request = await reader_request(frame, state.item_reader, effective)
    storage = LocalS3(s3_root(), error=States.ITEM_READER_FAILED)
    stream: Iterator[Any] = stream_items(request, storage)
    for item in stream:
        yield item


async def batch_limits(
    frame: Frame, batcher: Batcher, effective: Any
) -> tuple[int | None, int | None, dict[str, Any]]:
    """ItemBatcher's (items per batch, bytes per batch, the part every batch shares)."""
    max_items = await dynamic_int(frame, batcher.max_items, effective, minimum=1)
    max_bytes = await dynamic_int(frame, batcher.max_bytes, effective, minimum=1)
    base: dict[str, Any] = {}
    if batcher.has_batch_input:
        template = batcher.batch_input
        if isinstance(template, JsonataTemplate):
            base["BatchInput"] = await jsonata(frame, template, "ItemBatcher/BatchInput")
        else:
            base["BatchInput"] = payload_template(frame, template, effective)
    return max_items, max_bytes, base


async def _child_inputs(
    frame: Frame,
    state: MapState,
    effective: Any,
    items: list[Any] | None,
    select: Select,
) -> AsyncIterator[tuple[Any, int]]:
    """Each child's input and how many items it carries, in item order, streamed."""
    batcher = state.item_batcher
    if batcher is None:
        index = 0
        async for item in _raw_items(frame, state, effective, items):
            yield await select(frame, state, effective, index, item), 1
            index += 1
        return
    max_items, max_bytes, base = await batch_limits(frame, batcher, effective)
    current: list[Any] = []
    size = len(frame.walk.payload(base).encode()) + len(',"Items":[]')
    used = size
    index = 0
    async for item in _raw_items(frame, state, effective, items):
        value = await select(frame, state, effective, index, item)
        index += 1
        item_size = len(frame.walk.payload(value).encode()) + 1
        full = max_items is not None and len(current) >= max_items
        too_big = max_bytes is not None and current and used + item_size > max_bytes
        if full or too_big:
            yield {**base, "Items": current}, len(current)
            current, used = [], size
        current.append(value)
        used += item_size
    if current:
        yield {**base, "Items": current}, len(current)


async def _start_run(
    frame: Frame,
    state: MapState,
    number: int,
    effective: Any,
    items: list[Any] | None,
    select: Select,
    limits: tuple[int, int | None, float | None],
) -> tuple[dict[str, str], Events]:
    """Create (or resume) the Map Run, load its children in chunks, release the first ones."""
    walk = frame.walk
    services = walk.services
    store = services.store
    run_db = services.run_db
    parent = await run_db(store.get_execution, walk.execution_id)
    machine = await run_db(store.get_state_machine, parent.machine, parent.version)
    definition = processor_definition(machine.definition, state)
    child_machine = child_machine_name(parent.machine, state, definition)
    child_version = await run_db(
        store.put_state_machine, child_machine, definition, state.execution_type or "STANDARD"
    )
    run_id = str(uuid.uuid5(_RUN_NAMESPACE, f"{walk.execution_id}|{frame.key}|{number}"))
    labelled = f"{walk.machine_id.rsplit(':stateMachine:', 1)[0]}:stateMachine:{child_machine}"
    arn = f"{labelled.replace(':stateMachine:', ':mapRun:', 1)}:{run_id}"
    execution_prefix = labelled.replace(":stateMachine:", ":execution:", 1)
    max_concurrency, count, percentage = limits
    if frame.previous_keys:  # the parent was redriven: this Map's run goes on (AWS)
        older = [
            run
            for run in await run_db(store.list_map_runs, walk.execution_id)
            if run.state_key in frame.previous_keys
        ]
        if older:
            redriven = await run_db(
                store.redrive_map_run, older[0].map_run_id, now=walk.clock.now()
            )
            event = {"mapRunArn": redriven.arn, "redriveCount": redriven.redrive_count}
            return {"id": redriven.map_run_id, "arn": redriven.arn}, [("MapRunRedriven", event)]
    run = await run_db(
        store.create_map_run,
        map_run_id=run_id,
        arn=arn,
        execution_id=walk.execution_id,
        state_key=frame.key,
        attempt=number,
        machine=child_machine,
        version=child_version.version,
        queue=parent.queue,
        now=walk.clock.now(),
        max_concurrency=max_concurrency,
        tolerated_failure_percentage=percentage,
        tolerated_failure_count=count,
    )
    if not run.loaded:
        written = run.total  # a crash mid-load resumes after the last chunk written
        chunk: list[tuple[int, str, str, int]] = []
        index = 0
        async for value, item_count in _child_inputs(frame, state, effective, items, select):
            if index >= written:
                name = str(uuid.uuid5(uuid.UUID(run_id), str(index)))
                chunk.append((index, f"{execution_prefix}:{name}", walk.payload(value), item_count))
                if len(chunk) >= _CHUNK:
                    await run_db(store.add_map_run_children, run_id, chunk)
                    chunk = []
            index += 1
        await run_db(store.add_map_run_children, run_id, chunk)
        await run_db(store.start_map_run, run_id, now=walk.clock.now())
    return {"id": run_id, "arn": arn}, [("MapRunStarted", {"mapRunArn": arn})]


async def _await_run(frame: Frame, run_id: str) -> tuple[dict[str, Any], Events]:
    """The run's end, once it ended; until then the parent suspends, woken by the last child."""
    services = frame.walk.services
    run = await services.run_db(services.store.get_map_run, run_id)
    if run.status == "RUNNING":
        raise Suspend(None)
    if run.status == "SUCCEEDED":
        return {"status": run.status}, [("MapRunSucceeded", {})]
    # The run failed: its children still running stop now (pending ones never started).
    await services.run_db(services.store.stop_map_run_children, run_id, now=frame.walk.clock.now())
    error = run.error or ("States.Aborted" if run.status == "ABORTED" else "")
    details = {"error": error, "cause": run.cause or ""}
    return {"status": run.status, **details}, [("MapRunFailed", details)]


def _decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _date(value: datetime | None) -> str:
    return "" if value is None else format_timestamp(value)


async def _children(frame: Frame, run_id: str) -> AsyncIterator[ChildResult]:
    """The run's children in item order as result records, a store page at a time."""
    services = frame.walk.services
    run = await services.run_db(services.store.get_map_run, run_id)
    labelled = run.arn.replace(":mapRun:", ":stateMachine:", 1).rsplit(":", 1)[0]
    after = -1
    while True:
        page = await services.run_db(
            services.store.map_run_children_page, run_id, after=after, limit=_PAGE
        )
        for child in page:
            started = child.start_date is not None
            status: ResultStatus = (
                "SUCCEEDED"
                if child.status == "SUCCEEDED"
                else ("FAILED" if started and child.status != "RUNNING" else "PENDING")
            )
            yield ChildResult(
                execution_arn=child.execution_id,
                name=child.execution_id.rsplit(":", 1)[1],
                state_machine_arn=labelled,
                input=_decode(child.input),
                status=status,
                start_date=_date(child.start_date),
                stop_date=_date(child.stop_date),
                output=_decode(child.output),
                error=child.error,
                cause=child.cause,
            )
        if len(page) < _PAGE:
            return
        after = page[-1].index


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


async def _results(
    frame: Frame, state: MapState, effective: Any, number: int, started: dict[str, str]
) -> Any:
    """The Map's result: the children's outputs in item order, or what its ResultWriter wrote."""
    run_id = started["id"]
    if state.result_writer is None:
        results: list[Any] = []
        async for child in _children(frame, run_id):
            if child.status == "SUCCEEDED":
                results.append(child.output)
            else:
                results.append({"Error": child.error, "Cause": child.cause})
        return results
    writer: dict[str, Any] = state.result_writer
    config: dict[str, Any] = writer.get("WriterConfig") or {}
    exporting = "Resource" in writer
    transformation = config.get("Transformation", "NONE" if exporting else "COMPACT")

    async def produce() -> tuple[Any, Events]:
        if not exporting:  # the output itself: bounded by the payload limit
            return transform(
                [child async for child in _children(frame, run_id)], transformation
            ), ()
        arguments = await _writer_arguments(frame, writer, effective)
        storage = LocalS3(s3_root(), error=States.RESULT_WRITER_FAILED)
        files = ResultFiles(
            storage,
            bucket=arguments.get("Bucket"),
            prefix=arguments.get("Prefix", ""),
            map_run_arn=started["arn"],
            transformation=transformation,
            output_type=config.get("OutputType", "JSON"),
        )
        try:
            async for child in _children(frame, run_id):  # a store page at a time
                files.add(child)
            details = files.finish()
        except BaseException:
            files.discard()
            raise
        services = frame.walk.services
        await services.run_db(services.store.map_run_results_written, run_id, files.written)
        return details, ()

    key = keys.map_results(frame.key, number)
    return await _final(
        States.RESULT_WRITER_FAILED,
        lambda: frame.record_once_async(key, produce, thread=frame.thread),
    )


async def run_distributed(
    frame: Frame,
    state: MapState,
    number: int,
    effective: Any,
    items: list[Any] | None,
    select: Select,
) -> Any:
    """One attempt of a DISTRIBUTED Map: its Map Run, run by child executions; returns its result.

    `items` is the input's array (None: the ItemReader reads them). Raises
    FinalError States.ExceedToleratedFailureThreshold when the run fails,
    States.ItemReaderFailed / States.ResultWriterFailed for storage problems,
    and `Suspend` while the children run.
    """
    with frame.evaluating():
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
    frame.record_once(
        keys.map_started(frame.key, number),
        lambda: (None, [("MapStateStarted", {"length": 0})]),
        thread=frame.thread,
    )
    with frame.evaluating():
        # AWS reads the tolerated failures once the Map Run starts: after MapStateStarted.
        count, percentage = await _tolerance(frame, state)

    async def start() -> tuple[dict[str, str], Events]:
        limits = (concurrency, count, percentage)
        return await _final(
            States.ITEM_READER_FAILED,
            lambda: _start_run(frame, state, number, effective, items, select, limits),
        )

    with frame.evaluating():
        started: dict[str, str] = await frame.record_once_async(
            keys.map_run(frame.key, number), start, thread=frame.thread
        )
    ended = await frame.record_once_async(
        keys.map_run_end(frame.key, number),
        lambda: _await_run(frame, started["id"]),
        thread=frame.thread,
    )
    if ended["status"] != "SUCCEEDED":
        if state.result_writer is not None and "Resource" in state.result_writer:
            # AWS writes the files of a failed run too: PENDING_n.json holds what never ran.
            await _results(frame, state, effective, number, started)
        raise FinalError(ended["error"], ended["cause"])
    frame.record_once(
        keys.map_succeeded(frame.key, number),
        lambda: (None, [("MapStateSucceeded", {})]),
        thread=frame.thread,
    )
    return await _results(frame, state, effective, number, started)
