"""Distributed Map's ItemReader: the items of a Map read from (local) S3, streamed.

This module owns what an ``ItemReader`` means: its ``Parameters``/``Arguments``
resolved against the state's effective input into a `ReaderRequest`
(bucket, key or prefix, ``ReaderConfig``, ``MaxItems``), and `stream_items`,
which yields the items one at a time as AWS shapes them — CSV rows as
objects of strings (``CSVHeaderLocation`` FIRST_ROW or GIVEN, any
``CSVDelimiter``, short rows padded with ``""``), the elements of a JSON
array, the lines of a JSON Lines file, the rows of the CSV files an S3
Inventory ``MANIFEST`` names, or the objects ``listObjectsV2`` lists. Files
are read incrementally, so memory stays flat however large the object; only
a listing holds its keys. Every problem is ``States.ItemReaderFailed``.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import IO, Any

from engine.s3local import LocalS3
from engine.states.common import jsonata, payload_template
from engine.states.dynamic import dynamic_int
from engine.walk import Frame
from statemachine.dataflow import compile_template
from statemachine.errors import States, StatesError
from statemachine.jsonata import compile_jsonata_template, is_expression
from statemachine.model import Dynamic
from statemachine.paths import compile_path
from statemachine.validate_support import LIST_OBJECTS_RESOURCE

__all__ = ["ReaderRequest", "reader_request", "stream_items"]

_DELIMITERS = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}
_CHUNK = 1 << 16
_NUMBER_CHARS = frozenset("0123456789.eE+-")
_Binary = IO[bytes] | gzip.GzipFile


def _fail(message: str) -> StatesError:
    return StatesError(States.ITEM_READER_FAILED, message)


@dataclass(frozen=True)
class ReaderRequest:
    """One ItemReader's resolved request: what to read, and how to cut it into items."""

    resource: str
    bucket: Any
    key: Any = None
    prefix: Any = ""
    input_type: str | None = None
    header_location: str = "FIRST_ROW"
    headers: tuple[str, ...] = ()
    delimiter: str = ","
    max_items: int | None = None


async def _max_items(frame: Frame, config: dict[str, Any], effective: Any) -> int | None:
    if "MaxItems" in config:
        value = config["MaxItems"]
        dynamic = (
            Dynamic(field="MaxItems", expression=compile_jsonata_template(value))
            if frame.state.jsonata and is_expression(value)
            else Dynamic(field="MaxItems", literal=value)
        )
    elif "MaxItemsPath" in config:
        dynamic = Dynamic(field="MaxItemsPath", path=compile_path(config["MaxItemsPath"]))
    else:
        return None
    # 0 means "no limit", as AWS reads it. A MaxItemsPath may select an
    # integer written as a string ("2"): AWS reads it as the number
    # (recorded: a variable holding "2" referenced by MaxItemsPath).
    return (
        await dynamic_int(frame, dynamic, effective, numeric_strings=dynamic.path is not None)
        or None
    )


async def reader_request(frame: Frame, reader: dict[str, Any], effective: Any) -> ReaderRequest:
    """Evaluate the ItemReader's Parameters/Arguments and ReaderConfig for this visit."""
    if "Arguments" in reader:
        arguments = await jsonata(frame, compile_jsonata_template(reader["Arguments"]), "Arguments")
    elif "Parameters" in reader:
        arguments = payload_template(frame, compile_template(reader["Parameters"]), effective)
    else:
        arguments = {}
    if not isinstance(arguments, dict):
        raise _fail(f"The ItemReader's parameters must be an object, not {arguments!r}")
    if "VersionId" in arguments:
        raise _fail("VersionId is not supported by local S3 storage")
    config: dict[str, Any] = reader.get("ReaderConfig") or {}
    return ReaderRequest(
        resource=reader["Resource"],
        bucket=arguments.get("Bucket"),
        key=arguments.get("Key"),
        prefix=arguments.get("Prefix", ""),
        input_type=config.get("InputType"),
        header_location=config.get("CSVHeaderLocation", "FIRST_ROW"),
        headers=tuple(config.get("CSVHeaders", ())),
        delimiter=_DELIMITERS[config.get("CSVDelimiter", "COMMA")],
        max_items=await _max_items(frame, config, effective),
    )


def stream_items(request: ReaderRequest, storage: LocalS3) -> Iterator[Any]:
    """The items `request` names, one at a time, at most ``max_items`` of them."""
    items: Iterator[Any]
    if request.resource == LIST_OBJECTS_RESOURCE:
        items = storage.list_objects(request.bucket, request.prefix)
    elif request.input_type == "MANIFEST":
        items = _manifest_rows(request, storage)
    else:
        items = _object_items(request, storage.open(request.bucket, request.key))
    yield from islice(items, request.max_items)


