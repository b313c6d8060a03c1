"""The `stepwise` command line: a thin face over `engine.Engine`.

This module owns the click group `cli` and its commands — ``validate``,
``machines create|list|describe``, ``start``, ``describe``, ``history``,
``list``, ``stop``, ``run``, ``worker`` and ``db upgrade`` — and `main()`,
the console script. Every command takes ``--db URL`` (default
$STEPWISE_DATABASE_URL, else ``sqlite:///./stepwise.db``) and ``-o
text|json``; JSON output is AWS-shaped (see `engine.history`). Exit codes:
0 ok; 1 the execution FAILED/TIMED_OUT/ABORTED, or ``validate`` found an
invalid definition; 2 usage error or invalid definition; 3 the store is
unreachable. A user error is always one line on stderr, never a traceback.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, TypeVar

import anyio
import click

from engine.api import Engine
from engine.cli_output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    CliError,
    diagnostic_line,
    diagnostic_to_json,
    emit_json,
    parse_json_text,
    print_table,
    read_file,
    read_json_argument,
)
from engine.errors import LeaseLost, NondeterminismError, StepwiseError, StoreUnavailable
from engine.history import (
    event_summary,
    execution_list_item,
    execution_to_aws,
    history_to_aws,
    iso_timestamp,
    machine_list_item,
    machine_to_aws,
)
from engine.runner import machine_arn
from engine.store import ExecutionRecord, ExecutionStatus, Store, default_database_url
from statemachine.build import local_diagnostics
from statemachine.diagnostics import Diagnostic
from statemachine.errors import DefinitionError
from statemachine.validate import is_valid, validate, validate_text

__all__ = ["cli", "database_url", "global_options", "json_output", "main"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_DB_KEY = "stepwise.db"
_OUTPUT_KEY = "stepwise.output"
_MACHINE_TYPES = click.Choice(["standard", "express"], case_sensitive=False)
_STATUSES = click.Choice([s.value for s in ExecutionStatus], case_sensitive=False)

# Errors the Step Functions API names: the CLI shows the name the way the
# AWS CLI does ("ExecutionDoesNotExist: …") so messages read the same.
_AWS_NAMED = (
    "AmbiguousExecution",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "ExecutionNotRunning",
    "InvalidName",
    "InvalidToken",
    "StateMachineDoesNotExist",
    "TaskDoesNotExist",
    "TaskTimedOut",
)


# -- global options ----------------------------------------------------------


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        # ctx.meta is shared by the whole context chain, so `stepwise --db X
        # history E` and `stepwise history E --db X` mean the same; the
        # option given closest to the command wins.
        if value is not None:
            ctx.meta[key] = value
        return value

    return callback


def global_options(fn: F) -> F:
    """Add ``--db URL`` and ``-o/--output text|json`` to a command or group."""
    fn = click.option(
        "--db",
        metavar="URL",
        default=None,
        expose_value=False,
        callback=_remember(_DB_KEY),
        help="Database URL (default: $STEPWISE_DATABASE_URL, else sqlite:///./stepwise.db).",
    )(fn)
    fn = click.option(
        "-o",
        "--output",
        type=click.Choice(["text", "json"], case_sensitive=False),
        default=None,
        expose_value=False,
        callback=_remember(_OUTPUT_KEY),
        help="text for people (default), json for scripts (AWS-shaped, camelCase).",
    )(fn)
    return fn


def database_url(ctx: click.Context | None = None) -> str:
    """The database URL the invocation names, else the default one."""
    ctx = ctx or click.get_current_context()
    url: str | None = ctx.meta.get(_DB_KEY)
    return url or default_database_url()


def json_output(ctx: click.Context | None = None) -> bool:
    """True when the invocation asked for ``--output json``."""
    ctx = ctx or click.get_current_context()
    return str(ctx.meta.get(_OUTPUT_KEY, "text")).lower() == "json"


def _run_async(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn)


# -- errors ------------------------------------------------------------------


def _leaf_error(exc: BaseException) -> BaseException:
    # A failure inside the engine's task group arrives wrapped in an
    # exception group; the user wants the one error inside.
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        if not inner:
            break
        wanted = [e for e in inner if isinstance(e, StepwiseError | click.ClickException)]
        exc = (wanted or inner)[0]
    return exc


def _report(exc: BaseException) -> int | None:
    """Print a user error on stderr and return its exit code; None when it is a bug."""
    exc = _leaf_error(exc)
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        exc.show()
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        click.echo(f"stepwise: error: {exc.format_message()}", err=True)
        return exc.exit_code
    if isinstance(exc, StoreUnavailable | LeaseLost | NondeterminismError):
        click.echo(f"stepwise: error: {exc}", err=True)
        return EXIT_STORE
    if isinstance(exc, StepwiseError):
        name = type(exc).__name__
        message = f"{name}: {exc}" if name in _AWS_NAMED else str(exc)
        click.echo(f"stepwise: error: {message}", err=True)
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt | click.Abort):
        click.echo("stepwise: interrupted", err=True)
        return 130
    return None


class _StepwiseGroup(click.Group):
    """The root group: turns every user error into one stderr line and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code: Any
        try:
            code = super().main(
                args, prog_name or "stepwise", complete_var, standalone_mode=False, **extra
            )
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                raise
            reported = _report(exc)
            if reported is None:
                raise
            code = reported
        code = EXIT_OK if code is None else code
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=_StepwiseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
def cli() -> None:
    """Stepwise: run Amazon States Language state machines, durably, on SQLite or PostgreSQL."""


