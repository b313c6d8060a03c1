"""Bad input at the edge: refused with AWS's errors, never a traceback.

Lone UTF-16 surrogates (``"\\ud800"``, valid JSON escape text that no
UTF-8 store can hold), invalid UTF-8 and JSON nested past the bound are
refused where they enter: an execution's input (InvalidExecutionInput), a
callback's output (InvalidOutput), a definition (a state name must be valid
Unicode, in `validate` as in `run`). Real subprocesses pin exit codes and
the one-line message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Engine
from engine.errors import InvalidExecutionInput, InvalidOutput
from statemachine.jsontext import MAX_JSON_DEPTH

QUICK = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}
SURROGATE_TEXT = '{"a": "\\ud800"}'  # JSON text: the escape, not the character


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):  # `depth` arrays around a number
        value = [value]
    return value


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"a": "\ud800"}, "lone surrogate"),
        ({"\udcff": 1}, "lone surrogate"),
        (_nested(MAX_JSON_DEPTH + 1), f"deeper than {MAX_JSON_DEPTH}"),
    ],
)
def test_start_refuses_input_no_store_can_hold(db_url: str, payload: object, why: str) -> None:
    with Engine(db_url, worker=False) as engine:
        engine.create_state_machine_sync("quick", QUICK)
        with pytest.raises(InvalidExecutionInput, match=why):
            engine.start_sync("quick", payload)
        assert engine.list_executions_sync() == []
        # The bound itself is fine.
        assert engine.run_sync(QUICK, _nested(MAX_JSON_DEPTH)).status == "SUCCEEDED"


def test_cli_run_refuses_a_lone_surrogate_in_input_with_exit_2(tmp_path: Path) -> None:
    definition = tmp_path / "quick.json"
    definition.write_text(json.dumps(QUICK))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    result = _cli("run", str(definition), "--input", SURROGATE_TEXT, "--db", url, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("stepwise: error: ")
    assert "InvalidExecutionInput" in result.stderr and "lone surrogate" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_cli_task_success_refuses_a_lone_surrogate_with_invalid_output(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with Engine(url, worker=False):
        pass
    result = _cli("task", "success", "tok", "--result", SURROGATE_TEXT, "--db", url, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("stepwise: error: InvalidOutput: Invalid Output: ")
    assert "lone surrogate" in result.stderr and len(result.stderr.splitlines()) == 1


def test_send_task_success_refuses_a_lone_surrogate_before_any_lookup(sqlite_url: str) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        with pytest.raises(InvalidOutput, match="lone surrogate"):
            engine.send_task_success("never-issued", {"a": "\ud800"})
        with pytest.raises(InvalidOutput, match=f"deeper than {MAX_JSON_DEPTH}"):
            engine.send_task_success("never-issued", _nested(MAX_JSON_DEPTH + 1))


def test_a_state_name_holding_a_lone_surrogate_is_invalid_for_validate_and_run_alike(
    tmp_path: Path,
) -> None:
    text = '{"StartAt": "A\\ud800", "States": {"A\\ud800": {"Type": "Pass", "End": true}}}'
    definition = tmp_path / "bad-name.json"
    definition.write_text(text)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    validated = _cli("validate", str(definition), cwd=tmp_path)
    assert validated.returncode == 1, validated.stderr
    assert "INVALID_JSON_DESCRIPTION" in validated.stdout and "lone surrogate" in validated.stdout
    assert "Traceback" not in validated.stderr
    ran = _cli("run", str(definition), "--db", url, cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr
    assert "lone surrogate" in ran.stderr and "Traceback" not in ran.stderr


@pytest.mark.parametrize(
    "name",
    ["nul\u0000inside", "tab\tand\nnewline", "emoji 🎉 ok", 'quote"s', "$.x", "{% 1 %}", "é" * 80],
)
def test_a_state_name_valid_for_validate_runs(db_url: str, name: str) -> None:
    """AWS's rule is 1 to 80 Unicode characters; any such name runs and shows in the history."""
    machine = {"StartAt": name, "States": {name: {"Type": "Pass", "Result": name, "End": True}}}
    with Engine(db_url, worker=False) as engine:
        record = engine.run_sync(machine, {})
        events = engine.history_sync(record)
    assert record.status == "SUCCEEDED" and json.loads(record.output or "") == name
    assert events[1].details["name"] == name
