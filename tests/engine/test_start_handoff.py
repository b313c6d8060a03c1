"""Start-and-claim: a start handed straight to the starting Engine's own worker.

Both stores. A start on the queue of the Engine's running worker, while it
has a free slot, commits its work row already leased to that worker (no
other worker's claim can take it, from the first instant), runs there once,
and an idempotent repeat is never adopted a second time. The worker's
concurrency bounds handed-off and claimed runs together; without a free
slot, without a worker, or on another queue, a start is due and unleased as
before. An Engine that closes right after its starts gives their leases
back: another Engine runs them at once, not a lease period later; so does
a start whose caller is cancelled while its batch commits. A leased
start's rows are the same on the raw/pipelined path as on the careful one.
A process killed (SIGKILL) while running a start it handed to itself loses
nothing: its lease expires and another Engine finishes the execution,
without running its recorded step again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
import sqlalchemy as sa

from activities import Registry
from engine import Engine
from engine.store import Store
from engine.store.schema import work_queue
from tests.engine.processes import wait_until
from tests.engine.test_queues import COUNT_THEN_HANG, REPO
from tests.engine.test_start_raw_rows import (  # the fast/careful comparison's own set-up
    REQUESTS,
    T0,
    _prepare,
    _rows,
    _store,
)

HOLD = {"StartAt": "Hold", "States": {"Hold": {"Type": "Task", "Resource": "hold", "End": True}}}
PASSES = {
    "StartAt": "A",
    "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}},
}


def lease_owners(db_url: str) -> dict[str, str | None]:
    """Each execution's work row's lease owner, read on a connection of its own."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(work_queue.c.execution_id, work_queue.c.lease_owner))
            return {row.execution_id: row.lease_owner for row in rows}
    finally:
        engine.dispose()


