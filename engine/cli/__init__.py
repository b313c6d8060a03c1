"""The `stepwise` command line: a thin face over `engine.Engine` and the store.

This package owns the root click group `cli` and `main()`, the console
script (``stepwise = "engine.cli:main"``); each command group lives in its
own module: ``validate``/``run`` (definitions), ``machines``, ``aliases``, executions
(``start``, ``describe``, ``history``, ``list``, ``stop``, ``redrive``, ``executions
purge``), ``map-runs``, ``worker``, ``test-state``, ``task``/``activity``
(callbacks), ``schedules``, ``triggers``, ``alerts``, ``trace`` and ``db``. Every command and
group accepts the global options ``--db URL`` (default
$STEPWISE_DATABASE_URL, else ``sqlite:///./stepwise.db``) and ``-o/--output
text|json`` before or after its name; JSON output is AWS-shaped (see
`engine.history`). Exit codes, rendered from the error tree's classes (see
`engine.errors`): 0 ok; 1 the execution FAILED/TIMED_OUT/ABORTED, or
``validate`` found an invalid definition; 2 usage error or bad input; 3 the
store or other infrastructure failed. An error is always one line on
stderr, never a traceback. Modules here import only click at load time, so
``stepwise --help`` does not load the engine.
"""

from __future__ import annotations

import logging
import sys

import click

from engine.cli.alerts import alerts
from engine.cli.aliases import aliases
from engine.cli.callbacks import activity, task
from engine.cli.core import StepwiseGroup, global_options
from engine.cli.db import db_group
from engine.cli.definitions import run_command, validate_command
from engine.cli.executions import (
    describe_command,
    executions_group,
    history_command,
    list_command,
    start_command,
    stop_command,
)
from engine.cli.machines import machines
from engine.cli.map_runs import map_runs
from engine.cli.redrive import redrive_command
from engine.cli.schedules import schedules
from engine.cli.serve import serve
from engine.cli.teststate import test_state_command
from engine.cli.trace import trace
from engine.cli.triggers import triggers
from engine.cli.worker import worker_command

__all__ = ["cli", "main"]


@click.group(cls=StepwiseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stepwise", prog_name="stepwise", message="%(prog)s %(version)s")
@global_options
def cli() -> None:
    """Stepwise: run Amazon States Language state machines, durably, on SQLite or PostgreSQL."""


for _command in (
    validate_command,
    machines,
    aliases,
    start_command,
    describe_command,
    history_command,
    list_command,
    stop_command,
    executions_group,
    redrive_command,
    map_runs,
    test_state_command,
    run_command,
    worker_command,
    schedules,
    triggers,
    alerts,
    serve,
    db_group,
    trace,
    task,
    activity,
):
    cli.add_command(_command)


def main() -> None:
    """The `stepwise` console script."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="stepwise: %(levelname)s: %(message)s"
    )
    from engine.redact import install_log_redaction

    install_log_redaction()  # secret fields never reach the logs
    cli.main(prog_name="stepwise")
