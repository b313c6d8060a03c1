"""The `stepwise` CLI end to end: real SQLite files and PostgreSQL, CliRunner and subprocesses.

CliRunner covers each command's output shapes; real subprocesses
(``python -m engine.cli``) pin exit codes, one-line errors and the absence
of tracebacks, and run `stepwise worker` until SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from engine.cli import cli
from engine.history import details_key, event_to_aws
from engine.store import SCHEMA_VERSION, Event

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "postgresql+psycopg://u@127.0.0.1:1/x"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
ACCOUNT = "arn:aws:states:local:000000000000"

PASS_MACHINE = {
    "StartAt": "Add",
    "States": {
        "Add": {"Type": "Pass", "Result": {"added": True}, "ResultPath": "$.extra", "End": True}
    },
}
FAIL_MACHINE = {
    "StartAt": "Boom",
    "States": {"Boom": {"Type": "Fail", "Error": "Boom", "Cause": "it broke"}},
}
# A Wait long enough that nothing finishes it during a test: for start/stop.
WAIT_MACHINE = {
    "StartAt": "Hold",
    "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": True}},
}
BROKEN_MACHINE = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}}


def write(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def invoke(args: Sequence[str], *, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def invoke_json(args: Sequence[str], *, stdin: str | None = None, code: int = 0) -> Any:
    result = invoke([*args, "-o", "json"], stdin=stdin)
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout)


def run_cli(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("stepwise: error: ")]
    assert len(lines) == 1, stderr
    assert expected in lines[0], stderr


# -- validate ----------------------------------------------------------------


def test_validate_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.json", PASS_MACHINE)
    result = invoke(["validate", path])
    assert result.exit_code == 0
    assert result.stdout == f"{path}: valid\n"


def test_validate_invalid_file_prints_every_diagnostic_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.json", BROKEN_MACHINE)
    result = invoke(["validate", path])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:/: MISSING_END_STATE: No terminal state: at least one state must have "
        "'End': true or be a Succeed or Fail state",
        f"{path}:/States/A/Next: MISSING_TRANSITION_TARGET: Missing 'Next' target: 'B' is not "
        "a state of this scope",
    ]


def test_validate_warnings_do_not_make_a_file_invalid(tmp_path: Path) -> None:
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "End": True}, "X": {"Type": "Succeed"}},
    }
    path = write(tmp_path, "warn.json", definition)
    result = invoke(["validate", path])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"{path}:/States/X: warning: UNREACHABLE_STATE: The state 'X' can never be reached "
        "from 'A'",
        f"{path}: valid",
    ]
    report = invoke_json(["validate", path])
    assert report == {
        "file": path,
        "valid": True,
        "diagnostics": [
            {
                "severity": "WARNING",
                "code": "UNREACHABLE_STATE",
                "message": "The state 'X' can never be reached from 'A'",
                "location": "/States/X",
            }
        ],
    }


def test_validate_json_lists_several_files(tmp_path: Path) -> None:
    ok = write(tmp_path, "ok.json", PASS_MACHINE)
    broken = write(tmp_path, "broken.json", BROKEN_MACHINE)
    reports = invoke_json(["validate", ok, broken, "--local"], code=1)
    assert [(r["file"], r["valid"]) for r in reports] == [(ok, True), (broken, False)]
    assert [d["code"] for d in reports[1]["diagnostics"]] == [
        "MISSING_END_STATE",
        "MISSING_TRANSITION_TARGET",
    ]
    assert reports[1]["diagnostics"][1]["location"] == "/States/A/Next"


def test_validate_express_rules(tmp_path: Path) -> None:
    definition = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:us-east-1:123456789012:activity:x",
                "End": True,
            }
        },
    }
    path = write(tmp_path, "activity.json", definition)
    assert invoke(["validate", path]).exit_code == 0
    result = invoke(["validate", "--type", "express", path])
    assert result.exit_code == 1
    assert "Express state machine does not support Activity ARN" in result.stdout


def test_validate_missing_and_malformed_files_are_usage_errors(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.json")
    result = invoke(["validate", missing])
    assert result.exit_code == 2
    assert result.stderr == f"stepwise: error: {missing}: no such file: {missing}\n"
    malformed = write(tmp_path, "malformed.json", '{"StartAt": ')
    report = invoke_json(["validate", malformed], code=2)
    assert report["valid"] is False
    assert [d["code"] for d in report["diagnostics"]] == ["INVALID_JSON_DESCRIPTION"]


# -- machines ----------------------------------------------------------------


def test_machines_create_list_describe(db_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "pass.json", PASS_MACHINE)
    created = invoke_json(["machines", "create", "adder", path, "--db", db_url])
    assert set(created) == {"stateMachineArn", "name", "version", "creationDate"}
    assert created["stateMachineArn"] == f"{ACCOUNT}:stateMachine:adder"
    assert (created["name"], created["version"]) == ("adder", 1)
    assert ISO.match(created["creationDate"])

    again = invoke_json(["machines", "create", "adder", path, "--db", db_url])
    assert again == created  # unchanged definition: same version

    changed = write(tmp_path, "changed.json", {**PASS_MACHINE, "Comment": "v2"})
    second = invoke_json(["--db", db_url, "machines", "create", "adder", changed])
    assert second["version"] == 2

    listed = invoke_json(["machines", "list", "--db", db_url])
    assert listed == {
        "stateMachines": [
            {
                "stateMachineArn": f"{ACCOUNT}:stateMachine:adder",
                "name": "adder",
                "type": "STANDARD",
                "version": 2,
                "creationDate": second["creationDate"],
            }
        ]
    }
    described = invoke_json(["machines", "describe", "adder", "--db", db_url])
    assert set(described) == {
        "stateMachineArn",
        "name",
        "type",
        "version",
        "definition",
        "creationDate",
        "status",
    }
    assert described["status"] == "ACTIVE"
    assert described["version"] == 2
    assert json.loads(described["definition"]) == {**PASS_MACHINE, "Comment": "v2"}

    express = invoke_json(
        ["machines", "create", "quick", path, "--type", "express", "--db", db_url]
    )
    assert express["version"] == 1
    types = {
        m["name"]: m["type"]
        for m in invoke_json(["machines", "list", "--db", db_url])["stateMachines"]
    }
    assert types == {"adder": "STANDARD", "quick": "EXPRESS"}


def test_machines_text_output(sqlite_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "pass.json", PASS_MACHINE)
    created = invoke(["machines", "create", "adder", path, "--db", sqlite_url])
    assert created.stdout == f"adder version 1  {ACCOUNT}:stateMachine:adder\n"
    listed = invoke(["machines", "list", "--db", sqlite_url]).stdout.splitlines()
    assert listed[0].split() == ["NAME", "TYPE", "VERSION", "CREATED"]
    assert listed[1].split()[:3] == ["adder", "STANDARD", "1"]


def test_machines_create_refuses_an_invalid_definition(sqlite_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "broken.json", BROKEN_MACHINE)
    assert invoke(["db", "upgrade", "--db", sqlite_url]).exit_code == 0  # reads create nothing
    result = invoke(["machines", "create", "broken", path, "--db", sqlite_url, "-o", "json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:/: MISSING_END_STATE: No terminal state: at least one state must have "
        "'End': true or be a Succeed or Fail state",
        f"{path}:/States/A/Next: MISSING_TRANSITION_TARGET: Missing 'Next' target: 'B' is not "
        "a state of this scope",
        f"stepwise: error: {path}: invalid state machine definition (2 errors)",
    ]
    assert invoke_json(["machines", "list", "--db", sqlite_url]) == {"stateMachines": []}


def test_machines_describe_unknown(sqlite_url: str) -> None:
    assert invoke(["db", "upgrade", "--db", sqlite_url]).exit_code == 0  # reads create nothing
    result = invoke(["machines", "describe", "nope", "--db", sqlite_url])
    assert result.exit_code == 2
    assert result.stderr == (
        "stepwise: error: StateMachineDoesNotExist: State Machine Does Not Exist: 'nope'\n"
    )


def test_machines_create_invalid_name(sqlite_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "pass.json", PASS_MACHINE)
    result = invoke(["machines", "create", "bad name", path, "--db", sqlite_url])
    assert result.exit_code == 2
    assert result.stderr.startswith("stepwise: error: InvalidName: Invalid Name: 'bad name'")


# -- executions ----------------------------------------------------------------


def test_start_describe_list_history_stop(db_url: str, tmp_path: Path) -> None:
    invoke_json(
        ["machines", "create", "holder", write(tmp_path, "w.json", WAIT_MACHINE), "--db", db_url]
    )
    started = invoke_json(
        ["start", "holder", "--input", '{"order": 7}', "--name", "e1", "--db", db_url]
    )
    arn = f"{ACCOUNT}:execution:holder:e1"
    assert set(started) == {"executionArn", "name", "startDate"}
    assert (started["executionArn"], started["name"]) == (arn, "e1")
    assert ISO.match(started["startDate"])

    described = invoke_json(["describe", "e1", "--db", db_url])
    assert described == {
        "executionArn": arn,
        "name": "e1",
        "stateMachineArn": f"{ACCOUNT}:stateMachine:holder",
        "stateMachine": "holder",
        "status": "RUNNING",
        "startDate": started["startDate"],
        "stopDate": None,
        "input": {"order": 7},
        "output": None,
        "error": None,
        "cause": None,
        "queue": "default",
        "redriveCount": 0,
        "redriveDate": None,
        "redriveStatus": "NOT_REDRIVABLE",
        "redriveStatusReason": "Execution is RUNNING and cannot be redriven.",
    }
    assert invoke_json(["describe", arn, "--db", db_url]) == described

    listed = invoke_json(["list", "--db", db_url])
    assert listed == {
        "executions": [
            {
                "executionArn": arn,
                "name": "e1",
                "stateMachineArn": f"{ACCOUNT}:stateMachine:holder",
                "status": "RUNNING",
                "startDate": started["startDate"],
                "stopDate": None,
                "redriveCount": 0,
            }
        ]
    }
    assert invoke_json(["list", "--status", "succeeded", "--db", db_url]) == {"executions": []}
    assert len(invoke_json(["list", "--machine", "holder", "--db", db_url])["executions"]) == 1

    stopped = invoke_json(
        ["stop", "e1", "--error", "Operator", "--cause", "not needed", "--db", db_url]
    )
    assert set(stopped) == {"stopDate"}
    assert ISO.match(stopped["stopDate"])
    final = invoke_json(["describe", "e1", "--db", db_url])
    assert final["status"] == "ABORTED"
    assert final["stopDate"] == stopped["stopDate"]

    history = invoke_json(["history", "e1", "--db", db_url])
    types = [event["type"] for event in history["events"]]
    assert types[0] == "ExecutionStarted"
    assert types[-1] == "ExecutionAborted"
    assert history["events"][-1]["executionAbortedEventDetails"] == {
        "error": "Operator",
        "cause": "not needed",
    }
    reverse = invoke_json(["history", "e1", "--reverse", "--db", db_url])
    assert reverse["events"] == list(reversed(history["events"]))

    again = invoke(["stop", "e1", "--db", db_url])
    assert again.exit_code == 2
    assert again.stderr == (
        f"stepwise: error: ExecutionNotRunning: execution '{arn}' is ABORTED, not RUNNING: "
        "it cannot be stopped\n"
    )


def test_start_input_from_stdin_file_url_and_input_file(sqlite_url: str, tmp_path: Path) -> None:
    invoke_json(
        [
            "machines",
            "create",
            "holder",
            write(tmp_path, "w.json", WAIT_MACHINE),
            "--db",
            sqlite_url,
        ]
    )
    payload_file = write(tmp_path, "input.json", {"from": "file"})
    invoke_json(
        ["start", "holder", "--input", "-", "--name", "a", "--db", sqlite_url],
        stdin='{"from": "stdin"}',
    )
    invoke_json(
        ["start", "holder", "--input", f"file://{payload_file}", "--name", "b", "--db", sqlite_url]
    )
    invoke_json(
        ["start", "holder", "--input-file", payload_file, "--name", "c", "--db", sqlite_url]
    )
    invoke_json(["start", "holder", "--name", "d", "--db", sqlite_url])
    inputs = {
        name: invoke_json(["describe", name, "--db", sqlite_url])["input"]
        for name in ("a", "b", "c", "d")
    }
    assert inputs == {"a": {"from": "stdin"}, "b": {"from": "file"}, "c": {"from": "file"}, "d": {}}
    text = invoke(["start", "holder", "--name", "e", "--db", sqlite_url])
    assert text.stdout == f"{ACCOUNT}:execution:holder:e\n"


def test_start_rejects_bad_input(sqlite_url: str, tmp_path: Path) -> None:
    invoke_json(
        [
            "machines",
            "create",
            "holder",
            write(tmp_path, "w.json", WAIT_MACHINE),
            "--db",
            sqlite_url,
        ]
    )
    result = invoke(["start", "holder", "--input", "{nope", "--db", sqlite_url])
    assert result.exit_code == 2
    assert result.stderr == (
        "stepwise: error: InvalidExecutionInput: the execution input is not valid JSON: "
        "Expecting property name enclosed in double quotes at line 1 column 2\n"
    )
    both = invoke(["start", "holder", "--input", "{}", "--input-file", "x", "--db", sqlite_url])
    assert both.exit_code == 2
    assert both.stderr == "stepwise: error: give either --input or --input-file, not both\n"
    missing = invoke(
        ["start", "holder", "--input-file", str(tmp_path / "no.json"), "--db", sqlite_url]
    )
    assert missing.exit_code == 2
    assert "no such file" in missing.stderr
    unknown = invoke(["start", "nope", "--db", sqlite_url])
    assert unknown.exit_code == 2
    assert unknown.stderr == (
        "stepwise: error: StateMachineDoesNotExist: State Machine Does Not Exist: 'nope'\n"
    )
    assert invoke_json(["list", "--db", sqlite_url]) == {"executions": []}


def test_unknown_execution(sqlite_url: str) -> None:
    assert invoke(["db", "upgrade", "--db", sqlite_url]).exit_code == 0  # reads create nothing
    for command in (["describe", "zzz"], ["history", "zzz"], ["stop", "zzz"]):
        result = invoke([*command, "--db", sqlite_url])
        assert result.exit_code == 2
        assert result.stderr == (
            "stepwise: error: ExecutionDoesNotExist: Execution Does Not Exist: 'zzz'\n"
        )


def test_list_unknown_machine_and_bad_status(sqlite_url: str) -> None:
    assert invoke(["db", "upgrade", "--db", sqlite_url]).exit_code == 0  # reads create nothing
    result = invoke(["list", "--machine", "nope", "--db", sqlite_url])
    assert result.exit_code == 2
    assert "StateMachineDoesNotExist" in result.stderr
    bad = invoke(["list", "--status", "DONE", "--db", sqlite_url])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("stepwise: error: Invalid value for '--status'")


# -- run -------------------------------------------------------------------------


def test_run_succeeds_and_prints_the_output(sqlite_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "pass.json", PASS_MACHINE)
    result = invoke(["run", path, "--input", '{"n": 1}', "--db", sqlite_url])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"n": 1, "extra": {"added": True}}
    document = invoke_json(["run", path, "--input", '{"n": 2}', "--name", "r2", "--db", sqlite_url])
    assert set(document) == {
        "executionArn",
        "name",
        "stateMachineArn",
        "stateMachine",
        "status",
        "startDate",
        "stopDate",
        "input",
        "output",
        "error",
        "cause",
        "queue",
    }
    assert document["name"] == "r2"
    assert document["status"] == "SUCCEEDED"
    assert document["input"] == {"n": 2}
    assert document["output"] == {"n": 2, "extra": {"added": True}}
    assert (document["error"], document["cause"]) == (None, None)
    assert ISO.match(document["stopDate"])
    # The execution is recorded: the other commands see it.
    described = invoke_json(["describe", "r2", "--db", sqlite_url])
    assert described == {
        **document,
        "redriveCount": 0,
        "redriveDate": None,
        "redriveStatus": "NOT_REDRIVABLE",
        "redriveStatusReason": "Execution is SUCCEEDED and cannot be redriven.",
    }


def test_run_failure_exits_1(sqlite_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "fail.json", FAIL_MACHINE)
    result = invoke(["run", path, "--db", sqlite_url])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "FAILED: Boom: it broke\n"
    document = invoke_json(["run", path, "--db", sqlite_url], code=1)
    assert (document["status"], document["error"], document["cause"]) == (
        "FAILED",
        "Boom",
        "it broke",
    )
    assert document["output"] is None


def test_run_with_activities_and_history_shape(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "cli_test_activities.py"
    module.write_text(
        "from activities import activity\n"
        "@activity('double')\n"
        "def double(value):\n"
        "    return value * 2\n"
    )
    definition = {
        "StartAt": "Double",
        "States": {"Double": {"Type": "Task", "Resource": "double", "End": True}},
    }
    path = write(tmp_path, "double.json", definition)
    monkeypatch.chdir(tmp_path)  # --activities imports from the current directory
    monkeypatch.setattr(sys, "path", list(sys.path))
    document = invoke_json(
        [
            "run",
            path,
            "--input",
            "21",
            "--name",
            "d",
            "--activities",
            "cli_test_activities",
            "--db",
            sqlite_url,
        ]
    )
    assert document["output"] == 42
    events = invoke_json(["history", "d", "--db", sqlite_url])["events"]
    assert [e["type"] for e in events] == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    assert [(e["id"], e["previousEventId"]) for e in events] == [(i, i - 1) for i in range(1, 8)]
    for event in events:
        assert list(event)[:4] == ["timestamp", "type", "id", "previousEventId"]
        assert ISO.match(event["timestamp"])
    assert events[1]["stateEnteredEventDetails"] == {
        "name": "Double",
        "input": "21",
        "inputDetails": {"truncated": False},
    }
    assert events[4]["taskSucceededEventDetails"]["output"] == "42"
    assert events[4]["taskSucceededEventDetails"]["outputDetails"] == {"truncated": False}
    assert events[5]["stateExitedEventDetails"]["name"] == "Double"
    assert events[6]["executionSucceededEventDetails"] == {
        "output": "42",
        "outputDetails": {"truncated": False},
    }
    text = invoke(["history", "d", "--db", sqlite_url]).stdout.splitlines()
    assert text[0].split() == ["ID", "TIMESTAMP", "TYPE", "DETAILS"]
    assert text[2].split()[2:] == ["TaskStateEntered", "Double"]


def test_run_refuses_bad_definitions_and_modules(sqlite_url: str, tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.json", BROKEN_MACHINE)
    result = invoke(["run", broken, "--db", sqlite_url])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"stepwise: error: {broken}: invalid state machine definition (2 errors)"
    )
    malformed = write(tmp_path, "malformed.json", "{")
    result = invoke(["run", malformed, "--db", sqlite_url])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"stepwise: error: {malformed} is not valid JSON: ")
    path = write(tmp_path, "pass.json", PASS_MACHINE)
    result = invoke(["run", path, "--activities", "no_such_module_here", "--db", sqlite_url])
    assert result.exit_code == 2
    assert result.stderr == (
        "stepwise: error: cannot import activities module 'no_such_module_here': "
        "ModuleNotFoundError: No module named 'no_such_module_here'\n"
    )


# -- db ------------------------------------------------------------------------


def test_db_upgrade(db_url: str) -> None:
    assert invoke_json(["db", "upgrade", "--db", db_url]) == {"schemaVersion": SCHEMA_VERSION}
    result = invoke(["db", "upgrade", "--db", db_url])
    assert result.stdout == f"schema version {SCHEMA_VERSION}\n"


def test_database_url_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    runner = CliRunner(env={"STEPWISE_DATABASE_URL": url})
    path = write(tmp_path, "pass.json", PASS_MACHINE)
    assert runner.invoke(cli, ["machines", "create", "adder", path]).exit_code == 0
    assert (tmp_path / "env.db").exists()


# -- history rendering -----------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "key"),
    [
        ("ExecutionStarted", "executionStartedEventDetails"),
        ("ExecutionTimedOut", "executionTimedOutEventDetails"),
        ("TaskStateEntered", "stateEnteredEventDetails"),
        ("MapStateExited", "stateExitedEventDetails"),
        ("TaskSubmitted", "taskSubmittedEventDetails"),
        ("MapStateStarted", "mapStateStartedEventDetails"),
        ("MapIterationAborted", "mapIterationAbortedEventDetails"),
        ("EvaluationFailed", "evaluationFailedEventDetails"),
        ("LambdaFunctionScheduled", "lambdaFunctionScheduledEventDetails"),
        ("ActivityTimedOut", "activityTimedOutEventDetails"),
    ],
)
def test_details_key_follows_aws(event_type: str, key: str) -> None:
    assert details_key(event_type) == key


def test_event_without_details_has_no_details_key() -> None:
    moment = datetime.fromisoformat("2024-05-01T12:00:00.123456+00:00")
    shaped = event_to_aws(Event(3, 2, "ParallelStateStarted", moment, {}))
    assert shaped == {
        "timestamp": "2024-05-01T12:00:00.123+00:00",
        "type": "ParallelStateStarted",
        "id": 3,
        "previousEventId": 2,
    }
    kept = event_to_aws(
        Event(
            4,
            3,
            "TaskStateExited",
            moment,
            {"name": "T", "output": "1", "outputDetails": {"truncated": True}},
        )
    )
    assert kept["stateExitedEventDetails"]["outputDetails"] == {"truncated": True}


# -- subprocesses: exit codes, one-line errors, no tracebacks --------------------


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["describe", "x"],
        ["history", "x"],
        ["stop", "x"],
        ["start", "m"],
        ["machines", "list"],
        ["machines", "describe", "m"],
        ["machines", "create", "m", "examples/hello.json"],
        ["run", "examples/hello.json", "--input", '{"name": "x"}'],
        ["db", "upgrade"],
        ["worker"],
    ],
)
def test_unreachable_database_exits_3(command: list[str]) -> None:
    # Commands ride out a short outage first ($STEPWISE_RETRY_SECONDS, tested in
    # test_liveness_*); one second of it is enough to prove the exit here.
    result = run_cli(
        [*command, "--db", UNREACHABLE], env={"STEPWISE_RETRY_SECONDS": "1"}, timeout=60
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert_one_line_error(result.stderr, "is unavailable")


def test_subprocess_usage_errors_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    malformed = write(tmp_path, "malformed.json", "{]")
    broken = write(tmp_path, "broken.json", BROKEN_MACHINE)
    cases = [
        (["run", str(tmp_path / "missing.json")], "no such file"),
        (["run", malformed], "is not valid JSON"),
        (["run", broken], "invalid state machine definition"),
        (["run", "examples/hello.json", "--input", "not json"], "InvalidExecutionInput"),
        (["describe", "nope"], "ExecutionDoesNotExist"),
        (["stop", "nope"], "ExecutionDoesNotExist"),
        (["machines", "describe", "nope"], "StateMachineDoesNotExist"),
        (["validate", str(tmp_path / "missing.json")], "no such file"),
        (["list", "--bogus"], "No such option"),
        (["run", "examples/hello.json", "--activities", "not.a.module"], "cannot import"),
    ]
    assert run_cli(["db", "upgrade", "--db", url]).returncode == 0  # reads create nothing
    for command, expected in cases:
        result = run_cli([*command, "--db", url])
        assert result.returncode == 2, (command, result.stderr)
        assert_one_line_error(result.stderr, expected)


def test_subprocess_run_exit_codes(tmp_path: Path) -> None:
    env = {"STEPWISE_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}"}
    fail = write(tmp_path, "fail.json", FAIL_MACHINE)
    failed = run_cli(["run", fail], env=env)
    assert failed.returncode == 1
    assert failed.stderr == "FAILED: Boom: it broke\n"
    invalid = run_cli(["validate", write(tmp_path, "b.json", BROKEN_MACHINE)], env=env)
    assert invalid.returncode == 1
    assert "Traceback" not in invalid.stderr


def test_readme_first_command_runs_the_hello_example(tmp_path: Path) -> None:
    env = {"STEPWISE_DATABASE_URL": f"sqlite:///{tmp_path / 'hello.db'}"}
    result = run_cli(
        [
            "run",
            "examples/hello.json",
            "--input",
            '{"name": "world"}',
            "--activities",
            "examples.hello_activities",
        ],
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "greeting": "Hello, world!",
        "gesture": "wave",
        "counts": [1, 2, 3],
        "counted": ["1!", "2!", "3!"],
    }
    other = run_cli(
        [
            "run",
            "examples/hello.json",
            "--input",
            '{"name": "Ada"}',
            "-o",
            "json",
            "--activities",
            "examples.hello_activities",
        ],
        env=env,
    )
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["output"] == {
        "greeting": "Hello, Ada! (quietly)",
        "gesture": "nod",
        "counts": [1],
        "counted": ["1!"],
    }


def _wait_for_line(stream: Any, needle: str, deadline: float) -> str:
    seen = ""
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; got {seen!r}")


def test_worker_runs_started_executions_and_exits_0_on_sigterm(db_url: str) -> None:
    created = run_cli(["machines", "create", "hello", "examples/hello.json", "--db", db_url])
    assert created.returncode == 0, created.stderr
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "worker",
            "--db",
            db_url,
            "--concurrency",
            "4",
            "--activities",
            "examples.hello_activities",
            "--lease-seconds",
            "10",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        _wait_for_line(worker.stderr, "started on", time.monotonic() + 60)
        names = ["world", "Ada", "Grace"]
        for name in names:
            started = run_cli(
                [
                    "start",
                    "hello",
                    "--input",
                    json.dumps({"name": name}),
                    "--name",
                    name,
                    "--db",
                    db_url,
                ]
            )
            assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 60
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            listed = run_cli(["list", "--machine", "hello", "-o", "json", "--db", db_url])
            statuses = {e["name"]: e["status"] for e in json.loads(listed.stdout)["executions"]}
            if set(statuses.values()) == {"SUCCEEDED"} and len(statuses) == 3:
                break
            time.sleep(0.2)
        assert statuses == dict.fromkeys(names, "SUCCEEDED")
        world = json.loads(run_cli(["describe", "world", "-o", "json", "--db", db_url]).stdout)
        assert world["output"]["counted"] == ["1!", "2!", "3!"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        rest = worker.stderr.read()
        assert "stopping on SIGTERM" in rest
        assert "stopped" in rest
        assert "Traceback" not in rest
        assert worker.stdout is not None and worker.stdout.read() == ""
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
