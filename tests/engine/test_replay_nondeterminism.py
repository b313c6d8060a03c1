"""A crash mid-way through a JSONata execution that used $uuid/$random resumes with the same values.

The values are journaled when first drawn and committed before the Task's
effect leaves the process; the worker is SIGKILLed while the handler runs,
and the successor's rerun of the same attempt gets the same arguments.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine import Engine

ROOT = Path(__file__).resolve().parents[2]

MACHINE = {
    "QueryLanguage": "JSONata",
    "StartAt": "Draw",
    "States": {
        "Draw": {
            "Type": "Task",
            "Resource": "capture",
            "Arguments": {"id": "{% $uuid() %}", "dice": "{% $floor($random() * 1000000) %}"},
            "Assign": {"drawn": "{% $states.result %}"},
            "Next": "Echo",
        },
        "Echo": {"Type": "Pass", "Output": "{% {'again': $drawn, 'next': $uuid()} %}", "End": True},
    },
}


def _worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.crash_worker", url, str(log)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_uuid_and_random_survive_a_sigkill(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    with Engine(db_url, worker=False, lease_seconds=2) as engine:
        engine.create_state_machine_sync("draw", MACHINE)
        started = engine.start_sync("draw", {})
        first = _worker(db_url, log)
        _wait_for(lambda: log.exists() and log.read_text().strip())
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = _worker(db_url, log)
        try:
            done = engine.wait_sync(started, timeout=60)
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2 and calls[0]["pid"] != calls[1]["pid"]
    assert calls[0]["input"] == calls[1]["input"]
    assert calls[0]["key"] == calls[1]["key"]
    assert done.status == "SUCCEEDED"
    output = json.loads(done.output or "")
    assert output["again"] == calls[0]["input"]
    assert output["next"] != calls[0]["input"]["id"]
