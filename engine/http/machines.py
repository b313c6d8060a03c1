"""The state machine operations: create, describe, list, update, and validate a definition.

A definition is checked with Stepwise's local rules (`local_diagnostics`:
AWS's rules, plus plain Resource names bound to registered handlers) before
it is stored, and refused as ``InvalidDefinition`` with every error in the
message. The engine keeps every changed definition as a new version of the
machine; as on AWS, CreateStateMachine with an existing name answers the
machine when the definition and type are the same and
``StateMachineAlreadyExists`` when they differ, and UpdateStateMachine
makes the new revision; with ``publish`` either also publishes it as the
next version. DeleteStateMachine marks the machine DELETING (its versions
and aliases go with it): running executions finish, StartExecution answers
``StateMachineDeleting``, and once none runs the machine is gone; deleting
an unknown machine succeeds, as on AWS. The version and alias operations
are in `engine.http.versions` (merged into OPERATIONS here).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.http import versions
from engine.http.protocol import AwsError, Members, epoch
from engine.http.service import Operation, Service, decode_token, encode_token
from engine.http.tags import keep_tags, read_tags
from engine.http.teststate import MACHINE_PREFIX
from engine.http.validation import check_role_arn
from engine.names import check_name
from engine.store import MachineVersion, StateMachineDoesNotExist
from statemachine.build import local_diagnostics
from statemachine.diagnostics import Diagnostic
from statemachine.validate import is_valid, validate_text

__all__ = ["MAX_DEFINITION_CHARS", "OPERATIONS"]

# CreateStateMachine's `definition` limit (the model's Definition shape).
MAX_DEFINITION_CHARS = 1_048_576
_TYPES = ["STANDARD", "EXPRESS"]


def _diagnostics(text: str, machine_type: str) -> tuple[Any, list[Diagnostic]]:
    """The parsed definition (None when not JSON) and what the local rules say of it."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return None, validate_text(text, machine_type=machine_type)  # type: ignore[arg-type]
    return raw, local_diagnostics(raw, machine_type=machine_type)  # type: ignore[arg-type]


def _invalid(diagnostics: Sequence[Diagnostic]) -> AwsError:
    errors = [d for d in diagnostics if d.severity == "ERROR"]
    text = "; ".join(f"{d.code}: {d.message} at {d.location or '/'}" for d in errors[:10])
    more = f" (+{len(errors) - 10} more)" if len(errors) > 10 else ""
    return AwsError("InvalidDefinition", f"Invalid State Machine Definition: '{text}{more}'")


def _checked_definition(members: Members, machine_type: str, *, required: bool) -> Any:
    text = members.string("definition", required=required, min_length=1)
    if text is None:
        return None
    if len(text) > MAX_DEFINITION_CHARS:
        raise AwsError(
            "ValidationException",
            "1 validation error detected: Value at 'definition' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_DEFINITION_CHARS}",
        )
    raw, diagnostics = _diagnostics(text, machine_type)
    if not is_valid(diagnostics):
        raise _invalid(diagnostics)
    return raw


def _configuration(members: Members) -> None:
    """Check the members Stepwise accepts and does not act on (logging, tracing, encryption)."""
    for name in ("loggingConfiguration", "tracingConfiguration", "encryptionConfiguration"):
        value = members.body.get(name)
        if value is not None and not isinstance(value, dict):
            raise AwsError("SerializationException", f"'{name}' must be an object")


def _version_description(members: Members, publish: bool) -> None:
    description = members.string("versionDescription", max_length=256)
    if description is not None and not publish:
        raise AwsError(
            "ValidationException", "Version description can only be set when publish is true"
        )


async def create_state_machine(service: Service, members: Members) -> dict[str, Any]:
    name = members.required_string("name", min_length=1)
    check_name(name, what="state machine")
    check_role_arn(members.required_string("roleArn", min_length=1, max_length=256))
    machine_type = members.string("type", default="STANDARD", choices=_TYPES) or "STANDARD"
    publish = members.boolean("publish", default=False)
    _version_description(members, publish)
    _configuration(members)
    tags = read_tags(members, service.machine_arn(name))
    raw = _checked_definition(members, machine_type, required=True)
    try:
        existing: MachineVersion | None = await service.engine.describe_state_machine(name)
    except StateMachineDoesNotExist:
        existing = None
    if existing is not None and (
        existing.machine_type != machine_type or json.loads(existing.definition) != raw
    ):
        raise AwsError(
            "StateMachineAlreadyExists",
            f"State Machine Already Exists: '{service.machine_arn(name)}'",
        )
    if existing is None:
        version = await service.engine.create_state_machine(name, raw, machine_type=machine_type)
        # AWS: a repeated create is idempotent and ignores a different roleArn or tags.
        await keep_tags(service, service.machine_arn(name), tags)
    else:
        version = existing
    document: dict[str, Any] = {
        "stateMachineArn": service.machine_arn(name),
        "creationDate": epoch(version.created_at),
    }
    if publish:
        published = await service.engine.publish_version(
            name, description=members.string("versionDescription"), revision=version.version
        )
        document["stateMachineVersionArn"] = service.machine_arn(name, published.number)
    return document


