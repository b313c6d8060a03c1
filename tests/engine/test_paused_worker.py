"""A paused worker that wakes after its lease expired cannot write.

Worker A is SIGSTOPped in the middle of a task; its lease expires and
worker B takes the execution over and starts the same attempt. A is resumed
and its handler finishes *first*, while B's is still running: A's commit
carries the task's result, which nobody has recorded yet, so no unique key
would stop it — only the lease check does. The test sees A write nothing:
its commit refused as a lost lease (the committer's warning on A's stderr)
or, when A's lease keeper, overdue as A wakes, renews first and finds the
lease gone, its run cancelled before the commit (the keeper's warning).
Which of A's two timers fires first is the scheduler's choice, so both are
accepted; the commit's own lease check is pinned deterministically by
`test_store.py::test_commit_with_a_lost_lease_writes_nothing` (the
mutation suite's row for it). Then B finishes: the history holds B's
result only, once, with no gap. Every step waits for an event (a log line,
a file, a history event), never for a fixed time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from engine import Engine
from engine.store import Event
from tests.engine.processes import ROOT, wait_until

MACHINE = {
    "StartAt": "Held",
    "States": {
        "Held": {"Type": "Task", "Resource": "held", "Next": "After"},
        "After": {"Type": "Pass", "End": True},
    },
}


def _lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def _phases(log: Path, pid: int) -> list[object]:
    return [line["phase"] for line in _lines(log) if line["pid"] == pid]


def _spawn(url: str, log: Path, stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.engine.crash_worker", url, str(log)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _succeeded(history: list[Event]) -> int:
    return [e.type for e in history].count("TaskSucceeded")


def test_paused_worker_cannot_write_after_losing_its_lease(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    first_err, second_err = tmp_path / "a.err", tmp_path / "b.err"
    with Engine(db_url, worker=False) as engine:
        engine.create_state_machine_sync("held", MACHINE)
        started = engine.start_sync("held", {})
        first = _spawn(db_url, log, first_err)
        second = None
        try:
            wait_until(lambda: _phases(log, first.pid) == ["start"])
            first.send_signal(signal.SIGSTOP)
            second = _spawn(db_url, log, second_err)
            # B claims the execution once A's lease has expired, and reruns the attempt.
            wait_until(lambda: _phases(log, second.pid) == ["start"])
            Path(f"{log}.go-{first.pid}").touch()
            first.send_signal(signal.SIGCONT)
            refused = f"checkpoint of {started.execution_id} refused: lease lost"
            cancelled = f"lease lost for {started.execution_id}; cancelling it here"

            def stopped() -> bool:
                text = first_err.read_text()
                return refused in text or cancelled in text

            # A's handler ends and A tries to commit its result: refused (or its run
            # cancelled by its keeper first), or (if the lease check were missing)
            # written — stop waiting at whichever comes first.
            wait_until(lambda: stopped() or _succeeded(engine.history_sync(started)) > 0)
            assert stopped(), first_err.read_text()
            assert _succeeded(engine.history_sync(started)) == 0
            Path(f"{log}.go-{second.pid}").touch()
            done = engine.wait_sync(started, timeout=60)
            history = engine.history_sync(done)
        finally:
            for proc in (first, second):
                if proc is not None:
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
    assert done.status == "SUCCEEDED", done.cause
    assert json.loads(done.output or "")["by"] == second.pid
    assert _succeeded(history) == 1
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    assert refused not in second_err.read_text()
    keys = {line["key"] for line in _lines(log)}
    assert len(keys) == 1  # both ran the same attempt, with the same idempotency key
