"""How the `stepwise` CLI talks: JSON for scripts, tables and lines for people, errors on stderr.

The rules every command follows live here: with ``--output json`` stdout
carries exactly one JSON document and nothing else; every message for
people (logs, warnings, errors) goes to stderr; an error is one line,
``stepwise: error: <message>`` (see `engine.cli.core.report_error`). Also
here: the exit codes, reading the JSON arguments the commands take (inline
text, ``-`` for stdin, ``file://path``), and printing definition
diagnostics as ``FILE:/json/pointer: CODE: message``. Imports nothing heavy.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from statemachine.diagnostics import Diagnostic

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_STORE",
    "EXIT_USAGE",
    "CliError",
    "InfrastructureFailure",
    "diagnostic_line",
    "diagnostic_to_json",
    "emit_json",
    "parse_json_text",
    "print_table",
    "read_file",
    "read_json_argument",
    "read_text_argument",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STORE = 3


class CliError(click.ClickException):
    """A usage error or bad input the CLI reports as one line on stderr, exiting 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"stepwise: error: {self.format_message()}", err=True)


class InfrastructureFailure(CliError):
    """Something outside the request failed (a trace exporter, say): one line, exit 3."""

    exit_code = EXIT_STORE


def emit_json(document: Any) -> None:
    """Print `document` as the one JSON document on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows in left-aligned columns under `headers` (people's view of a list)."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def diagnostic_line(file: str, diagnostic: Diagnostic) -> str:
    """``FILE:/pointer: CODE: message``; warnings say ``warning:`` before the code."""
    location = diagnostic.location or "/"
    severity = "warning: " if diagnostic.severity == "WARNING" else ""
    return f"{file}:{location}: {severity}{diagnostic.code}: {diagnostic.message}"


def diagnostic_to_json(diagnostic: Diagnostic) -> dict[str, str]:
    """A diagnostic as ``{"severity", "code", "message", "location"}``."""
    return {
        "severity": diagnostic.severity,
        "code": diagnostic.code,
        "message": diagnostic.message,
        "location": diagnostic.location,
    }


def read_text_argument(value: str, *, what: str) -> str:
    """The text behind an argument: ``-`` reads stdin, ``file://path`` a file, else the value.

    Raises CliError (exit 2) when the file cannot be read.
    """
    if value == "-":
        return sys.stdin.read()
    if value.startswith("file://"):
        return read_file(value[len("file://") :], what=what)
    return value


def read_file(path: str, *, what: str) -> str:
    """The UTF-8 text of `path`; raises CliError (exit 2) naming `what` when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{what}: no such file: {path}") from None
    except IsADirectoryError:
        raise CliError(f"{what}: {path} is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{what}: cannot read {path}: {exc}") from None


def read_json_argument(value: str, *, what: str) -> Any:
    """Parse a JSON argument given inline, as ``-`` (stdin) or as ``file://path``.

    Raises CliError (exit 2) with AWS's InvalidExecutionInput-style message
    when the text is not JSON.
    """
    text = read_text_argument(value, what=what)
    return parse_json_text(text, what=what, error_name="InvalidExecutionInput")


def parse_json_text(text: str, *, what: str, error_name: str | None = None) -> Any:
    """Decode JSON text; raises CliError (exit 2) saying where it stops being JSON.

    `error_name` (AWS's name for the error, e.g. ``InvalidExecutionInput``)
    prefixes the message when given.
    """
    prefix = f"{error_name}: " if error_name else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{prefix}{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise CliError(f"{prefix}{what} nests JSON too deeply") from None
