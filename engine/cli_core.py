"""What every `stepwise` command shares: global options, error reporting, definitions, input.

`global_options` gives a command (or group) ``--db URL`` and ``-o
text|json``; `database_url()` and `json_output()` read them back wherever
they were given on the command line. `StepwiseGroup` is the root group's
class: it turns every user error — a click usage error or a `StepwiseError`
— into one ``stepwise: error: …`` line on stderr and the exit code of its
kind, never a traceback. The rest reads what commands take: definition
files (checked with Stepwise's local rules), execution input, and
``--activities`` modules. Commands other modules add (``trace``, ``task``,
``activity``) may use these too.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import click

from engine.cli_output import (
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    CliError,
    diagnostic_line,
    parse_json_text,
    read_file,
    read_json_argument,
)
from engine.errors import LeaseLost, NondeterminismError, StepwiseError, StoreUnavailable
from engine.store import default_database_url
from statemachine.build import local_diagnostics
from statemachine.validate import is_valid

__all__ = [
    "StepwiseGroup",
    "activities_option",
    "check_definition",
    "database_url",
    "execution_input",
    "finish",
    "global_options",
    "import_activities",
    "input_options",
    "json_output",
    "load_definition_file",
    "machine_type_of",
    "report_error",
    "run_async",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_DB_KEY = "stepwise.db"
_OUTPUT_KEY = "stepwise.output"

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


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine function to completion on a fresh event loop; return its result."""
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


def report_error(exc: BaseException) -> int | None:
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


class StepwiseGroup(click.Group):
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
            reported = report_error(exc)
            if reported is None:
                raise
            code = reported
        code = EXIT_OK if code is None else code
        if standalone_mode:
            sys.exit(code)
        return code


def finish(code: int) -> None:
    """End the command with exit `code` (nothing happens for 0)."""
    if code != EXIT_OK:
        raise click.exceptions.Exit(code)


# -- definitions ---------------------------------------------------------------


def machine_type_of(value: str) -> str:
    """``standard``/``express`` as given on the command line → ``STANDARD``/``EXPRESS``."""
    return value.upper()


def load_definition_file(path: str) -> tuple[str, Any]:
    """(text, parsed value) of a definition file; CliError (exit 2) when unreadable or not JSON."""
    text = read_file(path, what=path)
    return text, parse_json_text(text, what=path)


def check_definition(path: str, raw: Any, machine_type: str) -> None:
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


def import_activities(modules: Sequence[str]) -> None:
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


_activities_modules = click.option(
    "--activities",
    "activities",
    metavar="MODULE",
    multiple=True,
    envvar="STEPWISE_ACTIVITIES",
    help=(
        "Import MODULE (from the current directory too) to register its @activity handlers "
        "[env: STEPWISE_ACTIVITIES, space-separated]."
    ),
)
_resources_file = click.option(
    "--resources",
    "resources",
    metavar="FILE",
    default=None,
    envvar="STEPWISE_RESOURCES",
    help=(
        "A mapping file binding Resource ARNs/patterns to handlers (and mocked responses) "
        "[env: STEPWISE_RESOURCES]."
    ),
    callback=lambda _ctx, _param, value: _load_resources(value),
    expose_value=False,
)


def activities_option(fn: Any) -> Any:
    """`--activities MODULE`... and `--resources FILE`: what Tasks resolve to."""
    return _activities_modules(_resources_file(fn))


def _load_resources(path: str | None) -> None:
    if not path:
        return
    from activities.mapping import MappingError, load_mapping
    from activities.registry import default_registry

    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        load_mapping(path, default_registry)
    except MappingError as exc:
        raise CliError(f"--resources {path}: {exc}") from None


def execution_input(inline: str | None, input_file: str | None) -> Any:
    """The execution input from ``--input`` or ``--input-file`` ({} when neither).

    Raises CliError (exit 2) for both at once, an unreadable file or text that is not JSON.
    """
    if inline is not None and input_file is not None:
        raise CliError("give either --input or --input-file, not both")
    if input_file is not None:
        return read_json_argument(f"file://{input_file}", what="the execution input")
    if inline is not None:
        return read_json_argument(inline, what="the execution input")
    return {}


def input_options(fn: F) -> F:
    """Add ``--input JSON`` and ``--input-file FILE`` (read them with `execution_input`)."""
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
