"""`stepwise machines create|update|publish|versions|delete|list|describe`: state machines.

A changed definition given to ``create`` or ``update`` becomes a new
revision (running executions keep theirs); ``publish`` snapshots the latest
revision as version 1, 2, … (``update --publish`` does both); ``versions``
lists the published versions, newest first; ``delete --version N`` deletes
one (refused with ConflictException while an alias routes to it), ``delete``
without it the whole machine with its versions and aliases (DELETING until
its running executions end; new starts are refused). ``list``
shows the latest revision of each machine; ``describe`` prints one with its
definition (``NAME``, ``NAME:VERSION`` or ``NAME:ALIAS``). JSON output is
AWS-shaped (see `engine.history`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from engine.cli.core import (
    StepwiseGroup,
    check_definition,
    global_options,
    json_output,
    load_definition_file,
    machine_type_of,
    with_client,
)
from engine.cli.definitions import MACHINE_TYPES, pretty
from engine.cli.output import emit_json, parse_json_text, print_table

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.store import MachineVersion

__all__ = ["machines"]

description_option = click.option(
    "--description", metavar="D", default=None, help="The published version's description."
)


@click.group("machines", cls=StepwiseGroup)
@global_options
def machines() -> None:
    """Create, list and describe state machines."""


@machines.command("create")
@click.argument("name")
@click.argument("file")
@click.option("--type", "machine_type", type=MACHINE_TYPES, default="standard", show_default=True)
@global_options
def machines_create(name: str, file: str, machine_type: str) -> None:
    """Create state machine NAME from FILE; a changed definition becomes a new version."""
    from engine.history import iso_timestamp
    from engine.runner import machine_arn

    kind = machine_type_of(machine_type)
    _text, raw = load_definition_file(file)
    check_definition(file, raw, kind)

    version = with_client(lambda engine: engine.create_state_machine(name, raw, machine_type=kind))
    result = {
        "stateMachineArn": machine_arn(version.name),
        "name": version.name,
        "version": version.version,
        "creationDate": iso_timestamp(version.created_at),
    }
    if json_output():
        emit_json(result)
    else:
        click.echo(f"{version.name} version {version.version}  {result['stateMachineArn']}")


@machines.command("list")
@global_options
def machines_list() -> None:
    """List state machines (latest version of each)."""
    from engine.history import iso_timestamp, machine_list_item

    found = with_client(lambda engine: engine.list_state_machines())
    if json_output():
        emit_json({"stateMachines": [machine_list_item(m) for m in found]})
        return
    print_table(
        ["NAME", "TYPE", "VERSION", "CREATED"],
        [[m.name, m.machine_type, m.version, iso_timestamp(m.created_at)] for m in found],
    )


@machines.command("describe")
@click.argument("name")
@global_options
def machines_describe(name: str) -> None:
    """Describe state machine NAME (its latest version), definition included."""
    from engine.history import machine_to_aws

    async def describe(engine: Engine) -> tuple[MachineVersion, str]:
        found = await engine.describe_state_machine(name)
        # ACTIVE, or DELETING while a deleted machine's executions finish.
        return found, engine.store.state_machine_status(found.name)

    found, status = with_client(describe)
    document = machine_to_aws(found)
    document["status"] = status
    if json_output():
        emit_json(document)
        return
    for key in ("stateMachineArn", "name", "type", "version", "status", "creationDate"):
        click.echo(f"{key}: {document[key]}")
    click.echo("definition:")
    click.echo(pretty(parse_json_text(document["definition"], what="definition")))


@machines.command("update")
@click.argument("name")
@click.argument("file")
@click.option("--publish", is_flag=True, help="Also publish the new revision as a version.")
@description_option
@global_options
def machines_update(name: str, file: str, publish: bool, description: str | None) -> None:
    """Make FILE the next revision of state machine NAME (running executions keep theirs)."""
    from engine.history import iso_timestamp
    from engine.runner import machine_arn

    _text, raw = load_definition_file(file)
    revision, published = with_client(
        lambda engine: engine.update_state_machine(
            name, raw, publish=publish, description=description
        )
    )
    result: dict[str, object] = {
        "updateDate": iso_timestamp(revision.created_at),
        "revisionId": str(revision.version),
    }
    if published is not None:
        result["stateMachineVersionArn"] = machine_arn(f"{name}:{published.number}")
    if json_output():
        emit_json(result)
    else:
        click.echo(f"{name} revision {revision.version}")
        if published is not None:
            click.echo(f"published version {published.number}  {result['stateMachineVersionArn']}")


@machines.command("publish")
@click.argument("name")
@description_option
@global_options
def machines_publish(name: str, description: str | None) -> None:
    """Publish the latest revision of NAME as its next version (the same revision: same version)."""
    from engine.history import iso_timestamp
    from engine.runner import machine_arn

    published = with_client(lambda engine: engine.publish_version(name, description=description))
    result = {
        "stateMachineVersionArn": machine_arn(f"{name}:{published.number}"),
        "creationDate": iso_timestamp(published.created_at),
    }
    if json_output():
        emit_json(result)
    else:
        click.echo(result["stateMachineVersionArn"])


@machines.command("versions")
@click.argument("name")
@global_options
def machines_versions(name: str) -> None:
    """List the published versions of NAME, newest first."""
    from engine.history import iso_timestamp
    from engine.runner import machine_arn

    found = with_client(lambda engine: engine.list_versions(name))
    if json_output():
        emit_json(
            {
                "stateMachineVersions": [
                    {
                        "stateMachineVersionArn": machine_arn(f"{name}:{v.number}"),
                        "creationDate": iso_timestamp(v.created_at),
                    }
                    for v in found
                ]
            }
        )
        return
    print_table(
        ["VERSION", "REVISION", "CREATED", "DESCRIPTION"],
        [[v.number, v.revision, iso_timestamp(v.created_at), v.description or ""] for v in found],
    )


@machines.command("delete")
@click.argument("name")
@click.option(
    "--version",
    "number",
    type=click.IntRange(min=1),
    default=None,
    help="Delete only published version N.",
)
@global_options
def machines_delete(name: str, number: int | None) -> None:
    """Delete NAME, or with --version N only its published version N.

    A deleted machine's running executions finish; new starts are refused.
    A version is refused while an alias routes to it.
    """
    if number is None:
        with_client(lambda engine: engine.delete_state_machine(name))
    else:
        with_client(lambda engine: engine.delete_version(name, number))
    if json_output():
        emit_json({})
    else:
        click.echo(f"deleted {name}" if number is None else f"deleted {name}:{number}")
