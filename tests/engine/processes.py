"""Helpers for tests that run real worker processes (tests/engine/crash_worker.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def spawn_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    """Start a crash-test worker process on `url` that logs its handler runs to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.crash_worker", url, str(log)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(predicate: Callable[[], object], timeout: float = 60) -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def killed(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL `process` and reap it."""
    process.send_signal(signal.SIGKILL)
    process.wait()


def killed_mid_call(url: str, log: Path) -> None:
    """Spawn a crash-test worker and SIGKILL it once its first handler call is logged."""
    worker = spawn_worker(url, log)
    wait_until(lambda: log.exists() and log.read_text().strip())
    killed(worker)


def finished_on_a_new_worker(engine: Any, url: str, log: Path, execution: Any) -> Any:
    """Spawn a crash-test worker, wait (up to 60 s) for `execution` to end, kill the worker.

    Returns the ended execution's record (`engine.wait_sync`).
    """
    worker = spawn_worker(url, log)
    try:
        return engine.wait_sync(execution, timeout=60)
    finally:
        killed(worker)
