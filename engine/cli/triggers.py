"""`stepwise triggers …`: start a state machine when another's execution closes.

``create NAME --machine B --on-execution-of A --status SUCCEEDED [--status …]
[--input output|input]`` (one B per execution of A), or ``create NAME
--machine M --watch DIR [--pattern GLOB]`` (one execution per new file
version), or ``create NAME --machine M --webhook [--secret S]`` (``POST
/triggers/NAME`` on ``stepwise serve`` starts M with the request body);
``list``, ``describe``, ``delete``, ``pause`` and ``resume``.
Workers (``stepwise worker``) start the triggered executions.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

import click

from engine.cli.core import StepwiseGroup, global_options, json_output, with_client
from engine.cli.output import CliError, emit_json, print_table

if TYPE_CHECKING:
    from engine.store.outbox import AlertRecord

__all__ = ["triggers"]

_STATUSES = click.Choice(["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"], case_sensitive=False)


def trigger_to_json(record: AlertRecord) -> dict[str, Any]:
    created = record.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    state = "DISABLED" if record.paused else "ENABLED"
    if record.kind == "webhook":
        # The secret is never shown (the create command prints a generated one once).
        return {
            "name": record.name,
            "stateMachine": record.target.removeprefix("webhook:"),
            "webhook": f"/triggers/{record.name}",
            "state": state,
            "creationDate": created,
        }
    if record.kind == "watch":
        return {
            "name": record.name,
            "stateMachine": record.target.removeprefix("watch:"),
            "watch": record.headers["directory"],
            "pattern": record.headers.get("pattern", "*"),
            "state": state,
            "creationDate": created,
        }
    source, _, machine = record.target.removeprefix("start:").partition(":")
    return {
        "name": record.name,
        "stateMachine": machine,
        "onExecutionOf": record.machine,
        "statuses": list(record.statuses),
        "input": source,
        "state": state,
        "creationDate": created,
    }


def _show(record: AlertRecord) -> None:
    document = trigger_to_json(record)
    if json_output():
        emit_json(document)
        return
    for key, value in document.items():
        click.echo(f"{key}: {value}")


@click.group("triggers", cls=StepwiseGroup)
@global_options
def triggers() -> None:
    """Create and manage triggers: start a machine when another's execution closes."""


@triggers.command("create")
@click.argument("name")
@click.option("--machine", metavar="B", required=True, help="The state machine to start.")
@click.option("--on-execution-of", metavar="A", help="The upstream machine.")
@click.option("--status", "statuses", type=_STATUSES, multiple=True)
@click.option("--watch", metavar="DIR", help="Start M once per new file version in DIR.")
@click.option("--pattern", metavar="GLOB", default="*", show_default=True, help="With --watch.")
@click.option("--webhook", is_flag=True, help="Start M on POST /triggers/NAME (stepwise serve).")
@click.option(
    "--secret",
    metavar="S",
    help="With --webhook: a whsec_ signing secret or a bearer secret (default: a new whsec_).",
)
@click.option(
    "--input",
    "input_from",
    type=click.Choice(["output", "input"]),
    default="output",
    show_default=True,
    help="B's input: A's output or A's input.",
)
@global_options
def triggers_create(
    name: str,
    machine: str,
    on_execution_of: str | None,
    statuses: tuple[str, ...],
    watch: str | None,
    pattern: str,
    webhook: bool,
    secret: str | None,
    input_from: str,
) -> None:
    """Create trigger NAME: each execution of A reaching --status starts B once (or --watch,
    or --webhook)."""
    if webhook:
        if on_execution_of is not None or statuses or watch is not None:
            raise CliError("--webhook does not take --on-execution-of, --status or --watch")
        record, made = with_client(
            lambda engine: engine.triggers.create_webhook(name, machine=machine, secret=secret)
        )
        document = trigger_to_json(record)
        if secret is None:  # generated: shown this once, so the sender can sign with it
            document["secret"] = made
        if json_output():
            emit_json(document)
            return
        for key, value in document.items():
            click.echo(f"{key}: {value}")
        return
    if secret is not None:
        raise CliError("--secret goes with --webhook")
    if watch is not None:
        if on_execution_of is not None or statuses:
            raise CliError("--watch does not take --on-execution-of or --status")
        _show(
            with_client(
                lambda engine: engine.triggers.create_watch(
                    name, machine=machine, directory=watch, pattern=pattern
                )
            )
        )
        return
    if on_execution_of is None or not statuses:
        raise CliError("give --on-execution-of A and at least one --status (or --watch DIR)")
    record = with_client(
        lambda engine: engine.triggers.create(
            name,
            machine=machine,
            on_execution_of=on_execution_of,
            statuses=[s.upper() for s in statuses],
            input_from=input_from,
        )
    )
    _show(record)


@triggers.command("list")
@global_options
def triggers_list() -> None:
    """List the triggers."""
    documents = [trigger_to_json(r) for r in with_client(lambda e: e.triggers.list_all())]
    if json_output():
        emit_json({"triggers": documents})
        return
    print_table(
        ["NAME", "ON", "STARTS", "STATE"],
        [
            [
                d["name"],
                f"{d['watch']}/{d['pattern']}"
                if "watch" in d
                else f"POST {d['webhook']}"
                if "webhook" in d
                else f"{d['onExecutionOf']} {','.join(d['statuses'])}",
                d["stateMachine"],
                d["state"],
            ]
            for d in documents
        ],
    )


@triggers.command("describe")
@click.argument("name")
@global_options
def triggers_describe(name: str) -> None:
    """Show trigger NAME."""
    _show(with_client(lambda engine: engine.triggers.describe(name)))


@triggers.command("delete")
@click.argument("name")
@global_options
def triggers_delete(name: str) -> None:
    """Delete trigger NAME."""
    with_client(lambda engine: engine.triggers.delete(name))
    if json_output():
        emit_json({})


@triggers.command("pause")
@click.argument("name")
@global_options
def triggers_pause(name: str) -> None:
    """Pause trigger NAME: executions closing while it is paused start nothing."""
    _show(with_client(lambda engine: engine.triggers.pause(name)))


@triggers.command("resume")
@click.argument("name")
@global_options
def triggers_resume(name: str) -> None:
    """Resume trigger NAME."""
    _show(with_client(lambda engine: engine.triggers.resume(name)))
