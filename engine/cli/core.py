"""What every `stepwise` command shares: the global options, the error reporter, common inputs.

The global options ``--db URL`` and ``-o/--output text|json`` are accepted
by every command and group, before or after its name (``stepwise -o json
list`` and ``stepwise list -o json`` mean the same; the one given closest to
the command wins). `report_error` is the one error reporter: it turns any
error — a click usage error, a `CliError` or a `StepwiseError` — into one
``stepwise: error: …`` line on stderr and an exit code, rendered from the
error's class (`aws_code`, `exit_code`; see `engine.errors`), never a
traceback. `StepwiseGroup` and `StepwiseCommand` run it, so a command
invoked on its own reports errors the same way. The rest reads what
commands take: definition files, execution input, ``--activities``
modules. Commands survive a short store outage: `with_client` and
`retry_transient` retry transient store errors (a server restarting,
refused or reset connections, a locked or full database) with backoff for
``$STEPWISE_RETRY_SECONDS`` (default 10) before the reporter prints one
line and exits 3; configuration errors are reported at once. Read
commands (``list``, ``describe``, ``history``, ``trace``) create nothing:
a missing SQLite file or a database without Stepwise's tables is an error
naming the URL. Heavy modules (the engine, SQLAlchemy, anyio, the language) are
imported inside the functions that need them, so ``stepwise --help`` stays
fast.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from gettext import gettext as _
from typing import TYPE_CHECKING, Any, TypeVar

import click

from engine.cli.output import (
    EXIT_OK,
    CliError,
    diagnostic_line,
    parse_json_text,
    read_file,
    read_json_argument,
)

if TYPE_CHECKING:
    from engine.api import Engine

__all__ = [
    "LazyGroup",
    "StepwiseCommand",
    "StepwiseGroup",
    "activities_option",
    "check_definition",
    "database_url",
    "end_startup",
    "execution_input",
    "finish",
    "global_options",
    "import_activities",
    "input_options",
    "json_output",
    "load_definition_file",
    "machine_type_of",
    "read_only_store",
    "report_error",
    "retry_seconds",
    "retry_transient",
    "run_async",
    "start_startup",
    "with_client",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_DB_KEY = "stepwise.db"
_OUTPUT_KEY = "stepwise.output"


# -- global options ----------------------------------------------------------


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        # ctx.meta is shared by the whole context chain, so `stepwise --db X
        # history E` and `stepwise history E --db X` mean the same; the
        # option given closest to the command is processed last and wins.
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
    if url:
        return url
    from engine.store import default_database_url

    return default_database_url()


def json_output(ctx: click.Context | None = None) -> bool:
    """True when the invocation asked for ``--output json``."""
    ctx = ctx or click.get_current_context()
    return str(ctx.meta.get(_OUTPUT_KEY, "text")).lower() == "json"


# While a command loads what it needs (SQLAlchemy, the language, the engine:
# hundreds of thousands of objects that live as long as the process, and
# next to no cyclic garbage) the cyclic collector would walk them again and
# again, about a tenth of `stepwise run`'s start-up. `main()` switches it off
# for that phase; `end_startup` switches it back on where the command's real
# work begins: the event loop (`run_async`), the HTTP server, a purge's loop.
_collector_paused = False


def start_startup() -> None:
    """Pause the cyclic garbage collector while the command loads (see `end_startup`)."""
    global _collector_paused
    if gc.isenabled():
        gc.disable()
        _collector_paused = True


def end_startup() -> None:
    """Resume the cyclic garbage collector if `start_startup` paused it."""
    global _collector_paused
    if _collector_paused:
        _collector_paused = False
        # What was loaded lives as long as the process: frozen, it is never walked
        # again (without this the first collection walks all of it at once).
        gc.freeze()
        gc.enable()


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine function to completion on a fresh event loop; return its result."""
    import anyio

    end_startup()
    return anyio.run(fn)


# Commands that only read: they must never create a database or its schema.
_READ_COMMANDS = frozenset({"list", "describe", "history", "trace"})
# Commands whose whole call may be repeated after a transient failure: reads,
# and `machines create` (the same definition is the same version). Others
# (start, stop) are repeated only when the failure came before their call.
_REPEATABLE_COMMANDS = _READ_COMMANDS | {"create"}
_DEFAULT_RETRY_SECONDS = 10.0


def retry_seconds() -> float:
    """How long a command keeps retrying transient store errors ($STEPWISE_RETRY_SECONDS).

    Unset or empty: 10 s. Any other value must be a finite number of seconds
    ≥ 0 (a usage error otherwise, never silently the default).
    """
    raw = os.environ.get("STEPWISE_RETRY_SECONDS", "").strip()
    if not raw:
        return _DEFAULT_RETRY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise click.UsageError(
            f"STEPWISE_RETRY_SECONDS must be a number of seconds, 0 or more, not {raw!r}"
        )
    return value


def _transient(exc: BaseException) -> bool:
    from engine.store.boundary import is_transient

    return is_transient(_leaf_error(exc))


def retry_transient(attempt: Callable[[int], T], *, seconds: float | None = None) -> T:
    """Call ``attempt(n)`` (n = 0, 1, …) until it does not fail with a transient store error.

    Waits with capped exponential backoff between attempts, for at most
    `seconds` (default `retry_seconds()`) in all; then the last error is
    raised for the reporter (exit 3, one line). Other errors are raised at once.
    """
    from engine.store.boundary import Backoff

    budget = retry_seconds() if seconds is None else seconds
    deadline = time.monotonic() + budget
    backoff = Backoff(first=0.2, cap=2.0)
    number = 0
    while True:
        try:
            return attempt(number)
        except BaseException as exc:
            if not _transient(exc):
                raise
            delay = backoff.next_delay()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            time.sleep(min(delay, remaining))
        number += 1