def main() -> None:
    """The `stepwise` console script."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="stepwise: %(levelname)s: %(message)s"
    )
    cli.main(prog_name="stepwise")


def _finish(code: int) -> None:
    if code != EXIT_OK:
        raise click.exceptions.Exit(code)


# -- definitions ---------------------------------------------------------------


def _machine_type(value: str) -> str:
    return value.upper()


def _load_definition_file(path: str) -> tuple[str, Any]:
    """(text, parsed value) of a definition file; CliError (exit 2) when unreadable or not JSON."""
    text = read_file(path, what=path)
    return text, parse_json_text(text, what=path)


def _check_definition(path: str, raw: Any, machine_type: str) -> None:
    """Refuse a definition the local rules reject: diagnostics on stderr, then exit 2."""
    diagnostics = local_diagnostics(raw, machine_type=machine_type)  # type: ignore[arg-type]
    if is_valid(diagnostics):
        return
    for diagnostic in diagnostics:
        click.echo(diagnostic_line(path, diagnostic), err=True)
    errors = sum(1 for d in diagnostics if d.severity == "ERROR")
    raise CliError(
        f"{path}: invalid state machine definition ({errors} error{'s' if errors != 1 else ''})"
    )


def _import_activities(modules: Sequence[str]) -> None:
    """Import each module so its `@activity` handlers register (before any Engine is built)."""
    if not modules:
        return
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise CliError(
                f"cannot import activities module '{module}': {type(exc).__name__}: {exc}"
            ) from None


_activities_option = click.option(
    "--activities",
    "activities",
    metavar="MODULE",
    multiple=True,
    help="Import MODULE (from the current directory too) to register its @activity handlers.",
)


def _execution_input(inline: str | None, input_file: str | None) -> Any:
    if inline is not None and input_file is not None:
        raise CliError("give either --input or --input-file, not both")
    if input_file is not None:
        return read_json_argument(f"file://{input_file}", what="the execution input")
    if inline is not None:
        return read_json_argument(inline, what="the execution input")
    return {}


def _input_options(fn: F) -> F:
    fn = click.option(
        "--input-file",
        "input_file",
        metavar="FILE",
        default=None,
        help="Read the execution input (JSON) from FILE.",
    )(fn)
    fn = click.option(
        "--input",
        "input_text",
        metavar="JSON",
        default=None,
        help="Execution input: inline JSON, - for stdin, or file://PATH (default {}).",
    )(fn)
    return fn


# -- validate ------------------------------------------------------------------


@cli.command("validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--type", "machine_type", type=_MACHINE_TYPES, default="standard", show_default=True)
@click.option(
    "--local",
    is_flag=True,
    help="Stepwise's rules: plain (non-ARN) Resource names bind to registered handlers.",
)
@global_options
def validate_command(files: tuple[str, ...], machine_type: str, local: bool) -> None:
    """Validate definitions as AWS does; print every diagnostic as FILE:/pointer: CODE: message.

    Exit 0 when all are valid, 1 when any is invalid, 2 when a file is missing or not JSON.
    """
    kind = _machine_type(machine_type)
    reports: list[dict[str, Any]] = []
    code = EXIT_OK
    for path in files:
        try:
            text = read_file(path, what=path)
            raw = parse_json_text(text, what=path)
        except CliError as exc:
            click.echo(f"stepwise: error: {exc.format_message()}", err=True)
            code = EXIT_USAGE
            reports.append({"file": path, "valid": False, "diagnostics": _unreadable(path)})
            continue
        diagnostics: list[Diagnostic] = (
            local_diagnostics(raw, machine_type=kind)  # type: ignore[arg-type]
            if local
            else validate(raw, machine_type=kind)  # type: ignore[arg-type]
        )
        valid = is_valid(diagnostics)
        if not valid and code == EXIT_OK:
            code = EXIT_FAILED
        reports.append(
            {
                "file": path,
                "valid": valid,
                "diagnostics": [diagnostic_to_json(d) for d in diagnostics],
            }
        )
        if not json_output():
            for diagnostic in diagnostics:
                click.echo(diagnostic_line(path, diagnostic))
            if valid:
                click.echo(f"{path}: valid")
    if json_output():
        emit_json(reports[0] if len(reports) == 1 else reports)
    _finish(code)


def _unreadable(path: str) -> list[dict[str, str]]:
    # A file that is readable but not JSON still gets AWS's INVALID_JSON_DESCRIPTION.
    try:
        text = read_file(path, what=path)
    except CliError:
        return []
    return [diagnostic_to_json(d) for d in validate_text(text)]


# -- machines --------------------------------------------------------------------


@cli.group("machines")
@global_options
def machines() -> None:
    """Create, list and describe state machines."""


@machines.command("create")
@click.argument("name")
@click.argument("file")
@click.option("--type", "machine_type", type=_MACHINE_TYPES, default="standard", show_default=True)
@global_options
def machines_create(name: str, file: str, machine_type: str) -> None:
    """Create state machine NAME from FILE; a changed definition becomes a new version."""
    ctx = click.get_current_context()
    kind = _machine_type(machine_type)
    _text, raw = _load_definition_file(file)
    _check_definition(file, raw, kind)

    async def create() -> Any:
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.create_state_machine(name, raw, machine_type=kind)

    version = _run_async(create)
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
    ctx = click.get_current_context()

    async def listing() -> Any:
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.list_state_machines()

    found = _run_async(listing)
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
    ctx = click.get_current_context()

    async def describe() -> Any:
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.describe_state_machine(name)

    document = machine_to_aws(_run_async(describe))
    if json_output():
        emit_json(document)
        return
    for key in ("stateMachineArn", "name", "type", "version", "status", "creationDate"):
        click.echo(f"{key}: {document[key]}")
    click.echo("definition:")
    click.echo(_pretty(parse_json_text(document["definition"], what="definition")))


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# -- executions ------------------------------------------------------------------


@cli.command("start")
@click.argument("machine", metavar="NAME")
@_input_options
@click.option("--name", "execution_name", metavar="EXEC", default=None, help="Execution name.")
@global_options
def start_command(
    machine: str, input_text: str | None, input_file: str | None, execution_name: str | None
) -> None:
    """Start an execution of state machine NAME; a running `stepwise worker` runs it."""
    ctx = click.get_current_context()
    payload = _execution_input(input_text, input_file)

    async def start() -> ExecutionRecord:
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.start(machine, payload, name=execution_name)

    record = _run_async(start)
    result = {
        "executionArn": record.execution_id,
        "name": record.name,
        "startDate": iso_timestamp(record.start_date),
    }
    if json_output():
        emit_json(result)
    else:
        click.echo(record.execution_id)


def _print_execution(document: dict[str, Any]) -> None:
    for key in ("executionArn", "name", "stateMachine", "status", "startDate", "stopDate"):
        if document[key] is not None:
            click.echo(f"{key}: {document[key]}")
    click.echo(f"input: {_compact(document['input'])}")
    if document["output"] is not None:
        click.echo(f"output: {_compact(document['output'])}")
    for key in ("error", "cause"):
        if document[key] is not None:
            click.echo(f"{key}: {document[key]}")


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@cli.command("describe")
@click.argument("execution", metavar="EXEC")
@global_options
def describe_command(execution: str) -> None:
    """Describe an execution (by executionArn, or by its name when unambiguous)."""
    ctx = click.get_current_context()

    async def describe() -> ExecutionRecord:
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.describe(execution)

    document = execution_to_aws(_run_async(describe))
    if json_output():
        emit_json(document)
    else:
        _print_execution(document)


@cli.command("history")
@click.argument("execution", metavar="EXEC")
@click.option("--reverse", is_flag=True, help="Newest event first.")
@global_options
def history_command(execution: str, reverse: bool) -> None:
    """Print an execution's history events, AWS-shaped."""
    ctx = click.get_current_context()

    async def history() -> Any:
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.history(execution)

    events = _run_async(history)
    if json_output():
        emit_json(history_to_aws(events, reverse=reverse))
        return
    ordered = list(reversed(events)) if reverse else events
    print_table(
        ["ID", "TIMESTAMP", "TYPE", "DETAILS"],
        [[e.event_id, iso_timestamp(e.timestamp), e.type, event_summary(e)] for e in ordered],
    )


