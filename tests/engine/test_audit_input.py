"""An execution's input: absent is ``{}`` (StartExecution's default), JSON ``null`` stays null.

AWS keeps an explicit ``null`` input: ``$`` is null in the first state and a
Pass state hands it on. The embedding API, the CLI and the HTTP API agree.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from engine import Engine
from engine.cli import cli

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def test_null_input_stays_null_and_no_input_is_an_empty_object(sqlite_url: str) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        given_null = engine.run_sync(PASS, None)
        given_nothing = engine.run_sync(PASS)
        engine.create_state_machine_sync("echo", json.dumps(PASS))
        started = engine.start_sync("echo", None)
    assert (given_null.input, given_null.output) == ("null", "null")
    assert (given_nothing.input, given_nothing.output) == ("{}", "{}")
    assert started.input == "null"


def test_the_cli_passes_a_null_input_through(sqlite_url: str, tmp_path: Path) -> None:
    definition = tmp_path / "pass.json"
    definition.write_text(json.dumps(PASS))
    result = CliRunner().invoke(
        cli, ["run", str(definition), "--input", "null", "--db", sqlite_url, "-o", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"] is None
