"""`stepwise redrive EXEC`: reopen a failed execution from the step that did not succeed.

A thin face over `Engine.redrive` (engine/lifecycle.py): the execution must
have closed FAILED, TIMED_OUT or ABORTED within the redrive window; a
``stepwise worker`` on its queue then runs it on, replaying what succeeded.
A refusal is ``ExecutionNotRedrivable`` with AWS's reason (exit 2). With
``-o json`` it prints RedriveExecution's answer, ``{"redriveDate": …}``.
"""

from __future__ import annotations

import click

from engine.cli.core import StepwiseCommand, global_options, json_output, with_client
from engine.cli.output import emit_json

__all__ = ["redrive_command"]


@click.command("redrive", cls=StepwiseCommand)
@click.argument("execution", metavar="EXEC")
@click.option(
    "--client-token",
    metavar="TOKEN",
    default=None,
    help="Repeat-safe: the same token while that redrive runs gives the same answer.",
)
@global_options
def redrive_command(execution: str, client_token: str | None) -> None:
    """Redrive a FAILED, TIMED_OUT or ABORTED execution (by executionArn, or unambiguous name)."""
    from engine.history import iso_timestamp

    record = with_client(lambda engine: engine.redrive(execution, client_token=client_token))
    if json_output():
        emit_json({"redriveDate": iso_timestamp(record.redrive_date)})
    else:
        click.echo(
            f"{record.execution_id}: redrive {record.redrive_count} at "
            f"{iso_timestamp(record.redrive_date)}"
        )