@cli.command("list")
@click.option("--machine", metavar="NAME", default=None, help="Only executions of NAME.")
@click.option("--status", type=_STATUSES, default=None, help="Only executions with STATUS.")
@global_options
def list_command(machine: str | None, status: str | None) -> None:
    """List executions, newest first."""
    ctx = click.get_current_context()

    async def listing() -> list[ExecutionRecord]:
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.list_executions(
                machine=machine, status=status.upper() if status else None
            )

    records = _run_async(listing)
    if json_output():
        emit_json({"executions": [execution_list_item(r) for r in records]})
        return
    print_table(
        ["NAME", "MACHINE", "STATUS", "STARTED", "STOPPED"],
        [
            [r.name, r.machine, r.status, iso_timestamp(r.start_date), iso_timestamp(r.stop_date)]
            for r in records
        ],
    )


@cli.command("stop")
@click.argument("execution", metavar="EXEC")
@click.option("--error", default=None, help="Error name recorded in ExecutionAborted.")
@click.option("--cause", default=None, help="Cause recorded in ExecutionAborted.")
@global_options
def stop_command(execution: str, error: str | None, cause: str | None) -> None:
    """Stop (abort) a running execution."""
    ctx = click.get_current_context()

    async def stop() -> ExecutionRecord:
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.stop(execution, error=error, cause=cause)

    record = _run_async(stop)
    stopped = iso_timestamp(record.stop_date or datetime.now(UTC))
    if json_output():
        emit_json({"stopDate": stopped})
    else:
        click.echo(f"{record.execution_id} {record.status} at {stopped}")


