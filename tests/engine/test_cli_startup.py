"""What `stepwise` loads before it does anything: only what the command needs.

``stepwise --help`` lists every command without importing any command module
(the root group is lazy: `engine.cli.COMMANDS`, `engine.cli.SUMMARIES`), and
lists them exactly as click would with every command loaded. ``stepwise run``
on SQLite never loads the PostgreSQL driver, the OpenTelemetry SDK, croniter,
multiprocessing, the migrations, the Lambda emulation, the built-ins, the
trace builder or the other commands' modules. These are checks of what a
fresh process imported (`sys.modules`), never of how long it took.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from engine.cli import COMMANDS, SUMMARIES, cli
from engine.cli.core import LazyGroup

REPO = Path(__file__).resolve().parents[2]

# Modules that a command's module, not the command tree, would bring in.
_COMMAND_MODULES = sorted({target.partition(":")[0] for target in COMMANDS.values()})


def _modules_after(argv: list[str], cwd: Path, prefix: str = "") -> tuple[list[str], str]:
    """Run ``stepwise ARGV`` in a fresh interpreter; return (its sys.modules, its stdout)."""
    probe = (
        "import sys\n"
        f"{prefix}"
        f"sys.argv = ['stepwise', *{argv!r}]\n"
        "from engine.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write('MODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=True
    )
    line = next(x for x in result.stderr.splitlines() if x.startswith("MODULES "))
    return line.split()[1:], result.stdout


def _loaded(modules: list[str], *packages: str) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_help_imports_no_command_module() -> None:
    modules, stdout = _modules_after(["--help"], REPO)
    assert "Commands:" in stdout
    for name in COMMANDS:
        assert f"  {name} " in stdout
    assert _loaded(modules, *_COMMAND_MODULES) == []
    assert _loaded(modules, "sqlalchemy", "anyio", "statemachine", "activities", "msgspec") == []
    assert _loaded(modules, "engine") == [
        "engine",
        "engine.cli",
        "engine.cli.core",
        "engine.cli.output",
    ]


def test_every_command_has_a_summary() -> None:
    assert set(SUMMARIES) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_summary_is_the_first_sentence_of_the_commands_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name and not command.hidden
    stand_in = click.Command(name, help=SUMMARIES[name])
    for limit in (20, 45, 64, 1000):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_lazy_listing_is_clicks_own() -> None:
    # A fresh lazy group has loaded nothing: it lists from the summaries alone.
    lazy = LazyGroup("stepwise", lazy=COMMANDS, summaries=SUMMARIES)
    loaded = {name: cli.get_command(click.Context(cli), name) for name in COMMANDS}
    eager = click.Group("stepwise", commands={n: c for n, c in loaded.items() if c is not None})
    for width in (60, 80, 120):
        listed_lazily = CliRunner().invoke(lazy, ["--help"], terminal_width=width).output
        listed_eagerly = CliRunner().invoke(eager, ["--help"], terminal_width=width).output
        assert lazy.commands == {}
        assert listed_lazily.split("Commands:")[1] == listed_eagerly.split("Commands:")[1]


def test_an_unknown_command_is_still_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output


def test_run_on_sqlite_loads_only_what_it_uses(tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text('{"name": "world"}')
    argv = [
        "--db",
        f"sqlite:///{tmp_path / 'run.db'}",
        "-o",
        "json",
        "run",
        str(REPO / "examples" / "hello.json"),
        "--input-file",
        str(tmp_path / "input.json"),
        "--activities",
        "examples.hello_activities",
    ]
    # The example's handlers are imported from the current directory: the repository.
    modules, stdout = _modules_after(argv, REPO)
    assert json.loads(stdout)["status"] == "SUCCEEDED"
    assert "engine.api" in modules  # it did run the engine
    unused = _loaded(
        modules,
        "psycopg",
        "psycopg_binary",
        "sqlalchemy.dialects.postgresql",
        "opentelemetry",
        "croniter",
        "multiprocessing",
        "cryptography",
        "starlette",
        "uvicorn",
        "engine.http",
        "engine.web",
        "engine.store.postgres",
        # A fresh SQLite file takes its schema in one pass (fresh_sqlite.py).
        "engine.store.migrations",
        # What a run whose definition calls no Lambda function and no
        # built-in, with telemetry off, never uses: the Lambda emulation, the
        # HTTP, SQL and shell built-ins, the trace builder.
        "activities.lambda_",
        "activities.http",
        "activities.sql",
        "activities.shell",
        "engine.telemetry.spans",
    )
    assert unused == []
    others = [m for m in _COMMAND_MODULES if m != "engine.cli.definitions"]
    assert _loaded(modules, *others) == []


def test_telemetry_off_loads_no_sdk(tmp_path: Path) -> None:
    probe = (
        "import os, sys\n"
        "for k in [k for k in os.environ if k.startswith('OTEL_')]: del os.environ[k]\n"
        "from engine import telemetry\n"
        "assert telemetry.configure() is None\n"
        "telemetry.shutdown()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_console_script_redacts_logs_and_loads_the_redactor_only_to_log() -> None:
    probe = (
        "import logging, sys\n"
        "sys.argv = ['stepwise', '--version']\n"
        "from engine.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('redactor loaded:', 'engine.redact' in sys.modules)\n"
        "logging.getLogger('stepwise.probe').warning('login failed: password=hunter2 at db')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "redactor loaded: False" in result.stdout
    assert "hunter2" not in result.stderr
    assert "stepwise: WARNING: login failed: password=[REDACTED] at db" in result.stderr


def test_the_collector_is_back_on_when_the_work_begins() -> None:
    import gc

    from engine.cli.core import end_startup, run_async, start_startup

    assert gc.isenabled()
    start_startup()
    try:
        assert not gc.isenabled()  # paused while the command loads its modules

        async def collecting() -> bool:
            return gc.isenabled()

        assert run_async(collecting)  # the command's work runs with the collector on
        assert gc.get_freeze_count() > 0  # what was loaded is never walked again
    finally:
        end_startup()
        gc.unfreeze()  # this test process's objects go back to the collector
    assert gc.isenabled()


def test_a_command_that_never_reaches_its_work_leaves_the_collector_as_it_was() -> None:
    import gc

    from engine.cli.core import end_startup, start_startup

    gc.disable()  # an embedding program's own choice
    try:
        start_startup()
        end_startup()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_stepwise_run_runs_its_execution_with_the_collector_on(tmp_path: Path) -> None:
    (tmp_path / "gc_probe.py").write_text(
        "import gc\n"
        "from activities import activity\n"
        "@activity('collector-on')\n"
        "def collector_on(event: object) -> bool:\n"
        "    return gc.isenabled()\n"
    )
    definition = {
        "StartAt": "Probe",
        "States": {"Probe": {"Type": "Task", "Resource": "collector-on", "End": True}},
    }
    (tmp_path / "probe.json").write_text(json.dumps(definition))
    argv = ["--db", f"sqlite:///{tmp_path / 'run.db'}", "run", "probe.json"]
    _modules, stdout = _modules_after([*argv, "--activities", "gc_probe"], tmp_path)
    assert json.loads(stdout) is True
