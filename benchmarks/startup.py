"""Start-up figures: the wall and peak RSS of whole `stepwise` commands, as a user runs them.

Two commands, each run `runs` times after one warm-up run (so the file
cache is warm, as it is for a user's second command): `stepwise --help`
and `stepwise run examples/hello.json` (its handlers from
`examples.hello_activities`, a fresh SQLite file in a temporary directory
each time). Wall time is measured around the whole process; peak RSS is
the kernel's own accounting of the finished process (`wait4`'s
`ru_maxrss`), and so is its CPU time (user + system: on a shared machine
the wall waits for a core, the CPU time much less). Figures are the
median, minimum and maximum over the runs.
Run as a script (`python benchmarks/startup.py [--runs N]`, which is what
`run.py` does) it prints one STARTUP line per command: a process forked
from a large parent would carry the parent's resident pages into the
child's `ru_maxrss`, so the measuring process imports nothing of Stepwise.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMMANDS", "Startup", "format_startup", "main", "measure"]

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("help", "run-hello")


@dataclass(frozen=True)
class Startup:
    """One command's start-up figures over its runs."""

    command: str
    runs: int
    wall_s_median: float
    wall_s_min: float
    wall_s_max: float
    peak_rss_mb: float
    cpu_s_median: float = 0.0


def _argv(command: str, directory: Path) -> list[str]:
    stepwise = str(Path(sys.executable).parent / "stepwise")
    if command == "help":
        return [stepwise, "--help"]
    return [
        stepwise, "run", str(REPO / "examples" / "hello.json"),
        "--input", '{"name": "world"}', "--activities", "examples.hello_activities",
        "--db", f"sqlite:///{directory / 'hello.db'}",
    ]  # fmt: skip


def _once(command: str) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="stepwise-startup-") as directory:
        argv = _argv(command, Path(directory))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr = process.stderr.read() if process.stderr else b""
        if process.returncode != 0:
            raise SystemExit(f"stepwise {command} exited {process.returncode}: {stderr[-1000:]!r}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def measure(command: str, runs: int = 5) -> Startup:
    """Time `command` (one of COMMANDS) `runs` times after a warm-up.

    Raises SystemExit when the command fails.
    """
    _once(command)
    walls, peaks, cpus = zip(*(_once(command) for _ in range(runs)), strict=True)
    return Startup(
        command,
        runs,
        statistics.median(walls),
        min(walls),
        max(walls),
        max(peaks),
        statistics.median(cpus),
    )


def format_startup(startup: Startup) -> str:
    """The STARTUP line."""
    return (
        f"STARTUP command={startup.command} runs={startup.runs} "
        f"wall_s={startup.wall_s_median:.3f} wall_s_spread={startup.wall_s_min:.3f}.."
        f"{startup.wall_s_max:.3f} cpu_s={startup.cpu_s_median:.3f} "
        f"peak_rss_mb={startup.peak_rss_mb:.1f}"
    )


def compile_project() -> None:
    """Write the project's bytecode before anything is measured, as an installed package has it.

    A user's Stepwise runs from compiled bytecode (a wheel's install writes
    it). Under ``PYTHONDONTWRITEBYTECODE`` — set in some shells and CI
    images — an editable checkout never caches it, and every measured
    process would compile the engine's sources again: +0.1 s on
    `stepwise run`, and the compiler's memory in the peak RSS.
    """
    for package in ("engine", "activities", "statemachine", "benchmarks"):
        compileall.compile_dir(REPO / package, quiet=1)


def main() -> int:
    """Print one STARTUP line per command."""
    compile_project()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for command in COMMANDS:
        print(format_startup(measure(command, args.runs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
