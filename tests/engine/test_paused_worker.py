"""A paused worker that wakes after its lease expired cannot write.

Worker A is SIGSTOPped in the middle of a task; its lease expires and
worker B takes the execution over and finishes it. When A is resumed, its
handler finishes too — but every write it attempts is refused by the lease
check, so the history holds B's result only, once, with no gap.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from engine import Engine
from tests.engine.processes import spawn_worker, wait_until

MACHINE = {
    "StartAt": "Slow",
    "States": {
        "Slow": {"Type": "Task", "Resource": "slow", "Next": "After"},
        "After": {"Type": "Pass", "End": True},
    },
}


def _lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def test_paused_worker_cannot_write_after_losing_its_lease(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    with Engine(db_url, worker=False) as engine:
        engine.create_state_machine_sync("slow", MACHINE)
        started = engine.start_sync("slow", {})
        first = spawn_worker(db_url, log)
        second = None
        try:
            wait_until(lambda: any(line["phase"] == "start" for line in _lines(log)))
            first.send_signal(signal.SIGSTOP)
            second = spawn_worker(db_url, log)
            done = engine.wait_sync(started, timeout=60)
            before = engine.history_sync(done)
            first.send_signal(signal.SIGCONT)
            # A's handler runs to its end; let its refused writes happen.
            wait_until(lambda: sum(1 for line in _lines(log) if line["pid"] == first.pid) == 2)
            time.sleep(2)
            after = engine.history_sync(done)
        finally:
            for proc in (first, second):
                if proc is not None:
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
    assert done.status == "SUCCEEDED"
    assert json.loads(done.output or "")["by"] == second.pid
    assert [(e.event_id, e.type) for e in after] == [(e.event_id, e.type) for e in before]
    assert [e.type for e in after].count("TaskSucceeded") == 1
    assert [e.event_id for e in after] == list(range(1, len(after) + 1))
    keys = {line["key"] for line in _lines(log)}
    assert len(keys) == 1  # both ran the same attempt, with the same idempotency key
