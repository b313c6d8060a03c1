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

import contextlib
import importlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, TypeVar

import anyio
import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from activities.registry import Registry, default_registry
from engine import telemetry
from engine.api import Engine
from engine.cli_core import (
    StepwiseGroup,
    activities_option,
    check_definition,
    database_url,
    execution_input,
    finish,
    global_options,
    import_activities,
    input_options,
    json_output,
    load_definition_file,
    machine_type_of,
    run_async,
)
from engine.cli_output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    diagnostic_line,
    diagnostic_to_json,
    emit_json,
    parse_json_text,
    print_table,
    read_file,
)
from engine.history import (
    event_summary,
    execution_list_item,
    execution_to_aws,
    history_to_aws,
    iso_timestamp,
    machine_list_item,
    machine_to_aws,
)
from engine.resources import unknown_resources
from engine.runner import machine_arn
from engine.store import ExecutionRecord, ExecutionStatus, Store
from statemachine.build import local_diagnostics
from statemachine.diagnostics import Diagnostic
from statemachine.errors import DefinitionError
from statemachine.validate import is_valid, validate, validate_text

__all__ = ["cli", "main"]

_MACHINE_TYPES = click.Choice(["standard", "express"], case_sensitive=False)
_STATUSES = click.Choice([s.value for s in ExecutionStatus], case_sensitive=False)


@click.group(cls=StepwiseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
def cli() -> None:
    """Stepwise: run Amazon States Language state machines, durably, on SQLite or PostgreSQL."""


def main() -> None:
    """The `stepwise` console script."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="stepwise: %(levelname)s: %(message)s"
    )
    cli.main(prog_name="stepwise")


T = TypeVar("T")


def with_client(call: Callable[[Engine], Awaitable[T]]) -> T:
    """Open a client Engine (no in-process worker) on --db, run `call` with it, close it."""
    url = database_url()

    async def main() -> T:
        async with Engine(url, worker=False) as engine:
            return await call(engine)

    return run_async(main)


# -- validate ------------------------------------------------------------------


@cli.command("validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--type", "machine_type", type=_MACHINE_TYPES, default="standard", show_default=True)
@click.option(
    "--local",
    is_flag=True,
    help="Stepwise's rules: plain (non-ARN) Resource names bind to registered handlers.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Also fail every Task Resource no loaded handler serves (implies --local).",
)
@activities_option
@global_options
def validate_command(
    files: tuple[str, ...],
    machine_type: str,
    local: bool,
    strict: bool,
    activities: tuple[str, ...],
) -> None:
    """Validate definitions as AWS does; print every diagnostic as FILE:/pointer: CODE: message.

    Exit 0 when all are valid, 1 when any is invalid, 2 when a file is missing or not JSON.
    """
    kind = machine_type_of(machine_type)
    import_activities(activities)
    local = local or strict
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
        if strict:
            diagnostics = sorted(
                [*diagnostics, *unknown_resources(raw, Registry().merged(default_registry))],
                key=lambda d: d.location,
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
    finish(code)


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
    document = machine_to_aws(with_client(lambda engine: engine.describe_state_machine(name)))
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
@input_options
@click.option("--name", "execution_name", metavar="EXEC", default=None, help="Execution name.")
@global_options
def start_command(
    machine: str, input_text: str | None, input_file: str | None, execution_name: str | None
) -> None:
    """Start an execution of state machine NAME; a running `stepwise worker` runs it."""
    payload = execution_input(input_text, input_file)

    record = with_client(lambda engine: engine.start(machine, payload, name=execution_name))
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
    document = execution_to_aws(with_client(lambda engine: engine.describe(execution)))
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
    events = with_client(lambda engine: engine.history(execution))
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
    records = with_client(
        lambda engine: engine.list_executions(
            machine=machine, status=status.upper() if status else None
        )
    )
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
    record = with_client(lambda engine: engine.stop(execution, error=error, cause=cause))
    stopped = iso_timestamp(record.stop_date or datetime.now(UTC))
    if json_output():
        emit_json({"stopDate": stopped})
    else:
        click.echo(f"{record.execution_id} {record.status} at {stopped}")


# -- run -------------------------------------------------------------------------


def telemetry_options(fn: Any) -> Any:
    """`--otlp URL` and `--trace-payloads` for commands that run executions."""
    fn = click.option(
        "--trace-payloads",
        is_flag=True,
        help="Put inputs and outputs (size-capped, secrets redacted) in spans.",
    )(fn)
    return click.option(
        "--otlp",
        metavar="URL",
        default=None,
        help="Export traces over OTLP/HTTP to URL (else the OTEL_* settings decide).",
    )(fn)


@contextlib.contextmanager
def telemetry_session(otlp: str | None, trace_payloads: bool) -> Iterator[None]:
    """Switch telemetry on for one command; flush and shut exporters down before exit."""
    try:
        telemetry.configure(otlp=otlp, trace_payloads=trace_payloads)
    except telemetry.TelemetryConfigError as exc:
        raise CliError(f"telemetry: {exc}") from None
    try:
        yield
    finally:
        telemetry.shutdown()


@cli.command("run")
@click.argument("file")
@input_options
@activities_option
@click.option("--name", "execution_name", metavar="N", default=None, help="Execution name.")
@click.option("--strict", is_flag=True, help="Refuse to start if a Task Resource has no handler.")
@telemetry_options
@global_options
def run_command(
    file: str,
    input_text: str | None,
    input_file: str | None,
    activities: tuple[str, ...],
    execution_name: str | None,
    strict: bool,
    otlp: str | None,
    trace_payloads: bool,
) -> None:
    """Validate FILE and run one execution of it to its end, here; print its output.

    Exit 0 when it SUCCEEDED, 1 when it FAILED, TIMED_OUT or was ABORTED.
    """
    ctx = click.get_current_context()
    _text, raw = load_definition_file(file)
    check_definition(file, raw, "STANDARD")
    payload = execution_input(input_text, input_file)
    import_activities(activities)
    if strict:
        unknown = unknown_resources(raw, Registry().merged(default_registry))
        for problem in unknown:
            click.echo(diagnostic_line(file, problem), err=True)
        if unknown:
            raise CliError(f"{file}: {len(unknown)} Task Resource(s) have no handler")

    async def run() -> ExecutionRecord:
        # No in-process worker: `run` runs its own execution, not whatever
        # else is queued in the same database.
        async with Engine(database_url(ctx), worker=False) as engine:
            return await engine.run(raw, payload, name=execution_name)

    try:
        with telemetry_session(otlp, trace_payloads):
            record = run_async(run)
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
    finish(EXIT_OK if record.status == ExecutionStatus.SUCCEEDED else EXIT_FAILED)


# -- worker ----------------------------------------------------------------------


def _display_url(url: str) -> str:
    # The worker's start line names its database, never its password.
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<database>"


@cli.command("worker")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lease-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
@activities_option
@telemetry_options
@global_options
def worker_command(
    concurrency: int,
    lease_seconds: float,
    activities: tuple[str, ...],
    otlp: str | None,
    trace_payloads: bool,
) -> None:
    """Run executions from the database until SIGTERM or SIGINT, then exit 0."""
    ctx = click.get_current_context()
    import_activities(activities)
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

    with telemetry_session(otlp, trace_payloads):
        run_async(work)


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
