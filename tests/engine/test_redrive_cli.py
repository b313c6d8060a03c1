"""`stepwise redrive` end to end: real worker subprocesses on both stores, SIGKILL mid-redrive.

A nightly load whose second Task fails until the cause is fixed is
redriven after the fix; a worker SIGKILLed while the redriven run is in its
third Task is replaced and the redrive finishes. Which handlers ran, and
with which idempotency key, is read from the workers' log: the Task that
succeeded before the redrive never runs again, the fixed one runs under a
new key, and the one in flight at the kill reruns under the same key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.engine.processes import ROOT, wait_until

NIGHTLY = {
    "StartAt": "Load",
    "States": {
        "Load": {
            "Type": "Task",
            "Resource": "step",
            "Parameters": {"label": "load"},
            "ResultPath": "$.load",
            "Next": "Transform",
        },
        "Transform": {
            "Type": "Task",
            "Resource": "step",
            "Parameters": {"label": "transform"},
            "ResultPath": "$.transform",
            "Next": "Save",
        },
        "Save": {
            "Type": "Task",
            "Resource": "step",
            "Parameters": {"label": "save"},
            "ResultPath": "$.save",
            "End": True,
        },
    },
}


def stepwise(args: Sequence[str], url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args, "--db", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def stepwise_json(args: Sequence[str], url: str) -> Any:
    done = stepwise([*args, "-o", "json"], url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def spawn(url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.redrive_worker", url, str(log)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def status(url: str, execution: str) -> str:
    return str(stepwise_json(["describe", execution], url)["status"])


def test_redrive_after_the_fix_survives_a_sigkill(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    definition = tmp_path / "nightly.json"
    definition.write_text(json.dumps(NIGHTLY))
    stepwise_json(["machines", "create", "nightly", str(definition)], db_url)
    Path(f"{log}.broken-transform").touch()
    worker = spawn(db_url, log)
    try:
        started = stepwise_json(["start", "nightly", "--input", '{"day": 1}'], db_url)
        execution = started["executionArn"]
        wait_until(lambda: status(db_url, execution) != "RUNNING", timeout=120)
        failed = stepwise_json(["describe", execution], db_url)
        assert (failed["status"], failed["error"]) == ("FAILED", "Broken")
        assert failed["redriveStatus"] == "REDRIVABLE"

        # The operator fixes the cause; Save will be in flight when the worker dies.
        os.remove(f"{log}.broken-transform")
        Path(f"{log}.hang-save").touch()
        answer = stepwise_json(["redrive", execution], db_url)
        assert set(answer) == {"redriveDate"}
        wait_until(lambda: any(c["label"] == "save" for c in calls(log)), timeout=120)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        os.remove(f"{log}.hang-save")
        worker = spawn(db_url, log)
        wait_until(lambda: status(db_url, execution) != "RUNNING", timeout=120)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    done = stepwise_json(["describe", execution], db_url)
    assert done["status"] == "SUCCEEDED"
    assert (done["redriveCount"], done["redriveDate"]) == (1, answer["redriveDate"])
    assert done["executionArn"] == execution
    assert done["output"] == {
        "day": 1,
        "load": {"done": "load"},
        "transform": {"done": "transform"},
        "save": {"done": "save"},
    }
    keys: dict[str, list[str]] = {}
    for call in calls(log):
        keys.setdefault(call["label"], []).append(call["key"])
    assert len(keys["load"]) == 1  # succeeded before the redrive: never run again
    assert len(keys["transform"]) == 2 and len(set(keys["transform"])) == 2
    # In flight at the SIGKILL: run again by the new worker, under the same key.
    assert len(keys["save"]) == 2 and len(set(keys["save"])) == 1

    history = stepwise_json(["history", execution], db_url)["events"]
    kinds = [event["type"] for event in history]
    assert kinds.count("ExecutionRedriven") == 1
    assert kinds.index("ExecutionFailed") + 1 == kinds.index("ExecutionRedriven")
    assert kinds[-1] == "ExecutionSucceeded"
    listed = stepwise_json(["list", "--redrive-filter", "REDRIVEN"], db_url)["executions"]
    assert [e["executionArn"] for e in listed] == [execution]


def test_redrive_refusals_and_a_race_start_one_redrive(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    definition = tmp_path / "nightly.json"
    definition.write_text(json.dumps(NIGHTLY))
    stepwise_json(["machines", "create", "nightly", str(definition)], db_url)
    worker = spawn(db_url, log)
    try:
        ok = stepwise_json(["start", "nightly", "--name", "ok"], db_url)["executionArn"]
        wait_until(lambda: status(db_url, ok) != "RUNNING", timeout=120)
        Path(f"{log}.broken-load").touch()
        bad = stepwise_json(["start", "nightly", "--name", "bad"], db_url)["executionArn"]
        wait_until(lambda: status(db_url, bad) != "RUNNING", timeout=120)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    refused = stepwise(["redrive", ok], db_url)
    assert refused.returncode == 2
    assert refused.stderr == (
        "stepwise: error: ExecutionNotRedrivable: Execution is SUCCEEDED and cannot be redriven.\n"
    )
    missing = stepwise(["redrive", "no-such-execution"], db_url)
    assert missing.returncode == 2 and "ExecutionDoesNotExist" in missing.stderr

    # No worker runs now, so the winner stays RUNNING and the loser is refused.
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "redrive", bad, "--db", db_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = sorted((racer.wait(timeout=120), racer.communicate()[1]) for racer in racers)
    assert [code for code, _ in outcomes] == [0, 2]
    assert "Execution is RUNNING and cannot be redriven." in outcomes[1][1]
    kinds = [e["type"] for e in stepwise_json(["history", bad], db_url)["events"]]
    assert kinds.count("ExecutionRedriven") == 1