def _object_items(request: ReaderRequest, data: IO[bytes]) -> Iterator[Any]:
    with data:
        if request.input_type == "CSV":
            headers = request.headers if request.header_location == "GIVEN" else None
            yield from _csv_rows(data, request.delimiter, headers)
        elif request.input_type == "JSONL":
            yield from _json_lines(data)
        else:
            yield from _json_array(data)


def _text(data: _Binary) -> io.TextIOWrapper:
    # utf-8-sig: a spreadsheet's byte-order mark must not become part of the first header.
    return io.TextIOWrapper(data, encoding="utf-8-sig", newline="")


def _csv_rows(
    data: _Binary, delimiter: str, headers: tuple[str, ...] | None
) -> Iterator[dict[str, str]]:
    rows = csv.reader(_text(data), delimiter=delimiter)
    try:
        if headers is None:
            first = next(rows, None)
            if first is None:
                return
            headers = tuple(first)
        if len(set(headers)) != len(headers):
            raise _fail("CSV headers cannot contain duplicates.")
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) > len(headers):
                raise _fail(
                    f"CSV row {number} has {len(row)} fields but there are {len(headers)} headers"
                )
            yield {h: row[i] if i < len(row) else "" for i, h in enumerate(headers)}
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _fail(f"The CSV file cannot be read: {exc}") from None


def _json_lines(data: IO[bytes]) -> Iterator[Any]:
    try:
        for number, line in enumerate(_text(data), start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    raise _fail(f"Line {number} of the JSON Lines file is not JSON") from None
    except UnicodeDecodeError as exc:
        raise _fail(f"The JSON Lines file is not UTF-8: {exc}") from None


def _json_array(data: IO[bytes]) -> Iterator[Any]:
    """The elements of a top-level JSON array, decoded one at a time from the stream."""
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8-sig")()
    buffer, position, done = "", 0, False

    def more() -> None:
        nonlocal buffer, position, done
        chunk = data.read(_CHUNK)
        done = not chunk
        buffer = buffer[position:] + text.decode(chunk, final=done)
        position = 0

    def skip(chars: str) -> str:
        """Advance over `chars`; the next other character ('' at the end)."""
        nonlocal position
        while True:
            while position < len(buffer) and buffer[position] in chars:
                position += 1
            if position < len(buffer) or done:
                return buffer[position] if position < len(buffer) else ""
            more()

    try:
        if skip(" \t\r\n") != "[":
            raise _fail("Attempting to map over non-iterable node.")
        position += 1
        if skip(" \t\r\n") == "]":
            position += 1
            if skip(" \t\r\n"):
                raise _fail("The JSON file has content after its array")
            return
        while True:
            while True:
                try:
                    item, end = decoder.raw_decode(buffer, position)
                except ValueError:
                    if done:
                        raise _fail("The JSON file is not a valid JSON array") from None
                    more()
                    continue
                number = isinstance(item, int | float) and not isinstance(item, bool)
                if number and not done and (end == len(buffer) or buffer[end] in _NUMBER_CHARS):
                    more()  # "12" may be "123", "-4.5" may be "-4.5e3": read on
                    continue
                position = end
                break
            yield item
            separator = skip(" \t\r\n")
            position += 1
            if separator == "]":
                if skip(" \t\r\n"):
                    raise _fail("The JSON file has content after its array")
                return
            if separator != ",":
                raise _fail("The JSON file is not a valid JSON array")
            skip(" \t\r\n")
    except UnicodeDecodeError as exc:
        raise _fail(f"The JSON file is not UTF-8: {exc}") from None


def _manifest_rows(request: ReaderRequest, storage: LocalS3) -> Iterator[dict[str, str]]:
    """An S3 Inventory manifest: the rows of every CSV file it lists, keyed by its schema."""
    with storage.open(request.bucket, request.key) as data:
        try:
            manifest = json.load(data)
        except (ValueError, UnicodeDecodeError):
            raise _fail("The manifest is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise _fail("The manifest has no 'files' array")
    if manifest.get("fileFormat", "CSV") != "CSV":
        raise _fail(f"Manifest fileFormat {manifest.get('fileFormat')!r} is not supported")
    schema = manifest.get("fileSchema")
    if not isinstance(schema, str):
        raise _fail("The manifest has no 'fileSchema'")
    headers = tuple(name.strip() for name in schema.split(","))
    bucket = str(manifest.get("destinationBucket", request.bucket)).removeprefix("arn:aws:s3:::")
    for entry in manifest["files"]:
        key = entry.get("key") if isinstance(entry, dict) else None
        with storage.open(bucket, key) as raw:
            rows = gzip.GzipFile(fileobj=raw) if str(key).endswith(".gz") else raw
            try:
                yield from _csv_rows(rows, ",", headers)
            except (OSError, EOFError) as exc:
                raise _fail(f"Cannot read inventory file {key}: {exc}") from None
