"""Evaluation never blocks the loop: slow JSONata runs beside other executions, bounded.

A 60-iteration Map whose iterations each take about 0.2 s of JSONata used
to hold the worker's event loop for the whole Map (the issue saw
a 1 s Wait delayed by 49 s, SIGTERM by 21 s, and one evaluation reach
1.5 GB). Now an evaluation that outruns its short budget on the loop runs
again in the sandbox process (a deadline and an address-space cap), so a
Wait on the same worker fires on time, SIGTERM stops the worker promptly,
and the engine's own memory does not grow with the evaluation.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
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
            "Items": "{% [1..60] %}",
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


def test_sigterm_stops_a_worker_promptly_in_the_middle_of_slow_jsonata(sqlite_url: str) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        engine.create_state_machine_sync("slow", SELECTOR_MAP)
        engine.start_sync("slow", {})
        worker = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "worker", "--db", sqlite_url],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stderr is not None
            line = worker.stderr.readline()
            while line and "started on" not in line:
                line = worker.stderr.readline()
            # The Map's events commit only after its ItemSelector: wait inside it instead.
            time.sleep(2)
            signalled = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
            took = time.monotonic() - signalled
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert code == 0
    # 60 evaluations of ~0.2 s on the loop delayed it by 10 s or more before.
    assert took < 5
