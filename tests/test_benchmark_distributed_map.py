"""Smoke test of benchmarks/distributed_map.py: it runs at a tiny size and reports what it ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_distributed_map_benchmark_runs_and_checks_its_results() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/distributed_map.py",
            "--rows",
            "50,120",
            "--batch",
            "10",
            "--workers",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split()[3:5] for line in lines] == [
        ["rows=50", "batch=10"],
        ["rows=120", "batch=10"],
    ]
    assert "children=12" in lines[1] and "workers=2" in lines[1]
    assert "max_worker_rss_mb=" in lines[1] and "map_run_s=" in lines[1]
