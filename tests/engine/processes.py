"""Helpers for tests that run real worker processes (tests/engine/crash_worker.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

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