class Holding:
    """A `hold` handler keeping every call until `released`; counts calls and the most at once."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.running = 0
        self.most = 0
        self.released = anyio.Event()

    def registry(self) -> Registry:
        registry = Registry()
        registry.register("hold", self.hold)
        return registry

    async def hold(self, value: Any) -> Any:
        self.calls.append(value)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.released.wait()
        finally:
            self.running -= 1
        return value


async def until(predicate: Any) -> None:
    """Poll `predicate` (a liveness bound, not a timing claim: fails only if it never holds)."""
    with anyio.fail_after(60):
        while not predicate():
            await anyio.sleep(0.01)


def test_a_start_is_leased_to_the_engines_worker_as_it_commits_and_runs_once(db_url: str) -> None:
    async def main() -> None:
        holding = Holding()
        async with Engine(
            db_url, registry=holding.registry(), concurrency=2, poll_seconds=0.1
        ) as engine:
            assert engine.worker is not None
            await engine.create_state_machine("m", HOLD)
            worker = engine.worker
            await until(lambda: worker.taking_starts)
            one = await engine.start("m", {"n": 1}, name="one")
            # Leased to this worker in the start's own commit: another worker finds nothing due.
            assert lease_owners(db_url)[one.execution_id] == engine.worker_id
            now = datetime.now(UTC)
            assert engine.store.claim_due("intruder", limit=10, lease_seconds=30, now=now) == []
            # The same start again returns the running execution and is never adopted twice;
            # the slot it was promised comes back, so the next start is handed over too.
            again = await engine.start("m", {"n": 1}, name="one")
            assert again.execution_id == one.execution_id
            two = await engine.start("m", {"n": 2}, name="two")
            assert lease_owners(db_url)[two.execution_id] == engine.worker_id
            assert engine.worker.handed_off == 2
            # Both slots taken: the third start waits, due and unleased, for a claim.
            three = await engine.start("m", {"n": 3}, name="three")
            assert lease_owners(db_url)[three.execution_id] is None
            await until(lambda: len(holding.calls) == 2)
            holding.released.set()
            for record in (one, two, three):
                done = await engine.wait(record, timeout=60)
                assert done.status == "SUCCEEDED"
            assert sorted(call["n"] for call in holding.calls) == [1, 2, 3]
            assert holding.most <= 2
            assert engine.worker.handed_off == 2

    anyio.run(main)


def test_concurrency_bounds_handed_off_and_claimed_runs_together(db_url: str) -> None:
    async def main() -> None:
        holding = Holding()
        async with Engine(
            db_url, registry=holding.registry(), concurrency=3, poll_seconds=0.1
        ) as engine:
            await engine.create_state_machine("m", HOLD)
            records = [await engine.start("m", {"n": n}) for n in range(8)]
            await until(lambda: len(holding.calls) == 3)
            owners = lease_owners(db_url)
            assert (
                sorted(owner or "" for owner in owners.values())
                == [""] * 5 + [engine.worker_id] * 3
            )
            holding.released.set()
            for record in records:
                assert (await engine.wait(record, timeout=60)).status == "SUCCEEDED"
            assert sorted(call["n"] for call in holding.calls) == list(range(8))
            assert holding.most <= 3

    anyio.run(main)


def test_without_a_worker_or_on_another_queue_a_start_is_due_and_unleased(db_url: str) -> None:
    async def main() -> None:
        async with Engine(db_url, worker=False) as client:
            await client.create_state_machine("m", PASSES)
            record = await client.start("m")
            assert lease_owners(db_url)[record.execution_id] is None
        async with Engine(db_url, poll_seconds=0.1) as engine:
            assert engine.worker is not None
            elsewhere = await engine.start("m", queue="elsewhere")
            assert lease_owners(db_url)[elsewhere.execution_id] is None
            # The default queue's execution started by the client is claimed as before.
            assert (await engine.wait(record, timeout=60)).status == "SUCCEEDED"
            assert engine.worker.handed_off == 0
            assert (await engine.describe(elsewhere)).status == "RUNNING"

    anyio.run(main)


def test_starts_handed_to_an_engine_that_closes_at_once_are_run_by_another(db_url: str) -> None:
    async def main() -> None:
        holding = Holding()
        records = []
        # An hour-long lease: only a lease given back lets the second Engine run them now.
        async with Engine(
            db_url, registry=holding.registry(), lease_seconds=3600, poll_seconds=0.1
        ) as first:
            await first.create_state_machine("m", HOLD)

            async def start(n: int) -> None:
                records.append(await first.start("m", {"n": n}, name=f"e{n}"))

            async with anyio.create_task_group() as group:
                for n in range(5):
                    group.start_soon(start, n)
            assert first.worker is not None
            assert first.worker.handed_off > 0
        assert len(records) == 5
        assert set(lease_owners(db_url).values()) == {None}
        finishing = Registry()
        finishing.register("hold", lambda value: value)
        async with Engine(db_url, registry=finishing, poll_seconds=0.1) as second:
            for record in records:
                done = await second.wait(record, timeout=60)
                assert done.status == "SUCCEEDED"

    anyio.run(main)


def _waiting_on_a_lock(raw_url: str) -> bool:
    """Whether a session of the database waits for a lock (the start's write, behind LOCK TABLE)."""
    with psycopg.connect(raw_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def test_a_handed_start_whose_caller_is_cancelled_as_it_commits_runs_at_once(
    postgres_url: str,
) -> None:
    raw = postgres_url.replace("postgresql+psycopg://", "postgresql://")

    async def main() -> None:
        # An hour-long lease: only a lease given back (or a run here) lets it run in this test.
        async with Engine(postgres_url, lease_seconds=3600, poll_seconds=0.1) as engine:
            await engine.create_state_machine("m", PASSES)
            worker = engine.worker
            assert worker is not None
            await until(lambda: worker.taking_starts)
            with psycopg.connect(raw) as locker:
                # The start's write waits behind this lock: its batch is in flight.
                locker.execute("LOCK TABLE executions IN SHARE ROW EXCLUSIVE MODE")
                caller = asyncio.ensure_future(engine.start("m", {}, name="cut"))
                await until(lambda: _waiting_on_a_lock(raw))
                # asyncio's own cancellation (a client's timeout), which anyio's
                # shield does not hold: the batch is carried through, then it is raised.
                caller.cancel()
                await asyncio.sleep(0)
                locker.commit()
            with pytest.raises(asyncio.CancelledError):
                await caller
            done = await engine.wait("cut", timeout=60)
            assert done.status == "SUCCEEDED"

    asyncio.run(main())


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
def test_leased_start_writes_are_the_same_on_the_fast_and_the_careful_path(
    urls: tuple[str, str],
) -> None:
    # Every other start of the batch handed to a worker: its work row leased, the rest due.
    expires = T0 + timedelta(seconds=30)
    requests = [
        replace(request, lease_owner="worker-x", lease_expires_at=expires) if i % 2 else request
        for i, request in enumerate(REQUESTS)
    ]
    raw, careful = _store(urls[0], raw=True), _store(urls[1], raw=False)
    try:
        for store in (raw, careful):
            _prepare(store)
            store.start_executions(requests)
        assert _rows(raw) == _rows(careful)
        with raw._engine.connect() as conn:
            work = {
                row.execution_id: (row.lease_owner, row.lease_expires_at)
                for row in conn.execute(sa.select(work_queue))
            }
        # REQUESTS[1] ("b") was leased; REQUESTS[0] ("a") was not.
        assert work["arn:exec:Machine:b"] == ("worker-x", expires)
        assert work["arn:exec:Machine:a"] == (None, None)
    finally:
        raw.close()
        careful.close()


# Run by the process the next test kills: starts one execution, handed to its
# own worker (a 2-second lease), which records Count and then hangs in Hang.
_STARTER = """
import sys, anyio
import tests.engine.queue_handlers
from engine import Engine

async def main():
    url, definition, log, flag = sys.argv[1:]
    async with Engine(url, lease_seconds=2, poll_seconds=0.1) as engine:
        await engine.create_state_machine("m", definition)
        await engine.start("m", {"log": log, "flag": flag}, name="handed")
        assert engine.worker.handed_off == 1
        await anyio.sleep(3600)

anyio.run(main)
"""


def test_a_handed_off_start_whose_process_dies_is_taken_over_when_its_lease_expires(
    db_url: str, tmp_path: Path
) -> None:
    import tests.engine.queue_handlers  # noqa: F401 - registers queue_count and queue_hang_once

    log, flag = tmp_path / "count.log", tmp_path / "hanging.flag"
    starter = subprocess.Popen(
        [sys.executable, "-c", _STARTER, db_url, json.dumps(COUNT_THEN_HANG), str(log), str(flag)],
        cwd=REPO,
    )
    try:
        wait_until(lambda: flag.exists() or starter.poll() is not None)
        assert starter.poll() is None, "the starting process ended before its run hung"
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
    with Engine(db_url, poll_seconds=0.1) as engine:
        done = engine.wait_sync("handed", timeout=120)
        assert done.status == "SUCCEEDED"
        assert json.loads(done.output or "null") == {
            "log": str(log),
            "flag": str(flag),
            "hang": {"resumed": True},
        }
    # Count was recorded by the dead process's run before its effect: never run again.
    assert log.read_text() == "count\n"


def test_a_start_gives_back_only_the_lease_it_wrote_never_one_its_worker_claimed(
    db_url: str,
) -> None:
    # A repeat start of a name whose caller is cancelled gives back the lease its
    # start would have written; the execution exists already, and this worker's
    # claim (its run about to begin, not yet held) leased it meanwhile: that lease stays.
    with Engine(db_url, lease_seconds=3600, poll_seconds=0.1) as engine:
        engine.create_state_machine_sync("m", PASSES)
        # On a queue this Engine's worker does not serve: claimed below as its claim would.
        x = engine.start_sync("m", {}, name="x", queue="elsewhere").execution_id
        worker = engine.worker
        assert worker is not None
        claimer = Store(db_url)
        try:
            claimed = claimer.claim_due_loaded(
                engine.runtime.worker_id,
                limit=1,
                lease_seconds=3600,
                now=datetime.now(UTC),
                queue="elsewhere",
            )
        finally:
            claimer.close()
        assert [row[0] for row in claimed] == [x] and x not in worker.keeper.held
        started = datetime.now(UTC)  # the repeat start's own lease would end an hour on
        engine._call(worker.give_back, x, started + timedelta(seconds=3600))
        assert lease_owners(db_url)[x] == engine.runtime.worker_id  # still leased
        # The lease the start did write is given back (due now, for any worker).
        ends = _lease_end(db_url, x)
        engine._call(worker.give_back, x, ends)
        assert lease_owners(db_url)[x] is None


def _lease_end(db_url: str, execution_id: str) -> datetime:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            ends: datetime = conn.execute(
                sa.select(work_queue.c.lease_expires_at).where(
                    work_queue.c.execution_id == execution_id
                )
            ).scalar_one()
            return ends
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_engine_closing_cancels_its_claimed_and_handed_off_runs_and_gives_their_leases_back(
    db_url: str, backend: str
) -> None:
    """The worker's runs (on asyncio in the light task group) all end with the worker's stop.

    Two executions are claimed (started by a client with no worker) and two
    handed off (started by the worker's own Engine); all four hold in their
    handler when the Engine closes: each run is cancelled and its lease
    released at once, so another Engine finishes all four now, not an hour later.
    """

    async def main() -> None:
        holding = Holding()
        async with Engine(db_url, worker=False) as client:
            await client.create_state_machine("m", HOLD)
            claimed = [await client.start("m", {"n": n}) for n in range(2)]
        async with Engine(
            db_url, registry=holding.registry(), lease_seconds=3600, poll_seconds=0.1
        ) as engine:
            await until(lambda: len(holding.calls) == 2)
            handed = [await engine.start("m", {"n": n}) for n in range(2, 4)]
            await until(lambda: len(holding.calls) == 4)
            assert engine.worker is not None
            assert engine.worker.handed_off == 2
            assert set(lease_owners(db_url).values()) == {engine.worker_id}
        assert holding.running == 0
        assert set(lease_owners(db_url).values()) == {None}
        finishing = Registry()
        finishing.register("hold", lambda value: value)
        async with Engine(db_url, registry=finishing, poll_seconds=0.1) as second:
            for record in claimed + handed:
                assert (await second.wait(record, timeout=60)).status == "SUCCEEDED"

    anyio.run(main, backend=backend)