# -- run -------------------------------------------------------------------------


@cli.command("run")
@click.argument("file")
@_input_options
@_activities_option
@click.option("--name", "execution_name", metavar="N", default=None, help="Execution name.")
@global_options
def run_command(
    file: str,
    input_text: str | None,
    input_file: str | None,
    activities: tuple[str, ...],
    execution_name: str | None,
) -> None:
    """Validate FILE and run one execution of it to its end, here; print its output.

    Exit 0 when it SUCCEEDED, 1 when it FAILED, TIMED_OUT or was ABORTED.
    """
    ctx = click.get_current_context()
    _text, raw = _load_definition_file(file)
    _check_definition(file, raw, "STANDARD")
    payload = _execution_input(input_text, input_file)
    _import_activities(activities)

    async def run() -> ExecutionRecord:
        # No in-process worker: `run` runs its own execution, not whatever
        # else is queued in the same database.
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.run(raw, payload, name=execution_name)

    try:
        record = _run_async(run)
    except DefinitionError as exc:
        for diagnostic in exc.diagnostics:
            if isinstance(diagnostic, Diagnostic):
                click.echo(diagnostic_line(file, diagnostic), err=True)
        raise CliError(f"{file}: invalid state machine definition") from None
    document = execution_to_aws(record)
    if json_output():
        emit_json(document)
    elif record.status == ExecutionStatus.SUCCEEDED:
        click.echo(_pretty(document["output"]))
    else:
        detail = ": ".join(str(p) for p in (record.error, record.cause) if p is not None)
        click.echo(f"{record.status}: {detail}" if detail else record.status, err=True)
    _finish(EXIT_OK if record.status == ExecutionStatus.SUCCEEDED else EXIT_FAILED)


