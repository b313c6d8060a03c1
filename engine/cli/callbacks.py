"""`stepwise task …` and `stepwise activity poll`: answer callback tasks, poll activities.

``stepwise task success TOKEN --result JSON`` (AWS's SendTaskSuccess calls
the field ``--output``, but ``--output`` is the CLI's global format option),
``stepwise task failure TOKEN --error E --cause C``, ``stepwise task
heartbeat TOKEN`` and ``stepwise activity poll NAME`` (prints
``{"taskToken", "input"}``, or nothing when no task came before
``--timeout``). An unknown, used or malformed token is bad input (exit 2,
rendered from the error's class); an unreachable database exits 3.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from engine.cli.core import StepwiseGroup, database_url, global_options

if TYPE_CHECKING:
    from engine.store import Store

__all__ = ["activity", "task"]


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one callback call against --db's store and close it; errors reach the reporter."""
    from engine.store import Store

    store: Store = Store(database_url())
    try:
        return fn(store, *args, **kwargs)
    finally:
        store.close()


@click.group("task", cls=StepwiseGroup)
@global_options
def task() -> None:
    """Answer waiting callback tasks (.waitForTaskToken and activities) by their token."""


@task.command("success")
@click.argument("token")
@click.option("--result", "result", required=True, metavar="JSON", help="The task's output.")
@global_options
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
@global_options
def task_failure(token: str, error: str | None, cause: str | None) -> None:
    """Fail the task (AWS: SendTaskFailure)."""
    from engine.callbacks import send_task_failure

    _call(send_task_failure, token, error=error, cause=cause)


@task.command("heartbeat")
@click.argument("token")
@global_options
def task_heartbeat(token: str) -> None:
    """Report that the task's worker is alive (AWS: SendTaskHeartbeat)."""
    from engine.callbacks import send_task_heartbeat

    _call(send_task_heartbeat, token)


@click.group("activity", cls=StepwiseGroup)
@global_options
def activity() -> None:
    """Work on activity tasks (arn:aws:states:…:activity:NAME) from outside the engine."""


@activity.command("poll")
@click.argument("name")
@click.option("--worker-name", default=None, help="Recorded in ActivityStarted.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for a task.")
@global_options
def activity_poll(name: str, worker_name: str | None, timeout: float) -> None:
    """Wait for one task of activity NAME; print {"taskToken", "input"} (nothing if none came)."""
    from engine.callbacks import get_activity_task_sync

    worker = worker_name or f"{os.uname().nodename}:{os.getpid()}"
    found = _call(get_activity_task_sync, name, worker_name=worker, timeout=timeout)
    if found is not None:
        click.echo(json.dumps({"taskToken": found.taskToken, "input": found.input}))
