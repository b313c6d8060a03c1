"""`benchmarks/hop_legs.py` times every leg of a W1 run's handler hops, and none for W1i."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine import pg

REPO = Path(__file__).resolve().parents[1]


def _legs(server: pg.PostgresServer, workload: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "benchmarks/hop_legs.py", "--db", server.admin_url,
         "--workload", workload, "--execs", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures: dict[str, object] = json.loads(done.stdout)
    return figures


@pytest.mark.parametrize("workload", ["W1", "W1i"])
def test_hop_legs_reports_a_runs_hops(postgres_server: pg.PostgresServer, workload: str) -> None:
    figures = _legs(postgres_server, workload)
    assert figures["workload"] == workload
    per_step = figures["per_step"]
    assert isinstance(per_step, dict) and "process" in per_step
    if workload == "W1i":  # inline: no hop to time
        assert "legs_us" not in figures
        return
    hops = figures["hops"]
    assert isinstance(hops, dict) and hops["all"] == 30  # 3 executions of 10 Tasks
    legs = figures["legs_us"]
    assert isinstance(legs, dict)
    assert set(legs) == {
        "submit_to_park", "park_to_start", "call", "end_to_wake", "wake_to_settle",
        "settle_to_resume", "total",
    }  # fmt: skip
    assert all(leg["p50"] > 0 for leg in legs.values())
