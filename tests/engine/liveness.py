"""Helpers for the liveness tests: `stepwise worker` subprocesses and checks of what they did.

Workers run the real CLI (``stepwise worker --activities
tests.engine.liveness_handlers``) with their stderr in a file, so a test can
count the outage lines each one logged; `task_runs` reads the handlers'
log; `assert_one_key_per_step` is the crash tests' "no step under two
idempotency keys" check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.store import ExecutionRecord, Store, StoreUnavailable

REPO = Path(__file__).resolve().parents[2]
OUTAGE_STARTED = "store unavailable, retrying with backoff"
OUTAGE_ENDED = "store available again after"


def machine(tasks: int) -> dict[str, Any]:
    """A machine of `tasks` ``record`` Tasks in a row, each adding 1 to ``v``."""
    states: dict[str, Any] = {
        f"T{i}": {"Type": "Task", "Resource": "record", "Next": f"T{i + 1}"}
        for i in range(tasks - 1)
    }
    states[f"T{tasks - 1}"] = {"Type": "Task", "Resource": "record", "End": True}
    return {"StartAt": "T0", "States": states}


def cli_env(log: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "STEPWISE_TEST_LOG": str(log), **extra}


class WorkerProcess:
    """A `stepwise worker` subprocess with its stderr kept in a file."""

    def __init__(self, url: str, log: Path, stderr: Path, *, concurrency: int = 16) -> None:
        self.stderr_path = stderr
        self._stderr = stderr.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "worker",
                "--db",
                url,
                "--concurrency",
                str(concurrency),
                "--lease-seconds",
                "3",
                "--activities",
                "tests.engine.liveness_handlers",
            ],
            cwd=REPO,
            env=cli_env(log),
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_started(self) -> None:
        wait_until(lambda: "started on" in self.stderr or not self.alive(), timeout=120)
        assert self.alive(), self.stderr

    def lines(self, text: str) -> list[str]:
        return [line for line in self.stderr.splitlines() if text in line]

    def stop(self) -> int:
        """SIGTERM, then the exit code (SIGKILL after a generous deadline)."""
        if self.alive():
            self.process.terminate()
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._stderr.close()
        return code


def wait_until(predicate: Callable[[], object], timeout: float = 60) -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout} s")


def task_runs(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]


def assert_one_key_per_step(log: Path) -> None:
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    for run in task_runs(log):
        keys[(run["execution"], run["state"])].add(run["key"])
    doubled = {step: k for step, k in keys.items() if len(k) > 1}
    assert not doubled, doubled


def running_count(url: str) -> int | None:
    """How many executions are RUNNING, or None while the store cannot be reached."""
    try:
        store = Store(url)
    except StoreUnavailable:
        return None
    try:
        return len(store.list_executions(status="RUNNING"))
    except StoreUnavailable:
        return None
    finally:
        store.close()


def all_records(url: str) -> list[ExecutionRecord]:
    store = Store(url)
    try:
        return store.list_executions(limit=1000)
    finally:
        store.close()
