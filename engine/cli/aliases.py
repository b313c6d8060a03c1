"""`stepwise aliases create|update|describe|list|delete`: aliases of state machines.

An alias routes the executions started through it (``stepwise start
NAME:ALIAS``) to one or two published versions, by weight: ``--route
VERSION=WEIGHT`` once or twice, the weights summing to 100. Each start
picks a version at random in proportion to the weights and records the
pick. JSON output is AWS-shaped (CreateStateMachineAlias,
DescribeStateMachineAlias, ListStateMachineAliases).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from engine.cli.core import StepwiseGroup, global_options, json_output, with_client
from engine.cli.output import emit_json, print_table

if TYPE_CHECKING:
    from engine.store import AliasRecord

__all__ = ["aliases"]


def _routes(values: tuple[str, ...]) -> list[tuple[int, int]] | None:
    if not values:
        return None
    routes = []
    for value in values:
        version, sep, weight = value.partition("=")
        if not sep or not version.isdigit() or not weight.isdigit():
            raise click.BadParameter(f"{value!r} is not VERSION=WEIGHT", param_hint="--route")
        routes.append((int(version), int(weight)))
    return routes


def _document(alias: AliasRecord) -> dict[str, Any]:
    from engine.history import iso_timestamp
    from engine.runner import machine_arn

    return {
        "stateMachineAliasArn": machine_arn(f"{alias.machine}:{alias.name}"),
        "name": alias.name,
        "description": alias.description,
        "routingConfiguration": [
            {"stateMachineVersionArn": machine_arn(f"{alias.machine}:{n}"), "weight": w}
            for n, w in alias.routes
        ],
        "creationDate": iso_timestamp(alias.created_at),
        "updateDate": iso_timestamp(alias.updated_at),
    }


machine_option = click.option(
    "--machine", metavar="NAME", required=True, help="The state machine the alias belongs to."
)
route_option = click.option(
    "--route", "route", multiple=True, metavar="VERSION=WEIGHT", help="A version and its weight."
)
description_option = click.option("--description", metavar="D", default=None)


@click.group("aliases", cls=StepwiseGroup)
@global_options
def aliases() -> None:
    """Create, update, describe, list and delete aliases of state machines."""


@aliases.command("create")
@click.argument("alias")
@machine_option
@route_option
@description_option
@global_options
def aliases_create(
    alias: str, machine: str, route: tuple[str, ...], description: str | None
) -> None:
    """Create ALIAS of --machine routing to one or two versions (weights summing to 100)."""
    routes = _routes(route)
    if routes is None:
        raise click.UsageError("give --route VERSION=WEIGHT once or twice")
    made = with_client(
        lambda engine: engine.create_alias(machine, alias, routes, description=description)
    )
    document = _document(made)
    if json_output():
        emit_json(
            {
                "stateMachineAliasArn": document["stateMachineAliasArn"],
                "creationDate": document["creationDate"],
            }
        )
    else:
        click.echo(document["stateMachineAliasArn"])


@aliases.command("update")
@click.argument("alias")
@machine_option
@route_option
@description_option
@global_options
def aliases_update(
    alias: str, machine: str, route: tuple[str, ...], description: str | None
) -> None:
    """Change ALIAS's routes and/or description; executions already started keep their version."""
    routes = _routes(route)
    if routes is None and description is None:
        raise click.UsageError("give --route or --description")
    changed = with_client(
        lambda engine: engine.update_alias(machine, alias, routes=routes, description=description)
    )
    if json_output():
        emit_json({"updateDate": _document(changed)["updateDate"]})
    else:
        click.echo(f"updated {machine}:{alias}")


@aliases.command("describe")
@click.argument("alias")
@machine_option
@global_options
def aliases_describe(alias: str, machine: str) -> None:
    """Describe ALIAS of --machine."""
    document = _document(with_client(lambda engine: engine.describe_alias(machine, alias)))
    if json_output():
        emit_json(document)
        return
    for key in ("stateMachineAliasArn", "name", "description", "creationDate", "updateDate"):
        if document[key] is not None:
            click.echo(f"{key}: {document[key]}")
    for entry in document["routingConfiguration"]:
        click.echo(f"route: {entry['stateMachineVersionArn']} weight {entry['weight']}")


@aliases.command("list")
@machine_option
@global_options
def aliases_list(machine: str) -> None:
    """List the aliases of --machine, newest first."""
    found = with_client(lambda engine: engine.list_aliases(machine))
    documents = [_document(alias) for alias in found]
    if json_output():
        emit_json(
            {
                "stateMachineAliases": [
                    {
                        "stateMachineAliasArn": d["stateMachineAliasArn"],
                        "creationDate": d["creationDate"],
                    }
                    for d in documents
                ]
            }
        )
        return
    print_table(
        ["ALIAS", "ROUTES", "CREATED"],
        [
            [a.name, ", ".join(f"{n}={w}" for n, w in a.routes), d["creationDate"]]
            for a, d in zip(found, documents, strict=True)
        ],
    )


@aliases.command("delete")
@click.argument("alias")
@machine_option
@global_options
def aliases_delete(alias: str, machine: str) -> None:
    """Delete ALIAS of --machine (its versions stay)."""
    with_client(lambda engine: engine.delete_alias(machine, alias))
    if json_output():
        emit_json({})
    else:
        click.echo(f"deleted {machine}:{alias}")
