"""`stepwise validate` and `stepwise run`: check definitions, and run one execution here.

``validate`` reports every diagnostic of each file as AWS would (or by
Stepwise's local rules with ``--local``/``--strict``); ``run`` validates a
file and runs one execution of it to its end in this process, printing its
output. Also here, shared with ``worker``: the ``--otlp``/``--trace-payloads``
options and the telemetry session, and the operator's options
(``--allow-http-to``, ``--sql-role``, ``--max-history-events``) with
`operator_settings`, which turns them into a Registry and Engine arguments.
A definition file over 1 MiB is refused before anything else.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from engine.cli.core import (
    StepwiseCommand,
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
    retry_transient,
    run_async,
)
from engine.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    diagnostic_line,
    diagnostic_to_json,
    emit_json,
    parse_json_text,
    read_file,
)
from engine.cli.s3root import s3_root_option

if TYPE_CHECKING:
    from activities.registry import Registry
    from engine.store import ExecutionRecord
    from statemachine.diagnostics import Diagnostic

__all__ = [
    "MACHINE_TYPES",
    "OperatorSettings",
    "operator_options",
    "operator_settings",
    "pretty",
    "run_command",
    "telemetry_options",
    "telemetry_session",
]

MACHINE_TYPES = click.Choice(["standard", "express"], case_sensitive=False)


def pretty(value: Any) -> str:
    """`value` as indented JSON for people."""
    return json.dumps(value, indent=2, ensure_ascii=False)


@click.command("validate", cls=StepwiseCommand)
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--type", "machine_type", type=MACHINE_TYPES, default="standard", show_default=True)
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
    from activities.registry import Registry, default_registry
    from engine.resources import unknown_resources
    from statemachine.build import local_diagnostics
    from statemachine.validate import is_valid, validate

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
        diagnostics: list[Diagnostic] = [
            *_size_diagnostics(text),
            *(
                local_diagnostics(raw, machine_type=kind)  # type: ignore[arg-type]
                if local
                else validate(raw, machine_type=kind)  # type: ignore[arg-type]
            ),
        ]
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


def _size_diagnostics(text: str) -> list[Diagnostic]:
    """DEFINITION_TOO_LARGE when the file's text is over AWS's 1 MiB, else nothing."""
    from statemachine.build import check_definition_size
    from statemachine.diagnostics import Diagnostic
    from statemachine.errors import DefinitionError

    try:
        check_definition_size(text)
    except DefinitionError as exc:
        return [d for d in exc.diagnostics if isinstance(d, Diagnostic)]
    return []


def _unreadable(path: str) -> list[dict[str, str]]:
    # A file that is readable but not JSON still gets AWS's INVALID_JSON_DESCRIPTION.
    from statemachine.validate import validate_text

    try:
        text = read_file(path, what=path)
    except CliError:
        return []
    return [diagnostic_to_json(d) for d in validate_text(text)]


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


def operator_options(fn: Any) -> Any:
    """The operator's options for commands that run executions (`run`, `worker`)."""
    fn = click.option(
        "--max-history-events",
        type=click.IntRange(min=2),
        default=None,
        metavar="N",
        help="Fail an execution that reaches N history events, as AWS does at 25,000 "
        "(default: $STEPWISE_MAX_HISTORY_EVENTS, else 25000).",
    )(fn)
    fn = click.option(
        "--sql-role",
        metavar="ROLE",
        default=None,
        help="PostgreSQL: run the SQL built-in's statements as ROLE (SET LOCAL ROLE), so "
        "they touch only what ROLE was granted.",
    )(fn)
    return click.option(
        "--allow-http-to",
        "allow_http_to",
        metavar="CIDR|HOST",
        multiple=True,
        help="Let the HTTP built-in reach this private/loopback network, address or host "
        "(repeatable; link-local and cloud metadata addresses stay refused).",
    )(fn)


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator's options give an Engine: its registry and its history limit."""

    registry: Registry
    max_history_events: int | None


def operator_settings(
    url: str, allow_http_to: tuple[str, ...], sql_role: str | None, max_history_events: int | None
) -> OperatorSettings:
    """Check the operator's options and build the Registry they configure.

    Raises CliError (exit 2) for an allow-list entry that is not a CIDR,
    address or host name, or a SQL role that is malformed or given for SQLite.
    """
    from activities.netpolicy import PolicyError
    from activities.registry import Registry

    registry = Registry()
    try:
        registry.allow_http_to(*allow_http_to)
    except PolicyError as exc:
        raise CliError(f"--allow-http-to: {exc}") from None
    if sql_role is not None:
        from activities.sql import SqlPolicy

        if not url.startswith("postgresql"):
            raise CliError("--sql-role needs a PostgreSQL database (SQLite has no roles)")
        try:
            registry.sql_role = SqlPolicy(role=sql_role).role
        except ValueError as exc:
            raise CliError(f"--sql-role: {exc}") from None
    return OperatorSettings(registry=registry, max_history_events=max_history_events)


@contextlib.contextmanager
def telemetry_session(otlp: str | None, trace_payloads: bool) -> Iterator[None]:
    """Switch telemetry on for one command; flush and shut exporters down before exit."""
    from engine import telemetry

    try:
        telemetry.configure(otlp=otlp, trace_payloads=trace_payloads)
    except telemetry.TelemetryConfigError as exc:
        raise CliError(f"telemetry: {exc}") from None
    try:
        yield
    finally:
        telemetry.shutdown()


