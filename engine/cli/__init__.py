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
stderr, never a traceback. Modules here import only click at load time, and
the root group (`core.LazyGroup`) imports a command's module only when that
command runs: ``stepwise --help`` lists every command from `COMMANDS` and
`SUMMARIES` without loading any of them, let alone the engine.
"""

from __future__ import annotations

import logging
import sys

import click

from engine.cli.core import LazyGroup, global_options, start_startup

__all__ = ["COMMANDS", "SUMMARIES", "cli", "main"]


# The command tree: NAME -> "module:attribute" of its click command, imported
# only when that command runs. One line per command (or group).
COMMANDS = {
    "activity": "engine.cli.callbacks:activity",
    "alerts": "engine.cli.alerts:alerts",
    "aliases": "engine.cli.aliases:aliases",
    "db": "engine.cli.db:db_group",
    "describe": "engine.cli.executions:describe_command",
    "executions": "engine.cli.executions:executions_group",
    "history": "engine.cli.executions:history_command",
    "list": "engine.cli.executions:list_command",
    "machines": "engine.cli.machines:machines",
    "map-runs": "engine.cli.map_runs:map_runs",
    "redrive": "engine.cli.redrive:redrive_command",
    "run": "engine.cli.definitions:run_command",
    "schedules": "engine.cli.schedules:schedules",
    "serve": "engine.cli.serve:serve",
    "start": "engine.cli.executions:start_command",
    "stop": "engine.cli.executions:stop_command",
    "task": "engine.cli.callbacks:task",
    "test-state": "engine.cli.teststate:test_state_command",
    "trace": "engine.cli.trace:trace",
    "triggers": "engine.cli.triggers:triggers",
    "validate": "engine.cli.definitions:validate_command",
    "worker": "engine.cli.worker:worker_command",
}

# What ``stepwise --help`` lists for each command: the first sentence of its
# help (tests/engine/test_cli_startup.py checks they agree). A command missing
# here is still listed, by importing it.
SUMMARIES = {
    "activity": "Work on activity tasks (arn:aws:states:…:activity:NAME) from outside the engine.",
    "alerts": "Create and manage alerts on execution status changes, and their deliveries.",
    "aliases": "Create, update, describe, list and delete aliases of state machines.",
    "db": "Database administration.",
    "describe": "Describe an execution (by executionArn, or by its name when unambiguous).",
    "executions": "Executions in bulk: purge closed ones.",
    "history": (
        "Print an execution's history events, AWS-shaped (read and printed a page at a time)."
    ),
    "list": "List executions, newest first (paged with --max-results and --next-token).",
    "machines": "Create, list and describe state machines.",
    "map-runs": "Distributed Map runs: list an execution's, describe one, update its limits.",
    "redrive": (
        "Redrive a FAILED, TIMED_OUT or ABORTED execution (by executionArn, or unambiguous name)."
    ),
    "run": "Validate FILE and run one execution of it to its end, here; print its output.",
    "schedules": "Create and manage schedules: runs that start on time, once per tick.",
    "serve": "Serve the AWS Step Functions API (boto3, the AWS CLI and SDKs work unchanged).",
    "start": (
        "Start an execution of NAME (its latest revision), NAME:VERSION, NAME:ALIAS or an ARN."
    ),
    "stop": "Stop (abort) a running execution.",
    "task": "Answer waiting callback tasks (.waitForTaskToken and activities) by their token.",
    "test-state": "Run state NAME of the definition in FILE with --input, as AWS's TestState does.",
    "trace": "Rebuild EXECUTION's trace from its history and export or print it.",
    "triggers": "Create and manage triggers: start a machine when another's execution closes.",
    "validate": (
        "Validate definitions as AWS does; print every diagnostic as FILE:/pointer: CODE: message."
    ),
    "worker": "Run executions of one queue from the database until SIGTERM or SIGINT, then exit 0.",
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    summaries=SUMMARIES,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="stepwise", prog_name="stepwise", message="%(prog)s %(version)s")
@global_options
def cli() -> None:
    """Stepwise: run Amazon States Language state machines, durably, on SQLite or PostgreSQL."""


class _Redaction(logging.Filter):
    """`engine.redact.RedactingFilter`, built when the first record is logged.

    Secret fields never reach the logs, and a command that logs nothing
    (``--help``) never loads the redactor.
    """

    def __init__(self) -> None:
        super().__init__()
        self._filter: logging.Filter | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._filter is None:
            from engine.redact import RedactingFilter

            self._filter = RedactingFilter()
        return bool(self._filter.filter(record))


def main() -> None:
    """The `stepwise` console script."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="stepwise: %(levelname)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Redaction())
    start_startup()  # until the command's work begins (core.run_async, serve)
    cli.main(prog_name="stepwise")
