"""The version and alias operations of the HTTP API, translated into Engine calls.

PublishStateMachineVersion, ListStateMachineVersions and
DeleteStateMachineVersion; CreateStateMachineAlias, DescribeStateMachineAlias,
UpdateStateMachineAlias, ListStateMachineAliases and DeleteStateMachineAlias.
Versions are numbered per machine (``…:stateMachine:NAME:1``) and aliases
named (``…:stateMachine:NAME:ALIAS``); routing configurations name version
ARNs of the alias's own machine. What they mean lives in
`engine.store.versions`; errors come from the error tree (ResourceNotFound,
ConflictException, ValidationException for a bad routing configuration).
"""

from __future__ import annotations

from typing import Any

from engine.arns import InvalidArnText, parse_arn
from engine.http.protocol import AwsError, Members, epoch
from engine.http.service import Operation, Service
from engine.store import AliasRecord

__all__ = ["OPERATIONS"]


def _unqualified(members: Members, name: str = "stateMachineArn") -> str:
    arn = members.required_arn(name, "stateMachine")
    if arn.qualifier is not None or "/" in arn.resource:
        raise AwsError("ValidationException", f"'{name}' must be an unqualified state machine ARN")
    return arn.resource


def _version_arn(members: Members, name: str = "stateMachineVersionArn") -> tuple[str, int]:
    arn = members.required_arn(name, "stateMachine")
    if arn.version is None:
        raise AwsError("ValidationException", f"'{name}' must be a state machine version ARN")
    return arn.resource, arn.version


def _alias_arn(members: Members) -> tuple[str, str]:
    arn = members.required_arn("stateMachineAliasArn", "stateMachine")
    if arn.alias is None:
        raise AwsError("ValidationException", "'stateMachineAliasArn' must be an alias ARN")
    return arn.resource, arn.alias


def _routes(members: Members, machine: str | None) -> tuple[str | None, list[tuple[int, int]]]:
    """The routing configuration as (machine, [(version, weight)]); all of one machine."""
    raw = members.body.get("routingConfiguration")
    if not isinstance(raw, list) or not raw:
        raise AwsError(
            "ValidationException",
            "routingConfiguration must list 1 or 2 versions",
            reason="INVALID_ROUTING_CONFIGURATION",
        )
    routes = []
    for entry in raw:
        try:
            arn = parse_arn(str(entry["stateMachineVersionArn"]), kinds=("stateMachine",))
            weight = int(entry["weight"])
        except (KeyError, TypeError, ValueError, InvalidArnText):
            raise AwsError(
                "ValidationException",
                "each route needs a stateMachineVersionArn and a weight",
                reason="INVALID_ROUTING_CONFIGURATION",
            ) from None
        if arn.version is None or (machine is not None and arn.resource != machine):
            raise AwsError(
                "ValidationException",
                "routes must name versions of one state machine",
                reason="INVALID_ROUTING_CONFIGURATION",
            )
        machine = arn.resource
        routes.append((arn.version, weight))
    return machine, routes


def _alias_document(service: Service, alias: AliasRecord) -> dict[str, Any]:
    return {
        "stateMachineAliasArn": service.machine_arn(alias.machine, alias.name),
        "name": alias.name,
        "description": alias.description or "",
        "routingConfiguration": [
            {"stateMachineVersionArn": service.machine_arn(alias.machine, n), "weight": w}
            for n, w in alias.routes
        ],
        "creationDate": epoch(alias.created_at),
        "updateDate": epoch(alias.updated_at),
    }


async def publish_state_machine_version(service: Service, members: Members) -> dict[str, Any]:
    machine = _unqualified(members)
    revision = members.string("revisionId", min_length=1, max_length=256)
    description = members.string("description", max_length=256)
    if revision is not None:
        latest = await service.engine.describe_state_machine(machine)
        if revision != str(latest.version):
            raise AwsError(
                "ConflictException",
                f"Failed to publish the State Machine version for revision {revision}. "
                f"The current State Machine revision is {latest.version}.",
            )
    published = await service.engine.publish_version(machine, description=description)
    return {
        "creationDate": epoch(published.created_at),
        "stateMachineVersionArn": service.machine_arn(machine, published.number),
    }


async def list_state_machine_versions(service: Service, members: Members) -> dict[str, Any]:
    machine = _unqualified(members)
    members.max_results()
    members.next_token()
    versions = await service.engine.list_versions(machine)
    return {
        "stateMachineVersions": [
            {
                "stateMachineVersionArn": service.machine_arn(machine, v.number),
                "creationDate": epoch(v.created_at),
            }
            for v in versions
        ]
    }


async def delete_state_machine_version(service: Service, members: Members) -> dict[str, Any]:
    machine, number = _version_arn(members)
    await service.engine.delete_version(machine, number)
    return {}


async def create_state_machine_alias(service: Service, members: Members) -> dict[str, Any]:
    name = members.required_string("name", min_length=1, max_length=80)
    description = members.string("description", max_length=256)
    machine, routes = _routes(members, None)
    assert machine is not None
    alias = await service.engine.create_alias(machine, name, routes, description=description)
    return {
        "stateMachineAliasArn": service.machine_arn(machine, alias.name),
        "creationDate": epoch(alias.created_at),
    }


async def describe_state_machine_alias(service: Service, members: Members) -> dict[str, Any]:
    machine, name = _alias_arn(members)
    return _alias_document(service, await service.engine.describe_alias(machine, name))


async def update_state_machine_alias(service: Service, members: Members) -> dict[str, Any]:
    machine, name = _alias_arn(members)
    description = members.string("description", max_length=256)
    routes = None
    if members.body.get("routingConfiguration") is not None:
        _machine, routes = _routes(members, machine)
    if routes is None and description is None:
        raise AwsError(
            "ValidationException",
            "Either the description or the RoutingConfiguration must be specified",
        )
    alias = await service.engine.update_alias(machine, name, routes=routes, description=description)
    return {"updateDate": epoch(alias.updated_at)}


async def delete_state_machine_alias(service: Service, members: Members) -> dict[str, Any]:
    machine, name = _alias_arn(members)
    await service.engine.delete_alias(machine, name)
    return {}


async def list_state_machine_aliases(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("stateMachineArn", "stateMachine")
    members.max_results()
    members.next_token()
    aliases = await service.engine.list_aliases(arn.resource)
    if arn.version is not None:  # given a version ARN: the aliases routing to it
        aliases = [a for a in aliases if any(n == arn.version for n, _ in a.routes)]
    return {
        "stateMachineAliases": [
            {
                "stateMachineAliasArn": service.machine_arn(a.machine, a.name),
                "creationDate": epoch(a.created_at),
            }
            for a in aliases
        ]
    }


OPERATIONS: dict[str, Operation] = {
    "PublishStateMachineVersion": publish_state_machine_version,
    "ListStateMachineVersions": list_state_machine_versions,
    "DeleteStateMachineVersion": delete_state_machine_version,
    "CreateStateMachineAlias": create_state_machine_alias,
    "DescribeStateMachineAlias": describe_state_machine_alias,
    "UpdateStateMachineAlias": update_state_machine_alias,
    "DeleteStateMachineAlias": delete_state_machine_alias,
    "ListStateMachineAliases": list_state_machine_aliases,
}