@click.command("run", cls=StepwiseCommand)
@click.argument("file", required=False)
@input_options
@activities_option
@click.option("--name", "execution_name", metavar="N", default=None, help="Execution name.")
@click.option("--strict", is_flag=True, help="Refuse to start if a Task Resource has no handler.")
@operator_options
@click.option(
    "--resume",
    "resume",
    metavar="EXEC",
    default=None,
    help="Instead of FILE: finish execution EXEC, whose `run` process died.",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="How long a killed run holds its execution before --resume can take it over.",
)
@s3_root_option
@telemetry_options
@global_options
def run_command(
    file: str | None,
    input_text: str | None,
    input_file: str | None,
    activities: tuple[str, ...],
    execution_name: str | None,
    strict: bool,
    resume: str | None,
    lease_seconds: float,
    allow_http_to: tuple[str, ...],
    sql_role: str | None,
    max_history_events: int | None,
    otlp: str | None,
    trace_payloads: bool,
) -> None:
    """Validate FILE and run one execution of it to its end, here; print its output.

    The execution is on a private queue (see `describe`), so no `stepwise
    worker` takes it. If this process dies, `run --resume EXEC` (with the
    same --activities) finishes it. Exit 0 when it SUCCEEDED, 1 when it
    FAILED, TIMED_OUT or was ABORTED.
    """
    from activities.registry import Registry, default_registry
    from engine.api import Engine
    from engine.resources import unknown_resources
    from engine.store import ExecutionAlreadyExists
    from statemachine.diagnostics import Diagnostic
    from statemachine.errors import DefinitionError

    ctx = click.get_current_context()
    url = database_url(ctx)
    settings = operator_settings(url, allow_http_to, sql_role, max_history_events)
    if resume is not None:
        _check_resume_options(file, input_text, input_file, execution_name, strict)
        import_activities(activities)

        async def resumed() -> ExecutionRecord:
            async with Engine(
                url,
                worker=False,
                lease_seconds=lease_seconds,
                registry=settings.registry,
                max_history_events=settings.max_history_events,
            ) as engine:
                return await engine.resume(resume)

        with telemetry_session(otlp, trace_payloads):
            _report_run(run_async(resumed))
        return
    if file is None:
        raise CliError("missing argument FILE (or --resume EXEC)")
    text, raw = load_definition_file(file)
    oversized = _size_diagnostics(text)
    for problem in oversized:
        click.echo(diagnostic_line(file, problem), err=True)
    if oversized:
        raise CliError(f"{file}: invalid state machine definition")
    check_definition(file, raw, "STANDARD")
    payload = execution_input(input_text, input_file)
    import_activities(activities)
    if strict:
        unknown = unknown_resources(raw, Registry().merged(default_registry))
        for problem in unknown:
            click.echo(diagnostic_line(file, problem), err=True)
        if unknown:
            raise CliError(f"{file}: {len(unknown)} Task Resource(s) have no handler")

    # Pinned once, so a run cut short by a store outage is picked up again
    # (same name, same lease owner) instead of started twice.
    run_name = execution_name or str(uuid.uuid4())
    worker_id = f"run-{uuid.uuid4().hex[:12]}"

    async def run(number: int) -> ExecutionRecord:
        # No in-process worker: `run` runs its own execution, not whatever
        # else is queued in the same database.
        async with Engine(
            url,
            worker=False,
            worker_id=worker_id,
            lease_seconds=lease_seconds,
            registry=settings.registry,
            max_history_events=settings.max_history_events,
        ) as engine:
            try:
                return await engine.run(raw, payload, name=run_name)
            except ExecutionAlreadyExists:
                if number == 0:
                    raise
                return await engine.describe(run_name)  # it ended before the outage

    try:
        with telemetry_session(otlp, trace_payloads):
            record = retry_transient(lambda number: run_async(lambda: run(number)))
    except DefinitionError as exc:
        for diagnostic in exc.diagnostics:
            if isinstance(diagnostic, Diagnostic):
                click.echo(diagnostic_line(file, diagnostic), err=True)
        raise CliError(f"{file}: invalid state machine definition") from None
    _report_run(record)


def _check_resume_options(
    file: str | None,
    input_text: str | None,
    input_file: str | None,
    execution_name: str | None,
    strict: bool,
) -> None:
    # A resumed execution keeps its definition, input and name: anything
    # that would change them is a mistake worth naming.
    given = [
        label
        for label, value in (
            ("FILE", file),
            ("--input", input_text),
            ("--input-file", input_file),
            ("--name", execution_name),
            ("--strict", strict or None),
        )
        if value is not None
    ]
    if given:
        raise CliError(
            f"--resume continues an execution as it was started; drop {', '.join(given)}"
        )


def _report_run(record: ExecutionRecord) -> None:
    """Print a finished run's output (or its error) and exit 0 or 1 by its status."""
    from engine.history import execution_to_aws
    from engine.store import ExecutionStatus

    document = execution_to_aws(record)
    if json_output():
        emit_json(document)
    elif record.status == ExecutionStatus.SUCCEEDED:
        click.echo(pretty(document["output"]))
    else:
        detail = ": ".join(str(p) for p in (record.error, record.cause) if p is not None)
        click.echo(f"{record.status}: {detail}" if detail else record.status, err=True)
    finish(EXIT_OK if record.status == ExecutionStatus.SUCCEEDED else EXIT_FAILED)
