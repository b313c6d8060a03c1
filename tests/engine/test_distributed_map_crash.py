"""A worker SIGKILLed mid Distributed Map loses nothing and redoes only what was in flight.

The Map reads its items from a CSV on local S3 storage (the worker process
gets the root through ``STEPWISE_S3_ROOT``) into a Map Run's child rows;
each row is a child execution. The first worker is killed while the first
child's Task runs; the CSV is then rewritten. The successor takes over the
child in flight once its lease expires — the children were loaded from the
file the first read saw, so the new file is never read — reruns only that
child's Task (same idempotency key), runs the others once each, wakes the
parent and writes the result files.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from engine import Engine
from engine.s3local import S3_ROOT_ENV
from tests.engine.processes import spawn_worker, wait_until

MACHINE = {
    "StartAt": "Rows",
    "States": {
        "Rows": {
            "Type": "Map",
            "MaxConcurrency": 1,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Capture",
                "States": {"Capture": {"Type": "Task", "Resource": "capture", "End": True}},
            },
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "Parameters": {"Bucket": "data", "Key": "rows.csv"},
                "ReaderConfig": {"InputType": "CSV"},
            },
            "ResultWriter": {
                "Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": "data", "Prefix": "results"},
            },
            "End": True,
        }
    },
}


def test_sigkill_mid_map_replays_the_items_read(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "s3"
    (root / "data").mkdir(parents=True)
    (root / "data" / "rows.csv").write_text("id\n1\n2\n3\n")
    monkeypatch.setenv(S3_ROOT_ENV, str(root))  # inherited by the worker processes
    log = tmp_path / "calls.jsonl"
    with Engine(db_url, worker=False, lease_seconds=2) as engine:
        engine.create_state_machine_sync("rows", MACHINE)
        started = engine.start_sync("rows", {})
        first = spawn_worker(db_url, log)
        wait_until(lambda: log.exists() and log.read_text().strip())
        first.send_signal(signal.SIGKILL)
        first.wait()
        (root / "data" / "rows.csv").write_text("id\nchanged\n")
        second = spawn_worker(db_url, log)
        try:
            done = engine.wait_sync(started, timeout=90)
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait()
    assert done.status == "SUCCEEDED", done.cause
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    # The child in flight ran twice (same key); the others once each.
    assert [c["input"] for c in calls] == [{"id": "1"}, {"id": "1"}, {"id": "2"}, {"id": "3"}]
    assert calls[0]["key"] == calls[1]["key"] and calls[0]["pid"] != calls[1]["pid"]
    details = json.loads(done.output or "")["ResultWriterDetails"]
    manifest = json.loads((root / "data" / details["Key"]).read_text())
    (succeeded,) = manifest["ResultFiles"]["SUCCEEDED"]
    records = json.loads((root / "data" / succeeded["Key"]).read_text())
    assert [json.loads(r["Output"]) for r in records] == [{"id": "1"}, {"id": "2"}, {"id": "3"}]
