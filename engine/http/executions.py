"""The executions operations: start (and start-and-wait), describe, history, list, stop.

Each translates a request into a call of the engine's one lifecycle
(`engine.lifecycle.Lifecycle`) and renders the record it returns in the
shape botocore's service model gives the operation's output: ARNs in the
server's region and account, timestamps as epoch seconds, input and output
as JSON text. History events are `engine.history`'s AWS-shaped events,
paged here with opaque tokens.
"""

from __future__ import annotations

import json
from typing import Any

from engine.history import event_to_aws
from engine.http.map_runs import list_children
from engine.http.protocol import AwsError, Members, epoch
from engine.http.service import Operation, Service, decode_token, encode_token
from engine.lifecycle import InvalidNextToken
from engine.store import Event, ExecutionRecord, ExecutionStatus, MachineType
from engine.store.map_run_hook import is_child

__all__ = ["OPERATIONS"]

_STATUSES = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"]
_CLOSED = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def _input_value(text: str | None) -> Any:
    """StartExecution's `input` (JSON text) as a value; InvalidExecutionInput when not JSON."""
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise AwsError(
            "InvalidExecutionInput", f"Invalid State Machine Execution Input: '{exc}'"
        ) from None


async def _start(service: Service, members: Members) -> ExecutionRecord:
    arn = members.required_arn("stateMachineArn", "stateMachine")
    reference = service.machine_reference(arn)
    name = members.string("name", min_length=1)
    text = members.string("input")
    members.string("traceHeader", max_length=256)
    return await service.engine.lifecycle.start(reference, _input_value(text), name=name)


async def start_execution(service: Service, members: Members) -> dict[str, Any]:
    record = await _start(service, members)
    return {"executionArn": service.execution_arn(record), "startDate": epoch(record.start_date)}


