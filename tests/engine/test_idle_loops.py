"""What an idle worker's background loops cost: no claims with nothing due.

Every worker runs a scheduler and an alert deliverer, and most have no
schedule and no delivery. Each pass reads the earliest due time first
(`Store.next_schedule_due`, `Store.next_delivery_due`) and claims only when
something is due, so a process that never sees one never builds, compiles
and keeps the claims' locking reads (W1's peak RSS,
benchmarks/PROFILE_STARTUP.md s22d). That the loops still claim what is
due is the schedule and alert tests' (`test_schedules.py`,
`test_alerts.py`), through the same loops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.store import Store

_LOOP_CALLS = (
    "next_schedule_due",
    "claim_due_schedules",
    "next_delivery_due",
    "claim_deliveries",
)


def _counted(calls: Counter[str], name: str) -> Callable[..., Any]:
    real = getattr(Store, name)

    def call(self: Store, *args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return real(self, *args, **kwargs)

    return call


def test_an_idle_worker_reads_due_times_and_claims_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter[str] = Counter()
    for name in _LOOP_CALLS:
        monkeypatch.setattr(Store, name, _counted(calls, name))

    async def main() -> None:
        async with Engine(db_url):
            # The alert deliverer polls every second: two of its passes.
            with anyio.fail_after(20):
                while calls["next_delivery_due"] + calls["claim_deliveries"] < 2:
                    await anyio.sleep(0.05)

    anyio.run(main)
    assert calls["next_schedule_due"] >= 1
    assert calls["claim_due_schedules"] == 0
    assert calls["claim_deliveries"] == 0
