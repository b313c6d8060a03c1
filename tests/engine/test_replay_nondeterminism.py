"""A crash mid-way through a JSONata execution that used $uuid/$random resumes with the same values.

The values are journaled when first drawn and committed before the Task's
effect leaves the process; the worker is SIGKILLed while the handler runs,
and the successor's rerun of the same attempt gets the same arguments.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from engine import Engine
from tests.engine.processes import spawn_worker, wait_until

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


def test_uuid_and_random_survive_a_sigkill(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    with Engine(db_url, worker=False, lease_seconds=2) as engine:
        engine.create_state_machine_sync("draw", MACHINE)
        started = engine.start_sync("draw", {})
        first = spawn_worker(db_url, log)
        wait_until(lambda: log.exists() and log.read_text().strip())
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = spawn_worker(db_url, log)
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
