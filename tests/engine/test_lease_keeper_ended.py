"""The lease keeper tells a run whose end just committed from a lease really lost.

A finishing checkpoint deletes the execution's work row. A renewal that
runs in the same instant finds no row, as it would for a lease lost to
another worker; before, the keeper then logged "lease lost" and cancelled
the run while it was only unwinding after its committed end. Now a run
whose end has committed (`Runtime.ended`) is left alone, and a run whose
row vanished otherwise is still cancelled. A run whose finishing commit
is still in flight (`Runtime.finishing`) is left alone too: the renewal's
answer may reach the loop before that commit's, and the commit checks the
lease itself.
"""

from __future__ import annotations

import logging

import anyio
import pytest

from engine import Engine
from engine.worker import LeaseKeeper


def test_a_renewal_does_not_cancel_a_run_whose_end_committed(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> tuple[bool, bool, bool]:
        async with Engine(db_url, worker=False, lease_seconds=0.3) as engine:
            runtime = engine.runtime
            keeper = LeaseKeeper(runtime)
            ended = keeper.reserve("exec-ended")
            finishing = keeper.reserve("exec-finishing")
            lost = keeper.reserve("exec-lost")
            assert ended is not None and finishing is not None and lost is not None
            runtime.ended.add("exec-ended")  # as a committed finishing checkpoint leaves it
            runtime.finishing.add("exec-finishing")  # as one being committed leaves it
            with anyio.move_on_after(0.6):  # several renewal rounds (every lease/3 s)
                await keeper.run()
            return ended.cancel_called, finishing.cancel_called, lost.cancel_called

    with caplog.at_level(logging.WARNING, logger="stepwise.worker"):
        ended_cancelled, finishing_cancelled, lost_cancelled = anyio.run(main)
    assert not ended_cancelled
    assert not finishing_cancelled
    assert lost_cancelled  # a row gone for any other reason is still a lost lease
    warned = {r.getMessage() for r in caplog.records if "lease lost" in r.getMessage()}
    assert warned == {"lease lost for exec-lost; cancelling it here"}


def test_an_engine_forgets_ended_runs(sqlite_url: str) -> None:
    """`Runtime.ended` and `.finishing` hold a run only while it ends: empty once executions end."""

    async def main() -> set[str]:
        async with Engine(sqlite_url) as engine:
            await engine.create_state_machine(
                "m", {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
            )
            records = [await engine.start("m", {"n": n}) for n in range(5)]
            for record in records:
                assert (await engine.wait(record)).status == "SUCCEEDED"
            with anyio.fail_after(10):
                while engine.runtime.ended:
                    await anyio.sleep(0.01)
            return engine.runtime.ended | engine.runtime.finishing

    assert anyio.run(main) == set()
