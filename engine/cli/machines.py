"""`stepwise machines create|list|describe`: the state machines a database holds.

A changed definition given to ``create`` becomes a new version; ``list``
shows the latest version of each; ``describe`` prints one with its
definition. JSON output is AWS-shaped (see `engine.history`).
"""

from __future__ import annotations

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

__all__ = ["machines"]


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

    document = machine_to_aws(with_client(lambda engine: engine.describe_state_machine(name)))
    if json_output():
        emit_json(document)
        return
    for key in ("stateMachineArn", "name", "type", "version", "status", "creationDate"):
        click.echo(f"{key}: {document[key]}")
    click.echo("definition:")
    click.echo(pretty(parse_json_text(document["definition"], what="definition")))
