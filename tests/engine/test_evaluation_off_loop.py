"""Evaluation never blocks the loop: slow JSONata runs beside other executions, bounded.

A 60-iteration Map whose iterations each take about 0.2 s of JSONata used
to hold the worker's event loop for the whole Map (the issue saw
a 1 s Wait delayed by 49 s, SIGTERM by 21 s, and one evaluation reach
1.5 GB). Now an evaluation that outruns its short budget on the loop runs
again in the sandbox process (a deadline and an address-space cap), so a
Wait on the same worker fires while the Map runs, SIGTERM stops the worker
in the middle of the evaluations,
and the engine's own memory does not grow with the evaluation.
"""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from engine import Engine
from statemachine.jsonata import Limits
from tests.engine.processes import wait_until

REPO = Path(__file__).resolve().parents[2]

# About 0.2 s of pure-Python evaluation on this machine (well under the 1 s deadline).
SLOW = "{% $count([1..10000].($string($) & 'x')) %}"

SLOW_MAP = {
    "QueryLanguage": "JSONata",
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Map",
            "Items": "{% [1..40] %}",
            "MaxConcurrency": 40,
            "ItemProcessor": {
                "StartAt": "Count",
                "States": {"Count": {"Type": "Pass", "Output": SLOW, "End": True}},
            },
            "End": True,
        }
    },
}

# The same evaluations in ItemSelector: all run before any iteration starts.
SELECTOR_MAP = {
    "QueryLanguage": "JSONata",
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Map",
            "Items": "{% [1..6000] %}",
            "ItemSelector": {"n": SLOW},
            "ItemProcessor": {"StartAt": "Keep", "States": {"Keep": {"Type": "Pass", "End": True}}},
            "End": True,
        }
    },
}

SENTINEL = {
    "StartAt": "Pause",
    "States": {
        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Pass", "End": True},
    },
}

# Builds a thousand 99,999-item arrays: about 600 MB before its 1 s deadline when run in-process.
GREEDY = {
    "QueryLanguage": "JSONata",
    "StartAt": "Greedy",
    "States": {
        "Greedy": {"Type": "Pass", "Output": "{% $count([1..1000].([1..99999])) %}", "End": True}
    },
}


def test_a_wait_stays_on_time_beside_a_map_of_slow_jsonata(db_url: str) -> None:
    with Engine(db_url) as engine:
        # A generous deadline: on a loaded machine the ~0.2 s evaluations must
        # not hit the default 1 s one (that is another test's subject).
        engine.runtime.jsonata_limits = Limits(timeout_seconds=60)
        engine.create_state_machine_sync("slow", SLOW_MAP)
        engine.create_state_machine_sync("sentinel", SENTINEL)
        sentinel = engine.start_sync("sentinel", {})
        wait_until(lambda: "WaitStateEntered" in [e.type for e in engine.history_sync(sentinel)])
        slow = engine.start_sync("slow", {})
        done = engine.wait_sync(sentinel, timeout=120)
        events = engine.history_sync(done)
        mapped = engine.wait_sync(slow, timeout=300)
        slow_events = engine.history_sync(mapped)
    exited = next(e.timestamp for e in events if e.type == "WaitStateExited")
    assert mapped.status == "SUCCEEDED", mapped.cause
    assert json.loads(mapped.output or "") == [10000] * 40
    # 40 evaluations of ~0.2 s on the loop delayed the 1 s Wait until the Map
    # was done. Now the Wait ends while most iterations are still to finish:
    # an order of events, not a duration, so a loaded machine cannot fail it.
    finished = [e.timestamp for e in slow_events if e.type == "MapIterationSucceeded"]
    assert len(finished) == 40
    assert sum(1 for moment in finished if moment <= exited) < 20


def test_a_greedy_evaluation_is_bounded_outside_the_engine_process(sqlite_url: str) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(GREEDY, {})
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert (record.status, record.error) == ("FAILED", "States.QueryEvaluationError")
    assert "D1012" in (record.cause or "") or "Evaluation limit exceeded" in (record.cause or "")
    assert grown_mb < 200


def _leased(sqlite_url: str) -> bool:
    """Whether a worker holds the lease of the (one) execution: it claimed it and is running it."""
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        return (
            db.execute("SELECT 1 FROM work_queue WHERE lease_owner IS NOT NULL").fetchone()
            is not None
        )


def _has_child(pid: int) -> bool:
    """Whether process `pid` has a child: the worker's sandbox, where an evaluation moved."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            return True
    return False


def test_sigterm_stops_a_worker_in_the_middle_of_slow_jsonata(sqlite_url: str) -> None:
    # 6,000 evaluations of ~0.2 s: evaluated on the loop, SIGTERM would wait
    # for all of them (about 20 minutes, far past the hang guards below).
    with Engine(sqlite_url, worker=False) as engine:
        engine.create_state_machine_sync("slow", SELECTOR_MAP)
        started = engine.start_sync("slow", {})
        worker = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "worker", "--db", sqlite_url],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Claimed, and an evaluation moved to the sandbox (started on the
            # first one that outruns its budget on the loop): the worker is in
            # the Map's ItemSelector, which it cannot finish before the signal.
            wait_until(lambda: _leased(sqlite_url) and _has_child(worker.pid))
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=120)  # a hang guard, not a measure
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        stopped = engine.describe_sync(started)
        events = [e.type for e in engine.history_sync(started)]
    assert code == 0
    # Stopped in the middle of the evaluations, not after them: nothing of the
    # Map's iterations was reached, and the execution waits for another worker.
    assert stopped.status == "RUNNING"
    assert "MapIterationStarted" not in events
