"""The `stepwise` CLI's shared surface: global options anywhere, --version, the one error reporter.

Every command accepts ``--db`` and ``-o/--output`` before or after its
name; every error becomes one ``stepwise: error: …`` line and the exit code
its class carries; ``stepwise --help`` loads neither SQLAlchemy nor
OpenTelemetry.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import engine.errors as tree
from engine.cli import cli
from engine.cli.core import report_error
from engine.cli.executions import STATUSES
from engine.store import ExecutionStatus
from tests.engine.test_error_tree import TABLE

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/x"
PASS_MACHINE = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        # Commands ride out a short outage ($STEPWISE_RETRY_SECONDS, tested in
        # test_liveness_*); one second is enough for what is checked here.
        env={**os.environ, "STEPWISE_DATABASE_URL": "", "STEPWISE_RETRY_SECONDS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("stepwise: error: "), stderr
    return lines[0]


def every_command(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    context = click.Context(group)  # the root group imports its commands when asked for them
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(every_command(command, f"{prefix}{name} "))
    return found


@pytest.mark.parametrize(("path", "command"), every_command(cli), ids=lambda v: str(v))
def test_every_command_and_group_takes_the_global_options(
    path: str, command: click.Command
) -> None:
    names = {param.name for param in command.params}
    assert {"db", "output"} <= names, path


@pytest.mark.parametrize(
    "placement",
    [
        ["-o", "json", "--db", "{url}", "list"],
        ["list", "-o", "json", "--db", "{url}"],
        ["--db", "{url}", "list", "--output", "json"],
        ["--output", "text", "--db", "{url}", "list", "-o", "json"],  # closest wins
    ],
)
def test_global_options_work_before_or_after_the_command(
    placement: list[str], sqlite_url: str
) -> None:
    args = [arg.replace("{url}", sqlite_url) for arg in placement]
    created = CliRunner().invoke(cli, ["db", "upgrade", "--db", sqlite_url])
    assert created.exit_code == 0, created.output  # read commands create nothing
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"executions": []}


def test_trace_and_task_take_the_output_option(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "pass.json"
    path.write_text(json.dumps(PASS_MACHINE))
    ran = CliRunner().invoke(cli, ["run", str(path), "--name", "once", "--db", sqlite_url])
    assert ran.exit_code == 0, ran.output
    traced = CliRunner().invoke(
        cli, ["trace", "once", "--format", "json", "-o", "json", "--db", sqlite_url]
    )
    assert traced.exit_code == 0, traced.output
    assert "resourceSpans" in json.loads(traced.stdout)
    answered = CliRunner().invoke(
        cli,
        [
            "task",
            "success",
            "no-such-token",
            "--result",
            "{}",
            "--output",
            "json",
            "--db",
            sqlite_url,
        ],
    )
    assert answered.exit_code == 2
    assert one_error_line(answered.stderr).startswith("stepwise: error: InvalidToken: ")


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"stepwise {version('stepwise')}\n"


def test_an_unreachable_store_exits_3_with_one_line_and_no_traceback() -> None:
    # The reported bug: the reporter asked anyio for its cancellation class
    # after the event loop had closed, so this printed a traceback and exited 1.
    for args in (["--db", UNREACHABLE, "list"], ["list", "--db", UNREACHABLE, "-o", "json"]):
        result = run_cli(*args)
        assert result.returncode == 3, result.stderr
        assert result.stdout == ""
        assert "is unavailable" in one_error_line(result.stderr)


def test_a_store_error_out_of_a_task_group_is_reported_after_the_loop_closed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The reported bug itself: the error arrives wrapped in the task group's
    # exception group, and the reporter runs after anyio.run has returned.
    import anyio

    async def fail() -> None:
        raise tree.StoreUnavailable("database x is unavailable: connection refused")

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(fail)
            await anyio.sleep_forever()

    with pytest.raises(BaseExceptionGroup) as caught:
        anyio.run(main)
    assert report_error(caught.value) == 3
    assert one_error_line(capsys.readouterr().err) == (
        "stepwise: error: database x is unavailable: connection refused"
    )


def test_a_usage_error_exits_2_with_one_line() -> None:
    result = run_cli("list", "--bogus")
    assert result.returncode == 2
    assert "No such option" in one_error_line(result.stderr)


@pytest.mark.parametrize(("cls", "aws_code", "exit_code"), TABLE, ids=lambda v: str(v))
def test_the_reporter_renders_each_error_from_its_class(
    cls: type[tree.StepwiseError],
    aws_code: str | None,
    exit_code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = (
        cls("Boom", "it broke")
        if issubclass(cls, tree.StatesError)
        else cls([])
        if issubclass(cls, tree.DefinitionError)
        else cls("what happened")
    )
    # As the engine's task group delivers it: wrapped, beside a cancellation.
    wrapped = BaseExceptionGroup("task group", [asyncio.CancelledError(), error])
    assert report_error(wrapped) == exit_code
    line = one_error_line(capsys.readouterr().err)
    assert line == f"stepwise: error: {aws_code + ': ' if aws_code else ''}{error}"


def test_the_reporter_leaves_bugs_to_python() -> None:
    assert report_error(ValueError("a bug")) is None


def test_status_choices_are_the_store_statuses() -> None:
    assert set(STATUSES) == {status.value for status in ExecutionStatus}


def test_help_loads_neither_sqlalchemy_nor_opentelemetry() -> None:
    probe = (
        "import sys\n"
        "sys.argv = ['stepwise', '--help']\n"
        "from engine.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('sqlalchemy', 'opentelemetry', 'jsonata', 'anyio', 'psycopg', 'engine.api')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy),"
        " file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "Commands:" in result.stdout
    assert result.stderr.strip() == "[]"


def test_activities_imports_nothing_from_engine() -> None:
    for path in (REPO / "activities").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0] == "engine"], path


@pytest.mark.parametrize(
    ("variable", "value", "code"),
    [
        ("STEPWISE_MAX_HISTORY_EVENTS", "many", 2),
        ("STEPWISE_MAX_HISTORY_EVENTS", "1", 2),
        ("STEPWISE_RETENTION_DAYS", "a month", 2),
        ("STEPWISE_RETENTION_DAYS", "-3", 2),
        ("STEPWISE_RETENTION_DAYS", "nan", 2),
        ("STEPWISE_RETRY_SECONDS", "soon", 2),
        ("STEPWISE_CONNECT_TIMEOUT", "x", 3),
        ("STEPWISE_SQLITE_BUSY_TIMEOUT", "-1", 3),
        ("STEPWISE_STATEMENT_TIMEOUT", "inf", 3),
    ],
)
def test_an_unusable_setting_in_the_environment_is_one_error_naming_it(
    tmp_path: Path, variable: str, value: str, code: int
) -> None:
    # Each of these once ran with its default in place of the value (or
    # ended in a traceback): a setting given is used or refused, never dropped.
    db = f"sqlite:///{tmp_path / 'settings.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "examples/hello.json", "--db", db],
        cwd=REPO,
        env={**os.environ, "STEPWISE_DATABASE_URL": "", variable: value},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == code, result.stderr
    line = one_error_line(result.stderr)
    assert variable in line or "history event limit" in line, line
    assert repr(value) in line or value in line, line
    assert not (tmp_path / "settings.db").exists() or result.stdout == ""


def test_usable_settings_in_the_environment_are_taken(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'settings.db'}"
    env = {
        **os.environ,
        "STEPWISE_DATABASE_URL": "",
        "STEPWISE_MAX_HISTORY_EVENTS": " 3 ",
        "STEPWISE_RETENTION_DAYS": "30",
        "STEPWISE_SQLITE_BUSY_TIMEOUT": "2.5",
        "STEPWISE_RETRY_SECONDS": "",
    }
    # One Pass state makes four events: the limit of 3 taken from the
    # environment is what fails the execution.
    machine = tmp_path / "pass.json"
    machine.write_text(json.dumps(PASS_MACHINE))
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", str(machine), "--db", db],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr
    assert "maximum number of history events (3)" in result.stdout + result.stderr, result
