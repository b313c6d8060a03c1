"""AWS-shaped rendering of what the store records: history events, executions and machines.

The store keeps events and records in Stepwise's own Structs; the CLI (and
anyone scripting against it) wants them the way the Step Functions API
returns them — camelCase keys, `GetExecutionHistory`'s per-type details key
(``taskSucceededEventDetails`` …), `DescribeExecution`'s fields, ISO 8601
timestamps with milliseconds and offset — so jq scripts written for the AWS
CLI carry over; Stepwise's own fields (an execution's ``queue``) are added
beside AWS's, never in their place. This module owns those shapes and nothing else: pure
functions from records to JSON-ready dicts.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from engine.runner import machine_arn
from engine.store import Event, ExecutionRecord, MachineVersion

__all__ = [
    "details_key",
    "event_summary",
    "event_to_aws",
    "execution_list_item",
    "execution_to_aws",
    "history_to_aws",
    "iso_timestamp",
    "machine_list_item",
    "machine_to_aws",
]

# Every state type's entered/exited events share one details key on AWS
# (`TaskStateEntered` → `stateEnteredEventDetails`); everything else is the
# event type in lowerCamelCase plus "EventDetails".
_STATE_EVENT = re.compile(r"^[A-Z][A-Za-z]*State(Entered|Exited)$")


def iso_timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 with milliseconds and the UTC offset (``2024-05-01T12:00:00.123+00:00``)."""
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds")


def details_key(event_type: str) -> str:
    """The key AWS's GetExecutionHistory puts an event's details under.

    ``TaskStateEntered`` → ``stateEnteredEventDetails``,
    ``MapIterationFailed`` → ``mapIterationFailedEventDetails``,
    ``ExecutionStarted`` → ``executionStartedEventDetails``.
    """
    matched = _STATE_EVENT.match(event_type)
    if matched:
        return f"state{matched.group(1)}EventDetails"
    return f"{event_type[:1].lower()}{event_type[1:]}EventDetails"


def _aws_details(details: dict[str, Any]) -> dict[str, Any]:
    # AWS always says whether a payload was truncated right after it.
    shaped: dict[str, Any] = {}
    for key, value in details.items():
        shaped[key] = value
        if key in ("input", "output") and f"{key}Details" not in details:
            shaped[f"{key}Details"] = {"truncated": False}
    return shaped


def event_to_aws(event: Event) -> dict[str, Any]:
    """One history event as GetExecutionHistory returns it; empty details get no key."""
    shaped: dict[str, Any] = {
        "timestamp": iso_timestamp(event.timestamp),
        "type": event.type,
        "id": event.event_id,
        "previousEventId": event.previous_event_id,
    }
    if event.details:
        shaped[details_key(event.type)] = _aws_details(event.details)
    return shaped


def history_to_aws(events: list[Event], *, reverse: bool = False) -> dict[str, Any]:
    """``{"events": [...]}`` in event-id order (newest first with `reverse`)."""
    ordered = list(reversed(events)) if reverse else list(events)
    return {"events": [event_to_aws(event) for event in ordered]}


def event_summary(event: Event) -> str:
    """A short text for people: the state name, resource, or error and cause of an event."""
    details = event.details
    parts: list[str] = []
    for key in ("name", "resource", "error", "cause"):
        value = details.get(key)
        if isinstance(value, str) and value:
            parts.append(value if key == "name" else f"{key}={value}")
    if "index" in details:
        parts.append(f"index={details['index']}")
    if not parts and event.type == "ExecutionStarted":
        parts.append(f"input={details.get('input', '')}")
    if not parts and event.type == "ExecutionSucceeded":
        parts.append(f"output={details.get('output', '')}")
    text = " ".join(parts)
    return text if len(text) <= 120 else text[:117] + "..."


def _json_value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def execution_to_aws(record: ExecutionRecord) -> dict[str, Any]:
    """DescribeExecution's shape; input/output as JSON values, absent fields null.

    ``queue`` is a Stepwise extension (AWS has no queues): the queue whose
    workers may run the execution.
    """
    return {
        "executionArn": record.execution_id,
        "name": record.name,
        "stateMachineArn": machine_arn(record.machine),
        "stateMachine": record.machine,
        "status": record.status,
        "startDate": iso_timestamp(record.start_date),
        "stopDate": iso_timestamp(record.stop_date),
        "input": _json_value(record.input),
        "output": _json_value(record.output),
        "error": record.error,
        "cause": record.cause,
        "queue": record.queue,
    }


def execution_list_item(record: ExecutionRecord) -> dict[str, Any]:
    """One entry of ListExecutions' ``executions``."""
    return {
        "executionArn": record.execution_id,
        "name": record.name,
        "stateMachineArn": machine_arn(record.machine),
        "status": record.status,
        "startDate": iso_timestamp(record.start_date),
        "stopDate": iso_timestamp(record.stop_date),
        "redriveCount": record.redrive_count,
    }


def machine_list_item(machine: MachineVersion) -> dict[str, Any]:
    """One entry of ListStateMachines' ``stateMachines`` (with Stepwise's version number)."""
    return {
        "stateMachineArn": machine_arn(machine.name),
        "name": machine.name,
        "type": machine.machine_type,
        "version": machine.version,
        "creationDate": iso_timestamp(machine.created_at),
    }


def machine_to_aws(machine: MachineVersion) -> dict[str, Any]:
    """DescribeStateMachine's shape: the definition as JSON text, status ACTIVE."""
    return {
        "stateMachineArn": machine_arn(machine.name),
        "name": machine.name,
        "type": machine.machine_type,
        "version": machine.version,
        "definition": machine.definition,
        "creationDate": iso_timestamp(machine.created_at),
        "status": "ACTIVE",
    }