async def start_sync_execution(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("stateMachineArn", "stateMachine")
    version = await service.engine.lifecycle.resolve_machine(service.machine_reference(arn))
    if version.machine_type != MachineType.EXPRESS:
        raise AwsError(
            "StateMachineTypeNotSupported",
            "This operation is not supported by this type of state machine",
        )
    members.string("includedData", choices=["ALL_DATA", "METADATA_ONLY"])
    record = await _start(service, members)
    try:
        record = await service.engine.wait(record, timeout=service.sync_timeout_seconds)
    except TimeoutError:
        record = await service.engine.stop(
            record, error="States.Timeout", cause="StartSyncExecution waited too long"
        )
    document = _execution(service, record, include_data=True)
    status = record.status if record.status in ("SUCCEEDED", "FAILED") else "TIMED_OUT"
    document.update(
        status=status,
        billingDetails={"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": 100},
    )
    for key in ("redriveCount", "redriveStatus", "redriveStatusReason"):
        document.pop(key, None)
    return document


def _execution(
    service: Service,
    record: ExecutionRecord,
    *,
    include_data: bool,
    redrive: tuple[str, str | None] = ("NOT_REDRIVABLE", None),
) -> dict[str, Any]:
    """DescribeExecution's output for `record` (`redrive`: its status and reason)."""
    redrive_status, redrive_reason = redrive
    document: dict[str, Any] = {
        "executionArn": service.execution_arn(record),
        "stateMachineArn": service.machine_arn(record.machine),
        "name": record.name,
        "status": record.status,
        "startDate": epoch(record.start_date),
        "stopDate": epoch(record.stop_date),
        "inputDetails": {"included": include_data},
        "error": record.error,
        "cause": record.cause,
        "redriveCount": record.redrive_count,
        "redriveStatus": redrive_status,
    }
    if redrive_reason is not None:
        document["redriveStatusReason"] = redrive_reason
    if record.redrive_date is not None:
        document["redriveDate"] = epoch(record.redrive_date)
    if record.published_version is not None:
        document["stateMachineVersionArn"] = service.machine_arn(
            record.machine, record.published_version
        )
    if record.alias is not None:
        document["stateMachineAliasArn"] = service.machine_arn(record.machine, record.alias)
    if include_data:
        document["input"] = record.input
    if record.status == ExecutionStatus.SUCCEEDED:
        document["outputDetails"] = {"included": include_data}
        if include_data:
            document["output"] = record.output
    return document


async def _record(service: Service, members: Members) -> ExecutionRecord:
    arn = members.required_arn("executionArn", "execution", "express")
    return await service.engine.lifecycle.describe(service.execution_id(arn))


async def describe_execution(service: Service, members: Members) -> dict[str, Any]:
    included = members.string("includedData", choices=["ALL_DATA", "METADATA_ONLY"])
    (record,) = await service.engine.with_pending_redrive([await _record(service, members)])
    redrive = await service.engine.lifecycle.redrive_status(record)
    document = _execution(
        service, record, include_data=included != "METADATA_ONLY", redrive=redrive
    )
    if is_child(record.execution_id):
        map_run = await service.run_db(service.engine.store.map_run_of_child, record.execution_id)
        if map_run is not None:
            document["mapRunArn"] = service.arns.reformat(map_run)
    return document


async def describe_state_machine_for_execution(
    service: Service, members: Members
) -> dict[str, Any]:
    record = await _record(service, members)
    version = await service.run_db(
        service.engine.store.get_state_machine, record.machine, record.version
    )
    return {
        "stateMachineArn": service.machine_arn(record.machine),
        "name": record.machine,
        "definition": version.definition,
        "roleArn": service.arns.role,
        "updateDate": epoch(version.created_at),
        "revisionId": str(version.version),
        "loggingConfiguration": {"level": "OFF", "includeExecutionData": False},
        "tracingConfiguration": {"enabled": False},
    }


def _event(service: Service, event: Event, *, include_data: bool) -> dict[str, Any]:
    shaped = event_to_aws(event)
    shaped["timestamp"] = epoch(event.timestamp)
    for key, details in shaped.items():
        if not key.endswith("EventDetails") or not isinstance(details, dict):
            continue
        for arn_key in ("stateMachineVersionArn", "stateMachineAliasArn", "mapRunArn"):
            if isinstance(details.get(arn_key), str):
                details[arn_key] = service.arns.reformat(details[arn_key])
        if not include_data:
            for data_key in ("input", "output", "parameters"):
                if data_key in details:
                    del details[data_key]
                    details.pop(f"{data_key}Details", None)
    return shaped


async def get_execution_history(service: Service, members: Members) -> dict[str, Any]:
    page_size = members.max_results()
    reverse = members.boolean("reverseOrder", default=False)
    include_data = members.boolean("includeExecutionData", default=True)
    token = members.next_token()
    record = await _record(service, members)
    scope = f"history:{record.execution_id}:{'r' if reverse else 'f'}"
    position = decode_token(token, scope)
    events = await service.engine.lifecycle.history(record)
    if reverse:
        events.reverse()
    page = events[position : position + page_size]
    document: dict[str, Any] = {
        "events": [_event(service, event, include_data=include_data) for event in page]
    }
    if position + page_size < len(events):
        document["nextToken"] = encode_token(scope, position + page_size)
    return document


async def list_executions(service: Service, members: Members) -> dict[str, Any]:
    machine_arn = members.arn("stateMachineArn", "stateMachine", required=False)
    map_run_arn = members.arn("mapRunArn", "mapRun", required=False)
    status = members.string("statusFilter", choices=_STATUSES)
    page_size = members.max_results()
    next_token = members.next_token(max_length=3096)
    redrive = members.string("redriveFilter", choices=["REDRIVEN", "NOT_REDRIVEN"])
    if (machine_arn is None) == (map_run_arn is None):
        raise AwsError(
            "ValidationException", "Must provide a StateMachine ARN or MapRun ARN, not both"
        )
    if status == "PENDING_REDRIVE" and map_run_arn is None:
        raise AwsError(
            "ValidationException", "The PENDING_REDRIVE status filter requires a Map Run ARN"
        )
    if map_run_arn is not None:  # a Map Run's children (engine/http/map_runs.py)
        return await list_children(service, map_run_arn, status, page_size, next_token)
    assert machine_arn is not None
    reference = service.machine_reference(machine_arn)
    if status == "PENDING_REDRIVE":
        # Only Map Run children wait to be redriven; the machine must exist all the same.
        await service.engine.lifecycle.resolve_machine(reference)
        return {"executions": []}
    try:
        records, token = await service.engine.lifecycle.list_executions(
            machine=reference,
            status=status,
            max_results=page_size,
            next_token=next_token,
            redrive_filter=redrive,
        )
    except InvalidNextToken as exc:
        raise AwsError("InvalidToken", str(exc)) from None
    document: dict[str, Any] = {
        "executions": [
            {
                "executionArn": service.execution_arn(record),
                "stateMachineArn": service.machine_arn(record.machine),
                "name": record.name,
                "status": record.status,
                "startDate": epoch(record.start_date),
                "stopDate": epoch(record.stop_date),
                "redriveCount": record.redrive_count,
                **(
                    {"redriveDate": epoch(record.redrive_date)}
                    if record.redrive_date is not None
                    else {}
                ),
            }
            for record in records
        ]
    }
    if token is not None:
        document["nextToken"] = token
    return document


async def stop_execution(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("executionArn", "execution", "express")
    error = members.string("error", max_length=256)
    cause = members.string("cause", max_length=32768)
    execution_id = service.execution_id(arn)
    record = await service.engine.stop(execution_id, error=error, cause=cause)
    return {"stopDate": epoch(record.stop_date)}


async def redrive_execution(service: Service, members: Members) -> dict[str, Any]:
    record = await _record(service, members)
    token = members.string("clientToken", min_length=1, max_length=64)
    redriven = await service.engine.lifecycle.redrive(record, client_token=token)
    return {"redriveDate": epoch(redriven.redrive_date)}


OPERATIONS: dict[str, Operation] = {
    "StartExecution": start_execution,
    "StartSyncExecution": start_sync_execution,
    "DescribeExecution": describe_execution,
    "DescribeStateMachineForExecution": describe_state_machine_for_execution,
    "GetExecutionHistory": get_execution_history,
    "ListExecutions": list_executions,
    "StopExecution": stop_execution,
    "RedriveExecution": redrive_execution,
}
