"""Exactly once per tick across processes: two `stepwise worker`s on PostgreSQL, one SIGKILLed.

A minute-rate schedule is created 1,000 minutes in the past (an Engine on a
clock set back), so when two real worker processes start, 1,000 ticks are
due and within the catch-up window. One worker is SIGKILLed while the
catch-up is under way; the other takes the schedule over when its lease
expires. Every tick ends with exactly one execution, named for its tick.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from engine import Engine
from engine.scheduling import tick_execution_name
from engine.store import Store

REPO = Path(__file__).resolve().parents[2]
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
TICKS = 1000


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    async def sleep_until(self, when: datetime) -> None:
        await anyio.sleep(0)


def worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--db", url, "--lease-seconds", "2"],
        cwd=REPO,
        env={**os.environ, "STEPWISE_DATABASE_URL": ""},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def started_names(store: Store) -> list[str]:
    return [r.name for r in store.list_executions(machine="minutely", limit=TICKS * 2)]


def test_two_workers_start_every_tick_once_through_a_sigkill(
    postgres_url: str, tmp_path: Path
) -> None:
    anchor = (datetime.now(UTC) - timedelta(minutes=TICKS)).replace(second=0, microsecond=0)

    async def create() -> None:
        async with Engine(postgres_url, worker=False, clock=FixedClock(anchor)) as engine:
            await engine.create_state_machine("minutely", PASS)
            await engine.create_schedule(
                "minutely",
                "minutely",
                "rate(1 minute)",
                overlap="allow_all",
                end_date=anchor + timedelta(minutes=TICKS),
            )

    anyio.run(create)
    store = Store(postgres_url)
    procs = [worker(postgres_url, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        deadline = time.monotonic() + 300
        while len(started_names(store)) < TICKS // 4:
            assert time.monotonic() < deadline, "the workers started too few ticks"
            time.sleep(0.2)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=60)
        while len(started_names(store)) < TICKS:
            assert time.monotonic() < deadline, (tmp_path / "worker-1.log").read_text()[-2000:]
            time.sleep(0.5)
        names = sorted(started_names(store))
        expected = [
            tick_execution_name("minutely", anchor + timedelta(minutes=m)) for m in range(TICKS)
        ]
        assert names == expected
        assert store.count_ticks("minutely") == {"STARTED": TICKS}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        store.close()
