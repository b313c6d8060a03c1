"""Crash tests: real worker processes SIGKILLed at random moments.

Many executions of a five-Task machine run on worker subprocesses that are
killed and restarted at random. Every execution must finish with the right
output; every step must have run with one idempotency key only; no step may
run again after its result was recorded; histories must be gap-free; and no
two processes may ever work on one execution at the same time.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from tests.engine.processes import spawn_worker

MACHINE = {
    "StartAt": "S0",
    "States": {
        **{f"S{i}": {"Type": "Task", "Resource": "record", "Next": f"S{i + 1}"} for i in range(4)},
        "S4": {"Type": "Task", "Resource": "record", "End": True},
    },
}


def _run_with_kills(url: str, tmp_path: Path, *, workers: int, executions: int) -> dict[str, Any]:
    log = tmp_path / "runs.jsonl"
    with Engine(url, worker=False) as engine:
        engine.create_state_machine_sync("crashy", MACHINE)
        started = [
            engine.start_sync("crashy", {"v": 0}, name=f"e{i}").execution_id
            for i in range(executions)
        ]
        procs = [spawn_worker(url, log) for _ in range(workers)]
        rng = random.Random(7)
        kills = runs_at_kill = 0
        deadline = time.monotonic() + 150
        try:
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(0.3, 0.7))
                # Kill only after some step ran since the last kill: a kill that
                # lands while the workers are still starting interrupts nothing,
                # and on a loaded machine (a worker's start-up there outlasts
                # the 0.3-0.7 s cadence) back-to-back kills left no time to work.
                while _runs_logged(log) == runs_at_kill and time.monotonic() < deadline:
                    if not engine.list_executions_sync(machine="crashy", status="RUNNING"):
                        break
                    time.sleep(0.1)
                victim = rng.randrange(workers)
                procs[victim].send_signal(signal.SIGKILL)
                procs[victim].wait()
                kills += 1
                runs_at_kill = _runs_logged(log)
                procs[victim] = spawn_worker(url, log)
                running = engine.list_executions_sync(machine="crashy", status="RUNNING")
                if not running:
                    break
            # Let the survivors finish without further kills (a deadline of their own).
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if not engine.list_executions_sync(machine="crashy", status="RUNNING"):
                    break
                time.sleep(0.2)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        records = {e: engine.describe_sync(e) for e in started}
        histories = {e: engine.history_sync(e) for e in started}
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    return {"records": records, "histories": histories, "runs": runs, "kills": kills}


def _runs_logged(log: Path) -> int:
    """How many handler runs the workers have logged so far (one line each)."""
    return log.read_bytes().count(b"\n") if log.exists() else 0


def _check(result: dict[str, Any]) -> None:
    records, histories, runs = result["records"], result["histories"], result["runs"]
    assert result["kills"] >= 5
    for execution_id, record in records.items():
        assert record.status == "SUCCEEDED", (execution_id, record.error, record.cause)
        assert json.loads(record.output) == {"v": 5}
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    for run in runs:
        keys[(run["execution"], run["state"])].add(run["key"])
    for step, seen in keys.items():
        assert len(seen) == 1, f"step {step} ran with several idempotency keys: {seen}"
    for execution_id, events in histories.items():
        ids = [e.event_id for e in events]
        assert ids == list(range(1, len(ids) + 1)), f"gap in history of {execution_id}"
        assert all(e.previous_event_id < e.event_id for e in events)
        types = [e.type for e in events]
        assert types.count("ExecutionStarted") == 1 and types[-1] == "ExecutionSucceeded"
        assert types.count("TaskSucceeded") == 5
        # A step whose result is recorded never runs again afterwards.
        succeeded_at: dict[str, float] = {}
        state = None
        for event in events:
            if event.type == "TaskStateEntered":
                state = event.details["name"]
            if event.type == "TaskSucceeded" and state is not None:
                succeeded_at[state] = event.timestamp.timestamp()
        for run in runs:
            if run["execution"] == execution_id:
                assert run["start"] <= succeeded_at[run["state"]] + 0.001, (
                    f"{run['state']} of {execution_id} ran again after its result was recorded"
                )
    # The kills really interrupted work: some execution moved between processes.
    pids_per_execution = defaultdict(set)
    for run in runs:
        pids_per_execution[run["execution"]].add(run["pid"])
    assert any(len(pids) > 1 for pids in pids_per_execution.values())
    # No two processes ever worked on one execution at the same time.
    by_execution: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_execution[run["execution"]].append(run)
    for execution_id, items in by_execution.items():
        items.sort(key=lambda r: r["start"])
        for first, second in itertools.pairwise(items):
            if first["pid"] != second["pid"]:
                assert second["start"] >= first["end"] - 0.001, (
                    f"{execution_id}: pids {first['pid']} and {second['pid']} overlapped"
                )


@pytest.mark.slow
def test_sqlite_workers_survive_sigkill(sqlite_url: str, tmp_path: Path) -> None:
    _check(_run_with_kills(sqlite_url, tmp_path, workers=2, executions=20))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 4])
def test_postgres_workers_survive_sigkill(postgres_url: str, tmp_path: Path, workers: int) -> None:
    # 15 executions a worker: enough work that the kills land mid-execution
    # and force takeovers even when four workers share it.
    _check(_run_with_kills(postgres_url, tmp_path, workers=workers, executions=15 * workers))
