"""Distributed Map's ResultWriter: the children's results as AWS's records and result files.

This module owns the shapes: a child's *execution record* (AWS's ``NONE``
transformation — ``ExecutionArn``, ``Input`` and ``Output`` as JSON strings,
``Status``, dates …; a failed child carries ``Error`` and ``Cause`` instead
of ``Output``), the ``COMPACT`` and ``FLATTEN`` transformations of
``WriterConfig`` (failed children always stay full records), and the files
written under ``PREFIX/<map run id>/`` on local S3 storage:
``SUCCEEDED_0.json``, ``FAILED_0.json``, ``PENDING_0.json`` (only those with
records; a JSON array, or one record per line for ``OutputType`` JSONL) and
``manifest.json`` listing them, streamed a record at a time (`ResultFiles`),
so memory does not grow with the children. `write_result_files` returns what the Map
state outputs when it exports: ``{"MapRunArn", "ResultWriterDetails":
{"Bucket", "Key"}}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from engine.s3local import LocalS3, ObjectWriter

__all__ = ["ChildResult", "ResultFiles", "execution_record", "transform", "write_result_files"]

Status = Literal["SUCCEEDED", "FAILED", "PENDING"]
_FILE_SIZE_LIMIT = 5 * 1024**3  # AWS starts a new file after 5 GB


@dataclass(frozen=True)
class ChildResult:
    """One child run of a Distributed Map, as its result files describe it."""

    execution_arn: str
    name: str
    state_machine_arn: str
    input: Any
    status: Status
    start_date: str
    stop_date: str
    output: Any = None
    error: str | None = None
    cause: str | None = None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def execution_record(child: ChildResult) -> dict[str, Any]:
    """The child's full record (``Transformation: NONE``), in AWS's field order."""
    record: dict[str, Any] = {
        "ExecutionArn": child.execution_arn,
        "Input": _json(child.input),
        "InputDetails": {"Included": True},
        "Name": child.name,
    }
    if child.status == "SUCCEEDED":
        record["Output"] = _json(child.output)
        record["OutputDetails"] = {"Included": True}
    elif child.status == "FAILED":
        record["Error"] = child.error
        record["Cause"] = child.cause
    record.update(
        {
            "RedriveCount": 0,
            "RedriveStatus": "NOT_REDRIVABLE",
            "RedriveStatusReason": f"Execution is {child.status} and cannot be redriven",
            "StartDate": child.start_date,
            "StateMachineArn": child.state_machine_arn,
            "Status": child.status,
            "StopDate": child.stop_date,
        }
    )
    return record


def transform(children: list[ChildResult], transformation: str) -> list[Any]:
    """The children's results in item order under ``WriterConfig.Transformation``."""
    results: list[Any] = []
    for child in children:
        if transformation == "NONE" or child.status != "SUCCEEDED":
            results.append(execution_record(child))
        elif transformation == "FLATTEN" and isinstance(child.output, list):
            results.extend(child.output)
        else:
            results.append(child.output)
    return results


class ResultFiles:
    """The result files of one Map Run, written as the children come, one record at a time.

    `add` each child in item order; `finish` closes the files, writes the
    manifest and returns the Map state's export result. Memory stays one
    record whatever the number of children; a file rolls over at 5 GB.
    """

    def __init__(
        self,
        storage: LocalS3,
        *,
        bucket: Any,
        prefix: Any,
        map_run_arn: str,
        transformation: str,
        output_type: str,
    ) -> None:
        self._storage = storage
        self._bucket = bucket
        self._map_run_arn = map_run_arn
        self._transformation = transformation
        self._jsonl = output_type == "JSONL"
        run_id = map_run_arn.rsplit(":", 1)[-1]
        if not isinstance(prefix, str):
            prefix = ""
        self._folder = f"{prefix.rstrip('/')}/{run_id}" if prefix.strip("/") else run_id
        self._open: dict[Status, ObjectWriter] = {}
        self._listed: dict[Status, list[dict[str, Any]]] = {
            "FAILED": [],
            "PENDING": [],
            "SUCCEEDED": [],
        }
        self.written = 0  # children whose results were written (not PENDING)

    def add(self, child: ChildResult) -> None:
        """Write `child`'s record(s) to the file of its status."""
        if child.status == "SUCCEEDED":
            records = transform([child], self._transformation)
        else:
            records = [execution_record(child)]
        if child.status != "PENDING":
            self.written += 1
        for record in records:
            self._append(child.status, _json(record).encode())

    def _append(self, status: Status, text: bytes) -> None:
        writer = self._open.get(status)
        if writer is not None and writer.size + len(text) + 2 > _FILE_SIZE_LIMIT:
            self._close(status)
            writer = None
        if writer is None:
            number = len(self._listed[status])
            key = f"{self._folder}/{status}_{number}.json"
            writer = ObjectWriter(self._storage, self._bucket, key)
            self._open[status] = writer
            self._listed[status].append({"Key": key, "Size": 0})
            if not self._jsonl:
                writer.write(b"[")
        elif not self._jsonl:
            writer.write(b",")
        writer.write(text + b"\n" if self._jsonl else text)

    def _close(self, status: Status) -> None:
        writer = self._open.pop(status)
        if not self._jsonl:
            writer.write(b"]")
        self._listed[status][-1]["Size"] = writer.commit()

    def finish(self) -> dict[str, Any]:
        """Close the files, write ``manifest.json``; the Map's ``MapRunArn``/details result."""
        for status in list(self._open):
            self._close(status)
        manifest = {
            "DestinationBucket": self._bucket,
            "MapRunArn": self._map_run_arn,
            "ResultFiles": self._listed,
        }
        manifest_key = f"{self._folder}/manifest.json"
        self._storage.put(self._bucket, manifest_key, _json(manifest).encode())
        return {
            "MapRunArn": self._map_run_arn,
            "ResultWriterDetails": {"Bucket": self._bucket, "Key": manifest_key},
        }

    def discard(self) -> None:
        """Drop the files not yet finished (the write failed)."""
        for writer in self._open.values():
            writer.discard()
        self._open.clear()


def write_result_files(
    storage: LocalS3,
    *,
    bucket: Any,
    prefix: Any,
    map_run_arn: str,
    children: Iterable[ChildResult],
    transformation: str,
    output_type: str,
) -> dict[str, Any]:
    """Write the result files and their manifest; return the Map state's export result."""
    files = ResultFiles(
        storage,
        bucket=bucket,
        prefix=prefix,
        map_run_arn=map_run_arn,
        transformation=transformation,
        output_type=output_type,
    )
    try:
        for child in children:
            files.add(child)
        return files.finish()
    except BaseException:
        files.discard()
        raise