def read_only_store(url: str) -> None:
    """Refuse a database that does not exist yet (a read command must not create it).

    Raises a permanent StoreUnavailable naming the URL for a missing SQLite
    file or a database without Stepwise's tables.
    """
    from engine.store import Store

    Store(url, create=False, auto_migrate=False).close()


def _command_name(ctx: click.Context | None = None) -> str:
    ctx = ctx or click.get_current_context(silent=True)
    return (ctx.command.name or "") if ctx is not None else ""


def with_client(call: Callable[[Engine], Awaitable[T]]) -> T:
    """Open a client Engine (no in-process worker) on --db, run `call` with it, close it.

    Transient store errors are retried for a bounded time (`retry_transient`);
    read commands first check the database exists (`read_only_store`).
    """
    from engine.api import Engine

    url = database_url()
    command = _command_name()
    opened = False

    async def main() -> T:
        nonlocal opened
        async with Engine(url, worker=False) as engine:
            opened = True
            return await call(engine)

    def attempt(_number: int) -> T:
        nonlocal opened
        if command in _READ_COMMANDS:
            read_only_store(url)
        opened = False
        try:
            return run_async(main)
        except BaseException as exc:
            if opened and command not in _REPEATABLE_COMMANDS:
                # The call itself may have written before failing: not repeated.
                raise _NotRepeated(exc) from None
            raise

    try:
        return retry_transient(attempt)
    except _NotRepeated as wrapper:
        raise wrapper.error from None


class _NotRepeated(Exception):
    """Carries a failure out of `retry_transient` without a retry."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


# -- errors ------------------------------------------------------------------


def _leaf_error(exc: BaseException) -> BaseException:
    # A failure inside the engine's task group arrives wrapped in an exception
    # group; the user wants the one error inside. Cancellations (BaseException
    # but not Exception, on every backend) are the group's echo of it, not the
    # cause. No anyio call here: this runs after the event loop has closed.
    while isinstance(exc, BaseExceptionGroup):
        inner = [
            e
            for e in exc.exceptions
            if isinstance(e, Exception | KeyboardInterrupt | BaseExceptionGroup)
        ]
        if not inner:
            break
        wanted = [e for e in inner if _is_user_error(e)]
        exc = (wanted or inner)[0]
    return exc


def _is_user_error(exc: BaseException) -> bool:
    from statemachine.errors import StepwiseError

    return isinstance(exc, StepwiseError | click.ClickException | BaseExceptionGroup)


def error_message(exc: BaseException) -> str:
    """The one-line message for a `StepwiseError`: ``AwsCode: message`` when the class has one."""
    code: str | None = getattr(type(exc), "aws_code", None)
    return f"{code}: {exc}" if code else str(exc)


def report_error(exc: BaseException) -> int | None:
    """Print a user error as one stderr line and return its exit code; None when it is a bug."""
    from statemachine.errors import StepwiseError

    exc = _leaf_error(exc)
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        exc.show()
        return exc.exit_code
    if isinstance(exc, click.ClickException):
        click.echo(f"stepwise: error: {exc.format_message()}", err=True)
        return exc.exit_code
    if isinstance(exc, StepwiseError):
        click.echo(f"stepwise: error: {error_message(exc)}", err=True)
        return type(exc).exit_code
    if isinstance(exc, KeyboardInterrupt | click.Abort):
        click.echo("stepwise: interrupted", err=True)
        return 130
    return None


def _main_reporting_errors(
    command: click.Command,
    args: Sequence[str] | None,
    prog_name: str | None,
    complete_var: str | None,
    standalone_mode: bool,
    extra: dict[str, Any],
) -> Any:
    code: Any
    try:
        code = click.Command.main(
            command, args, prog_name or "stepwise", complete_var, standalone_mode=False, **extra
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


class StepwiseGroup(click.Group):
    """A group whose `main` turns every user error into one stderr line and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        return _main_reporting_errors(self, args, prog_name, complete_var, standalone_mode, extra)


class LazyGroup(StepwiseGroup):
    """A `StepwiseGroup` whose subcommands are imported only when one is used.

    `lazy` maps a command name to ``"module:attribute"``, the click command
    to import when that command runs (or its own ``--help`` is asked for).
    `summaries` maps a name to the first sentence of its help, so the group's
    ``--help`` lists every command without importing any; a name without
    one is imported to be listed. The listing is click's own, line for line.
    """

    def __init__(
        self,
        *args: Any,
        lazy: Mapping[str, str] | None = None,
        summaries: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.summaries = dict(summaries or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self._load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, name: str) -> click.Command:
        module, _colon, attribute = self.lazy[name].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[name]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            if name not in self.commands and name in self.summaries:
                # A stand-in carrying the summary: click shortens it exactly as it
                # would the command's own help.
                listed.append((name, click.Command(name, help=self.summaries[name])))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                listed.append((name, command))
        if not listed:
            return
        limit = formatter.width - 6 - max(len(name) for name, _command in listed)
        rows = [(name, command.get_short_help_str(limit)) for name, command in listed]
        with formatter.section(_("Commands")):
            formatter.write_dl(rows)


class StepwiseCommand(click.Command):
    """A command that reports errors as the root group does when it is invoked on its own."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        return _main_reporting_errors(self, args, prog_name, complete_var, standalone_mode, extra)


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
    from statemachine.build import local_diagnostics
    from statemachine.validate import is_valid

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
