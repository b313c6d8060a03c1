"""Distributed Map's own steps: the items its ItemReader reads, journaled once.

`run_map` (engine/states/map.py) sends a Map with an ``ItemReader`` here for
its items. The reader (`engine.itemreader`) streams them from local S3
storage (`engine.s3local`); the list is recorded in the journal under the
attempt's ``map_items`` key, so a replay — on any worker, after any crash —
iterates exactly the items the first read saw, even if the file changed
since. A reader failure is ``States.ItemReaderFailed`` with the reader's own
cause, which Retry and Catch match as AWS's do.
"""

from __future__ import annotations

from typing import Any

from engine import keys
from engine.itemreader import reader_request, stream_items
from engine.journal import Events
from engine.s3local import LocalS3, s3_root
from engine.walk import FinalError, Frame
from statemachine.errors import States, StatesError
from statemachine.model import MapState

__all__ = ["reader_items"]


def reader_items(frame: Frame, state: MapState, effective: Any, attempt_number: int) -> list[Any]:
    """The items of `state`'s ItemReader for this attempt: read once, then replayed."""

    def produce() -> tuple[list[Any], Events]:
        request = reader_request(frame, state.item_reader, effective)
        storage = LocalS3(s3_root(), error=States.ITEM_READER_FAILED)
        return list(stream_items(request, storage)), ()

    try:
        items = frame.record_once(
            keys.map_items(frame.key, attempt_number), produce, thread=frame.thread
        )
    except StatesError as error:
        if error.error == States.ITEM_READER_FAILED and not isinstance(error, FinalError):
            raise FinalError(error.error, error.cause) from None
        raise
    return list(items)
