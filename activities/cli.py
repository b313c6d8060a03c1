"""The `stepwise task …` and `stepwise activity …` commands: answer callbacks, poll activities.

``stepwise task success TOKEN --result JSON`` (AWS's SendTaskSuccess calls
the field ``--output``, but ``--output`` is already the CLI's format
option), ``stepwise task failure TOKEN --error E --cause C``, ``stepwise
task heartbeat TOKEN`` and ``stepwise activity poll NAME`` (prints
``{"taskToken", "input"}``, or nothing when no task came before
``--timeout``). engine/cli.py adds the `task` and `activity` groups to the
root command; ``python -m activities.cli`` runs them on their own. The
engine is imported only when a command runs, so handlers importing
`activities` never load it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

__all__ = ["activity", "main", "task"]

_DB_KEY = "stepwise.db"  # the key engine/cli_core.py keeps the global --db under
# An unknown, used or malformed token is bad input: exit 2, as everywhere in the CLI.
EXIT_USAGE = 2
EXIT_STORE = 3


def _remember_db(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    if value is not None:
        ctx.meta[_DB_KEY] = value
    return value


_db_option = click.option(
    "--db",
    metavar="URL",
    default=None,
    expose_value=False,
    callback=_remember_db,
    help="Database URL (default: $STEPWISE_DATABASE_URL, else sqlite:///./stepwise.db).",
)


class CallbackError(click.ClickException):
    """An AWS-named error from a callback call, reported on one line."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"stepwise: error: {self.message}", err=True)


class StoreError(CallbackError):
    """The database cannot be reached."""

    exit_code = EXIT_STORE


def _store() -> Any:
    from engine.store import Store, default_database_url

    url = click.get_current_context().meta.get(_DB_KEY) or default_database_url()
    return Store(url)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from engine.store import StoreUnavailable
    from statemachine.errors import StepwiseError

    try:
        store = _store()
    except StoreUnavailable as failure:
        raise StoreError(str(failure)) from None
    try:
        return fn(store, *args, **kwargs)
    except StoreUnavailable as failure:
        raise StoreError(str(failure)) from None
    except StepwiseError as failure:
        raise CallbackError(f"{type(failure).__name__}: {failure}") from None
    finally:
        store.close()


@click.group("task")
@_db_option
def task() -> None:
    """Answer waiting callback tasks (.waitForTaskToken and activities) by their token."""


@task.command("success")
@click.argument("token")
@click.option("--result", "result", required=True, metavar="JSON", help="The task's output.")
@_db_option
def task_success(token: str, result: str) -> None:
    """Complete the task with a JSON result (AWS: SendTaskSuccess --output)."""
    from engine.callbacks import send_task_success

    if result == "-":
        result = sys.stdin.read()
    _call(send_task_success, token, result)


@task.command("failure")
@click.argument("token")
@click.option("--error", default=None, help="The error name Retry/Catch match.")
@click.option("--cause", default=None, help="A human-readable cause.")
@_db_option
def task_failure(token: str, error: str | None, cause: str | None) -> None:
    """Fail the task (AWS: SendTaskFailure)."""
    from engine.callbacks import send_task_failure

    _call(send_task_failure, token, error=error, cause=cause)


@task.command("heartbeat")
@click.argument("token")
@_db_option
def task_heartbeat(token: str) -> None:
    """Report that the task's worker is alive (AWS: SendTaskHeartbeat)."""
    from engine.callbacks import send_task_heartbeat

    _call(send_task_heartbeat, token)


@click.group("activity")
@_db_option
def activity() -> None:
    """Work on activity tasks (arn:aws:states:…:activity:NAME) from outside the engine."""


@activity.command("poll")
@click.argument("name")
@click.option("--worker-name", default=None, help="Recorded in ActivityStarted.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for a task.")
@_db_option
def activity_poll(name: str, worker_name: str | None, timeout: float) -> None:
    """Wait for one task of activity NAME; print {"taskToken", "input"} (nothing if none came)."""
    from engine.callbacks import get_activity_task_sync

    worker = worker_name or f"{os.uname().nodename}:{os.getpid()}"
    found = _call(get_activity_task_sync, name, worker_name=worker, timeout=timeout)
    if found is not None:
        click.echo(json.dumps({"taskToken": found.taskToken, "input": found.input}))


@click.group()
def main() -> None:
    """Stepwise callback commands."""


main.add_command(task)
main.add_command(activity)

if __name__ == "__main__":
    main()
