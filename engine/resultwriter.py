"""Distributed Map's ResultWriter: the children's results as AWS's records and result files.

This module owns the shapes: a child's *execution record* (AWS's ``NONE``
transformation — ``ExecutionArn``, ``Input`` and ``Output`` as JSON strings,
``Status``, dates …; a failed child carries ``Error`` and ``Cause`` instead
of ``Output``), the ``COMPACT`` and ``FLATTEN`` transformations of
``WriterConfig`` (failed children always stay full records), and the files
written under ``PREFIX/<map run id>/`` on local S3 storage:
``SUCCEEDED_0.json``, ``FAILED_0.json``, ``PENDING_0.json`` (only those with
records; a JSON array, or one record per line for ``OutputType`` JSONL) and
``manifest.json`` listing them. `write_result_files` returns what the Map
state outputs when it exports: ``{"MapRunArn", "ResultWriterDetails":
{"Bucket", "Key"}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from engine.s3local import LocalS3

__all__ = ["ChildResult", "execution_record", "transform", "write_result_files"]

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


def _files(records: list[Any], output_type: str) -> list[bytes]:
    """`records` serialised, cut into files of at most 5 GB each."""
    files: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for record in records:
        text = _json(record).encode()
        if current and size + len(text) + 1 > _FILE_SIZE_LIMIT:
            files.append(_join(current, output_type))
            current, size = [], 0
        current.append(text)
        size += len(text) + 1
    if current:
        files.append(_join(current, output_type))
    return files


def _join(parts: list[bytes], output_type: str) -> bytes:
    if output_type == "JSONL":
        return b"".join(part + b"\n" for part in parts)
    return b"[" + b",".join(parts) + b"]"


def write_result_files(
    storage: LocalS3,
    *,
    bucket: Any,
    prefix: Any,
    map_run_arn: str,
    children: list[ChildResult],
    transformation: str,
    output_type: str,
) -> dict[str, Any]:
    """Write the result files and their manifest; return the Map state's export result."""
    run_id = map_run_arn.rsplit(":", 1)[-1]
    if not isinstance(prefix, str):
        prefix = ""
    folder = f"{prefix.rstrip('/')}/{run_id}" if prefix.strip("/") else run_id
    groups: dict[Status, list[Any]] = {"SUCCEEDED": [], "FAILED": [], "PENDING": []}
    for child in children:
        if child.status == "SUCCEEDED":
            groups["SUCCEEDED"].extend(transform([child], transformation))
        else:
            groups[child.status].append(execution_record(child))
    listed: dict[str, list[dict[str, Any]]] = {}
    order: tuple[Status, ...] = ("FAILED", "PENDING", "SUCCEEDED")
    for status in order:
        listed[status] = []
        for number, body in enumerate(_files(groups[status], output_type)):
            key = f"{folder}/{status}_{number}.json"
            listed[status].append({"Key": key, "Size": storage.put(bucket, key, body)})
    manifest = {"DestinationBucket": bucket, "MapRunArn": map_run_arn, "ResultFiles": listed}
    manifest_key = f"{folder}/manifest.json"
    storage.put(bucket, manifest_key, _json(manifest).encode())
    return {
        "MapRunArn": map_run_arn,
        "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key},
    }
