"""What an early walk's start settles (engine/earlywalk.py): its counts, a cancelled caller.

A walk begun while its start commits is counted as a start handed to the
worker (the `handed_off` count, the claim's queue-lag telemetry) only once
its start is known written: a refused start counts nothing. (A walk its
start did not create says so in the log: test_start_early_walk.py.) A
caller of `Engine.start` cancelled by asyncio after its start's batch
committed gets its cancellation, but the execution it created is durable
and its walk goes on: it runs here, once, not after a release and a claim.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import psycopg
import pytest

from engine import Engine, telemetry
from engine.errors import InvalidExecutionInput
from engine.store import ExecutionRecord
from tests.engine.test_refused_data import _HistoryLock, _refuse_zqfault
from tests.engine.test_start_early_walk import ECHO, _at_the_gate, _echo


def test_a_refused_start_is_not_counted_as_handed_over(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    claims: list[Any] = []
    record_claim = telemetry.record_claim
    monkeypatch.setattr(telemetry, "record_claim", lambda *a: claims.append(a) or record_claim(*a))

    async def scenario() -> None:
        async with Engine(postgres_url, registry=_echo(calls)) as engine:
            await engine.create_state_machine("m", ECHO)
            _refuse_zqfault(postgres_url)  # refuses an ExecutionStarted holding "zqfault"
            worker = engine.worker
            assert worker is not None

            async def refused() -> None:
                with pytest.raises(InvalidExecutionInput):
                    await engine.start("m", {"n": "zqfault"})

            lock = _HistoryLock(postgres_url)
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(refused)
                    await _at_the_gate(engine)  # walked ahead: not handed over yet
                    assert (worker.handed_off, claims) == (0, [])
                    lock.release()
            finally:
                lock.release()
            with anyio.fail_after(30):
                while engine.runtime.early_gates:
                    await anyio.sleep(0.01)
            assert (worker.walked_early, worker.refused_early) == (1, 1)
            assert (worker.handed_off, claims) == (0, []), "a start never written was counted"
            record = await engine.start("m", {"n": 1})
            assert (await engine.wait(record, timeout=60)).status == "SUCCEEDED"
            assert (worker.walked_early, worker.handed_off, len(claims)) == (2, 1, 1)
        assert calls == [{"n": 1}]

    anyio.run(scenario)


def test_a_caller_cancelled_once_its_start_committed_leaves_the_walk_running(
    postgres_url: str,
) -> None:
    calls: list[Any] = []

    async def scenario() -> None:
        # An hour's lease, a minute's poll: only the walk itself runs it promptly.
        async with Engine(
            postgres_url, registry=_echo(calls), lease_seconds=3600, poll_seconds=60
        ) as engine:
            await engine.create_state_machine("m", ECHO)
            worker = engine.worker
            assert worker is not None
            lock = _HistoryLock(postgres_url)
            try:
                caller: asyncio.Task[ExecutionRecord] = asyncio.ensure_future(
                    engine.start("m", {"n": 1})
                )
                await _at_the_gate(engine)
                caller.cancel()  # asyncio's own: the batch is carried through, then raised
                await asyncio.sleep(0.05)
                lock.release()
                with pytest.raises(asyncio.CancelledError):
                    await caller
            finally:
                lock.release()
            raw = postgres_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(raw, autocommit=True) as conn:
                ids = [r[0] for r in conn.execute("SELECT execution_id FROM executions")]
            assert len(ids) == 1, "the start committed"
            done = await engine.wait(ids[0], timeout=30)
            assert done.status == "SUCCEEDED"
            assert (worker.walked_early, worker.refused_early, worker.handed_off) == (1, 0, 1)
        assert calls == [{"n": 1}]

    anyio.run(scenario)