async def _version(service: Service, members: Members, *, labelled: bool) -> MachineVersion:
    arn = members.required_arn("stateMachineArn", "stateMachine")
    service.machine_reference(arn, labelled=labelled)
    if arn.alias is not None or "/" in arn.resource:
        raise AwsError(
            "StateMachineDoesNotExist",
            f"State Machine Does Not Exist: '{service.machine_arn(arn.resource, arn.qualifier)}'",
        )
    revision = None
    if arn.version is not None:
        published = await service.run_db(
            service.engine.store.get_version, arn.resource, arn.version
        )
        revision = published.revision
    version: MachineVersion = await service.run_db(
        service.engine.store.get_state_machine, arn.resource, revision
    )
    return version


def _describe(
    service: Service, version: MachineVersion, *, qualifier: int | None, status: str = "ACTIVE"
) -> dict[str, Any]:
    return {
        "stateMachineArn": service.machine_arn(version.name, qualifier),
        "name": version.name,
        "status": status,
        "definition": version.definition,
        "roleArn": service.arns.role,
        "type": version.machine_type,
        "creationDate": epoch(version.created_at),
        "revisionId": str(version.version),
        "loggingConfiguration": {"level": "OFF", "includeExecutionData": False},
        "tracingConfiguration": {"enabled": False},
    }


async def describe_state_machine(service: Service, members: Members) -> dict[str, Any]:
    members.string("includedData", choices=["ALL_DATA", "METADATA_ONLY"])
    arn = members.required_arn("stateMachineArn", "stateMachine")
    version = await _version(service, members, labelled=True)
    status = await service.run_db(service.engine.store.state_machine_status, version.name)
    return _describe(service, version, qualifier=arn.version, status=status)


async def delete_state_machine(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("stateMachineArn", "stateMachine")
    if arn.qualifier is not None or "/" in arn.resource:
        raise AwsError(
            "ValidationException", "Only an unqualified state machine ARN can be deleted"
        )
    service.machine_reference(arn)
    await service.engine.delete_state_machine(arn.resource)
    return {}


async def list_state_machines(service: Service, members: Members) -> dict[str, Any]:
    page_size = members.max_results()
    position = decode_token(members.next_token(), "machines")
    machines = [
        machine
        for machine in await service.engine.list_state_machines()
        if not machine.name.startswith(MACHINE_PREFIX)
    ]
    page = machines[position : position + page_size]
    document: dict[str, Any] = {
        "stateMachines": [
            {
                "stateMachineArn": service.machine_arn(machine.name),
                "name": machine.name,
                "type": machine.machine_type,
                "creationDate": epoch(machine.created_at),
            }
            for machine in page
        ]
    }
    if position + page_size < len(machines):
        document["nextToken"] = encode_token("machines", position + page_size)
    return document


async def update_state_machine(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("stateMachineArn", "stateMachine")
    if arn.qualifier is not None:
        raise AwsError(
            "ValidationException", "Only an unqualified state machine ARN can be updated"
        )
    service.machine_reference(arn)
    role = members.string("roleArn", min_length=1, max_length=256)
    check_role_arn(role)
    current = await service.engine.describe_state_machine(arn.resource)
    publish = members.boolean("publish", default=False)
    _version_description(members, publish)
    _configuration(members)
    raw = _checked_definition(members, current.machine_type, required=False)
    if (
        raw is None
        and role is None
        and not any(
            members.body.get(name) is not None
            for name in ("loggingConfiguration", "tracingConfiguration", "encryptionConfiguration")
        )
    ):
        raise AwsError(
            "MissingRequiredParameter",
            "Either the definition, the role ARN, the LoggingConfiguration, "
            "the EncryptionConfiguration or the TracingConfiguration must be specified",
        )
    version = current
    if raw is not None:
        version = await service.engine.create_state_machine(
            arn.resource, raw, machine_type=current.machine_type
        )
    document: dict[str, Any] = {
        "updateDate": epoch(version.created_at),
        "revisionId": str(version.version),
    }
    if publish:
        published = await service.engine.publish_version(
            arn.resource,
            description=members.string("versionDescription"),
            revision=version.version,
        )
        document["stateMachineVersionArn"] = service.machine_arn(arn.resource, published.number)
    return document


async def validate_state_machine_definition(service: Service, members: Members) -> dict[str, Any]:
    text = members.required_string("definition", min_length=1, max_length=MAX_DEFINITION_CHARS)
    machine_type = members.string("type", default="STANDARD", choices=_TYPES) or "STANDARD"
    severity = members.string("severity", default="ERROR", choices=["ERROR", "WARNING"])
    limit = members.integer("maxResults", default=0, minimum=0, maximum=100) or 100
    _raw, diagnostics = _diagnostics(text, machine_type)
    shown = [d for d in diagnostics if severity == "WARNING" or d.severity == "ERROR"]
    return {
        "result": "OK" if is_valid(diagnostics) else "FAIL",
        "diagnostics": [
            {
                "severity": d.severity,
                "code": d.code,
                "message": d.message,
                "location": d.location or "/",
            }
            for d in shown[:limit]
        ],
        "truncated": len(shown) > limit,
    }


OPERATIONS: dict[str, Operation] = {
    "CreateStateMachine": create_state_machine,
    "DescribeStateMachine": describe_state_machine,
    "ListStateMachines": list_state_machines,
    "UpdateStateMachine": update_state_machine,
    "ValidateStateMachineDefinition": validate_state_machine_definition,
    "DeleteStateMachine": delete_state_machine,
    **versions.OPERATIONS,
}
