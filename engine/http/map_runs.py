"""The Map Run operations: DescribeMapRun, ListMapRuns, UpdateMapRun, and a run's children.

Each reads or changes a Distributed Map's Map Run through the Engine's Map
Run calls (`engine.map_run_api`) and renders it in botocore's shapes: ARNs
in the server's region and account, timestamps as epoch seconds,
``itemCounts`` and ``executionCounts``. A Map Run ARN is
``…:mapRun:<machine>/<label>:<id>``; one the store does not know is
``ResourceNotFound``, and UpdateMapRun of an ended run is AWS's
``ValidationException`` (CANNOT_UPDATE_COMPLETED_MAP_RUN). `list_children`
serves ListExecutions with ``mapRunArn``.
"""

from __future__ import annotations

from typing import Any

from engine.arns import ParsedArn
from engine.http.protocol import AwsError, Members, epoch
from engine.http.service import Operation, Service, decode_token, encode_token
from engine.map_run_api import map_run_description
from engine.store import ResourceNotFound
from engine.store.map_runs import MapRunRecord, MapRunUpdateRefused

__all__ = ["OPERATIONS", "list_children"]


async def _record(service: Service, arn: ParsedArn) -> MapRunRecord:
    if arn.qualifier is None or "/" not in arn.resource:
        raise AwsError("ResourceNotFound", f"Resource not found: '{arn.resource}'")
    try:
        record: MapRunRecord = await service.run_db(service.engine.store.get_map_run, arn.qualifier)
    except ResourceNotFound:
        raise AwsError("ResourceNotFound", f"Map Run Does Not Exist: '{arn.qualifier}'") from None
    if not record.arn.endswith(f":mapRun:{arn.resource}:{arn.qualifier}"):
        raise AwsError("ResourceNotFound", f"Map Run Does Not Exist: '{arn.qualifier}'")
    return record


def _labelled(service: Service, record: MapRunRecord) -> str:
    return service.machine_arn(record.machine)


async def describe_map_run(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("mapRunArn", "mapRun")
    record = await _record(service, arn)
    store = service.engine.store
    items = await service.run_db(store.map_run_item_counts, record.map_run_id)
    redrive = await service.run_db(
        store.map_run_redrive_counts, record.map_run_id, now=service.engine.clock.now()
    )
    document = map_run_description(record, items, redrive)
    document["mapRunArn"] = service.arns.reformat(record.arn)
    document["executionArn"] = service.arns.reformat(record.execution_id)
    document["startDate"] = epoch(record.start_date)
    document["stopDate"] = epoch(record.stop_date)
    if record.redrive_date is not None:
        document["redriveDate"] = epoch(record.redrive_date)
    return document


async def list_map_runs(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("executionArn", "execution")
    page_size = members.max_results()
    token = members.next_token()
    records = await service.engine.list_map_runs(service.execution_id(arn))
    scope = f"maprun:{arn.resource}:{arn.qualifier}"
    position = decode_token(token, scope)
    page = records[position : position + page_size]
    document: dict[str, Any] = {
        "mapRuns": [
            {
                "executionArn": service.arns.reformat(record.execution_id),
                "mapRunArn": service.arns.reformat(record.arn),
                "stateMachineArn": _labelled(service, record),
                "startDate": epoch(record.start_date),
                "stopDate": epoch(record.stop_date),
            }
            for record in page
        ]
    }
    if position + page_size < len(records):
        document["nextToken"] = encode_token(scope, position + page_size)
    return document


async def update_map_run(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("mapRunArn", "mapRun")
    concurrency = members.integer("maxConcurrency", default=-1, minimum=0)
    count = members.integer("toleratedFailureCount", default=-1, minimum=0)
    percentage = members.number("toleratedFailurePercentage", minimum=0, maximum=100)
    record = await _record(service, arn)
    try:
        await service.engine.update_map_run(
            record.map_run_id,
            max_concurrency=None if concurrency < 0 else concurrency,
            tolerated_failure_percentage=percentage,
            tolerated_failure_count=None if count < 0 else count,
        )
    except MapRunUpdateRefused as refused:
        raise AwsError(
            "ValidationException", str(refused), reason="CANNOT_UPDATE_COMPLETED_MAP_RUN"
        ) from None
    return {}


async def list_children(
    service: Service, map_run_arn: ParsedArn, status: str | None, page_size: int, token: str | None
) -> dict[str, Any]:
    """ListExecutions with ``mapRunArn``: the run's started children, in item order."""
    record = await _record(service, map_run_arn)
    children = await service.engine.list_map_run_executions(record.map_run_id)
    if status is not None:
        children = [child for child in children if child.status == status]
    scope = f"children:{record.map_run_id}:{status}"
    position = decode_token(token, scope)
    page = children[position : position + page_size]
    document: dict[str, Any] = {
        "executions": [
            {
                "executionArn": service.execution_arn(child),
                "stateMachineArn": service.machine_arn(child.machine),
                "mapRunArn": service.arns.reformat(record.arn),
                "name": child.name,
                "status": child.status,
                "startDate": epoch(child.start_date),
                "stopDate": epoch(child.stop_date),
                "redriveCount": child.redrive_count,
            }
            for child in page
        ]
    }
    if position + page_size < len(children):
        document["nextToken"] = encode_token(scope, position + page_size)
    return document


OPERATIONS: dict[str, Operation] = {
    "DescribeMapRun": describe_map_run,
    "ListMapRuns": list_map_runs,
    "UpdateMapRun": update_map_run,
}