# -- worker ----------------------------------------------------------------------


def _display_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database>"


@cli.command("worker")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lease-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
@_activities_option
@global_options
def worker_command(concurrency: int, lease_seconds: float, activities: tuple[str, ...]) -> None:
    """Run executions from the database until SIGTERM or SIGINT, then exit 0."""
    ctx = click.get_current_context()
    _import_activities(activities)
    url = database_url(ctx)

    async def work() -> None:
        # Listen before the engine starts, so a signal during start-up is
        # queued here instead of killing the process half-started.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with Engine(
                url, worker=True, concurrency=concurrency, lease_seconds=lease_seconds
            ) as engine:
                click.echo(
                    f"stepwise: worker {engine.worker_id} started on {_display_url(url)} "
                    f"(concurrency {concurrency})",
                    err=True,
                )
                async for signum in signals:
                    click.echo(
                        f"stepwise: worker {engine.worker_id} stopping on "
                        f"{signal.Signals(signum).name}",
                        err=True,
                    )
                    break
            click.echo(f"stepwise: worker {engine.worker_id} stopped", err=True)

    _run_async(work)


# -- db --------------------------------------------------------------------------


@cli.group("db")
@global_options
def db_group() -> None:
    """Database administration."""


@db_group.command("upgrade")
@global_options
def db_upgrade() -> None:
    """Apply missing schema migrations; print the schema version."""
    store = Store(database_url(), auto_migrate=False)
    try:
        version = store.migrate()
    finally:
        store.close()
    if json_output():
        emit_json({"schemaVersion": version})
    else:
        click.echo(f"schema version {version}")


# -- commands other modules add ----------------------------------------------------

try:
    _telemetry_cli: ModuleType | None = importlib.import_module("engine.telemetry.cli")
except ImportError:
    _telemetry_cli = None
try:
    _activities_cli: ModuleType | None = importlib.import_module("activities.cli")
except ImportError:
    _activities_cli = None
for _module, _names in ((_telemetry_cli, ("trace",)), (_activities_cli, ("task", "activity"))):
    for _name in _names:
        # getattr: a module that imports this one while it is still loading
        # (python -m engine.cli) may not have defined its command yet.
        _command = getattr(_module, _name, None)
        if isinstance(_command, click.Command):
            cli.add_command(_command)


if __name__ == "__main__":
    # Run the importable engine.cli, not this __main__ copy, so extension
    # modules that import engine.cli share one `cli` group with us.
    from engine.cli import main as _main

    _main()
