"""A real-time Wait survives its worker's SIGKILL and fires once, on time.

Unit tests skip time with a mocked clock; this one uses the wall clock, end
to end: a worker process enters a 4-second Wait, is killed in the middle of
it, and a new worker process finishes the execution no earlier than the
Wait's due time.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

from engine import Engine
from tests.engine.processes import spawn_worker

MACHINE = {
    "StartAt": "Pause",
    "States": {
        "Pause": {"Type": "Wait", "Seconds": 4, "Next": "After"},
        "After": {"Type": "Pass", "Result": "done", "End": True},
    },
}


def test_wait_fires_once_on_time_across_a_sigkill(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "unused.jsonl"
    with Engine(db_url, worker=False) as engine:
        engine.create_state_machine_sync("pause", MACHINE)
        started = engine.start_sync("pause", {})
        first = spawn_worker(db_url, log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(e.type == "WaitStateEntered" for e in engine.history_sync(started)):
                break
            time.sleep(0.05)
        time.sleep(1)  # well inside the Wait
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = time.time()
        second = spawn_worker(db_url, log)
        try:
            done = engine.wait_sync(started, timeout=60)
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait()
        events = engine.history_sync(done)
    assert done.status == "SUCCEEDED"
    types = [e.type for e in events]
    assert types.count("WaitStateEntered") == 1 and types.count("WaitStateExited") == 1
    entered = next(e for e in events if e.type == "WaitStateEntered").timestamp
    exited = next(e for e in events if e.type == "WaitStateExited").timestamp
    assert exited - entered >= timedelta(seconds=4)
    # The successor took over after the kill (the first worker died mid-Wait).
    assert exited.timestamp() > killed_at
    # Bounded by lease expiry (2 s in the crash worker) and polling, not by chance.
    assert exited - entered < timedelta(seconds=20)
