"""On PostgreSQL an asyncio Engine sends step commits from the event loop, with the same outcomes.

The committer's groups go out as the one-call commit on an
`AsyncConnection` the loop drives (`engine/store/asynccommit.py`), no store
thread in between. These tests run real Engines on a real PostgreSQL and
check what users rely on: chains of Tasks end with the same results and
the same histories as on the store threads; killing that connection's
server process mid-run, or crash-restarting the server, still ends every
execution exactly once with the right history; a lease lost before a
commit is still reported LEASE_LOST and a collision CONFLICT (by the
careful path, never by the one call); the finishing commit's read-back is
what a describe returns; and the Engine's exit closes the connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anyio
import psycopg
import pytest

import engine.store.connect as connect
from activities.registry import Registry
from engine import Engine
from engine.clock import SystemClock
from engine.committer import Committer
from engine.store import (
    Checkpoint,
    CommitResult,
    ExecutionRecord,
    ExecutionStatus,
    Store,
    StoreUnavailable,
)
from tests.engine import pg
from tests.engine.committing import in_thread
from tests.engine.liveness import machine
from tests.engine.test_commit_raw_rows import LATER, T0, _event, _prepared
from tests.engine.test_commit_read_back import _finish

STEPS = 10


def _registry() -> Registry:
    registry = Registry()
    registry.register("record", lambda value: {"v": value["v"] + 1})
    return registry


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _shape(engine: Engine, execution_id: str) -> list[tuple[str, int, int]]:
    """An execution's history without timestamps: (type, id, previous id) per event."""
    return [(e.type, e.event_id, e.previous_event_id) for e in engine.store.history(execution_id)]


def _run_all(engine: Engine, count: int, prefix: str = "e") -> list[ExecutionRecord]:
    records = [engine.start_sync("chain", {"v": 0}, name=f"{prefix}{i}") for i in range(count)]
    return [engine.wait_sync(record, timeout=120) for record in records]


def _reference_shape(url: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """The history of one chain committed on the store threads (no loop connection)."""
    with monkeypatch.context() as patched:
        patched.setattr(Store, "loop_commit", lambda self: None)
        with Engine(url, registry=_registry()) as engine:
            assert engine.runtime.committer.on_loop is None
            engine.create_state_machine_sync("chain", machine(STEPS))
            (record,) = _run_all(engine, 1, prefix="reference")
            assert record.status == ExecutionStatus.SUCCEEDED
            return _shape(engine, record.execution_id)


def _assert_all_ended_once(
    engine: Engine, records: list[ExecutionRecord], reference: list[tuple[str, int, int]]
) -> None:
    for record in records:
        assert record.status == ExecutionStatus.SUCCEEDED, record
        assert record.output == f'{{"v":{STEPS}}}'
        assert record == engine.describe_sync(record)
        assert _shape(engine, record.execution_id) == reference


def test_step_commits_go_from_the_event_loop_with_the_thread_paths_results(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _reference_shape(postgres_url, monkeypatch)
    with Engine(postgres_url, registry=_registry()) as engine:
        engine.create_state_machine_sync("chain", machine(STEPS))
        records = _run_all(engine, 5)
        on_loop = engine.runtime.committer.on_loop
        assert on_loop is not None
        # Every group (each step's commit, each finish with its read-back) went on it.
        committer = engine.runtime.committer
        assert committer.checkpoints >= 5 * (STEPS + 1)
        assert on_loop.commits == committer.commits
        _assert_all_ended_once(engine, records, reference)
        pid = on_loop.backend_pid
        assert pid is not None
        with psycopg.connect(_plain(postgres_url), autocommit=True) as conn:
            (query,) = conn.execute(
                "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone() or ("",)
        # Its last statement: the finishing call's read-back or the call itself.
        assert "stepwise_commit_v3" in query or "FROM executions" in query
    # The Engine's exit closed it.
    with psycopg.connect(_plain(postgres_url), autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_groups_larger_than_the_loops_share_commit_on_a_store_thread_with_the_same_histories(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _reference_shape(postgres_url, monkeypatch)
    with Engine(postgres_url, registry=_registry(), concurrency=30) as engine:
        committer = engine.runtime.committer
        on_loop = committer.on_loop
        assert on_loop is not None
        # Only single checkpoints on the loop: 30 executions walking at once
        # queue several checkpoints per group, and those groups take the thread.
        committer.loop_group_max = 1
        engine.create_state_machine_sync("chain", machine(STEPS))
        records = _run_all(engine, 30, prefix="wide")
        _assert_all_ended_once(engine, records, reference)
        assert committer.checkpoints >= 30 * (STEPS + 1)
        # Fewer groups than checkpoints: some were shared, and those left the loop.
        assert committer.commits < committer.checkpoints
        assert on_loop.commits < committer.commits


def test_a_sqlite_engine_has_no_loop_connection(sqlite_url: str) -> None:
    with Engine(sqlite_url, registry=_registry()) as engine:
        assert engine.runtime.committer.on_loop is None
        engine.create_state_machine_sync("chain", machine(2))
        (record,) = _run_all(engine, 1)
        assert record.status == ExecutionStatus.SUCCEEDED


def _killer(url: str, engine: Engine, times: int) -> tuple[threading.Thread, list[int]]:
    """A thread terminating the loop connection's backend `times` times, 15 commits apart.

    Each kill waits for a new connection (and 15 commits on it) after the last.
    """
    killed: list[int] = []

    def kill() -> None:
        on_loop = engine.runtime.committer.on_loop
        assert on_loop is not None
        for _ in range(times):
            start = on_loop.commits
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                on_loop.commits < start + 15 or on_loop.backend_pid in (None, *killed)
            ):
                time.sleep(0.001)
            pid = on_loop.backend_pid
            if pid is None or pid in killed:
                return
            with psycopg.connect(_plain(url), autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread, killed


def test_the_loop_connection_killed_mid_run_still_ends_every_execution_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _reference_shape(postgres_url, monkeypatch)
    with Engine(postgres_url, registry=_registry(), concurrency=8) as engine:
        engine.create_state_machine_sync("chain", machine(STEPS))
        engine.start_sync("chain", {"v": 0}, name="warm")  # opens the loop connection
        on_loop = engine.runtime.committer.on_loop
        assert on_loop is not None
        thread, killed = _killer(postgres_url, engine, times=3)
        # Rounds of 20 until the three kills are made: under load more groups
        # outgrow the loop's size (`Committer.loop_group_max`) and go to the
        # threads, so one round may hold too few loop commits for three.
        records: list[ExecutionRecord] = []
        for round_ in range(10):
            records += _run_all(engine, 20, prefix=f"r{round_}e")
            if not thread.is_alive():
                break
        thread.join()
        _assert_all_ended_once(engine, records, reference)
        assert len(killed) == 3
        # Replaced and in use again after the kills.
        before = on_loop.commits
        (after,) = [engine.wait_sync(engine.start_sync("chain", {"v": 0}), timeout=60)]
        assert after.status == ExecutionStatus.SUCCEEDED
        assert on_loop.commits > before and on_loop.backend_pid not in killed


@pytest.fixture(scope="module")
def private_server() -> Iterator[pg.PostgresServer]:
    """A PostgreSQL server of this module's own, so restarting it disturbs no other test.

    Durable (fsync and synchronous_commit on, as in production): a commit
    acknowledged before the crash-restart must still be there after it.
    """
    with pg.private_server(durable=True) as server:
        yield server


def test_a_server_restart_mid_run_still_ends_every_execution_once(
    private_server: pg.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = private_server.create_database("loop_commit_restart")
    reference = _reference_shape(url, monkeypatch)
    with Engine(url, registry=_registry(), concurrency=8) as engine:
        engine.create_state_machine_sync("chain", machine(STEPS))
        on_loop = engine.runtime.committer.on_loop
        assert on_loop is not None
        records = [engine.start_sync("chain", {"v": 0}, name=f"e{i}") for i in range(20)]
        deadline = time.monotonic() + 60
        while on_loop.commits < 30 and time.monotonic() < deadline:
            time.sleep(0.001)
        first_pid = on_loop.backend_pid
        private_server.restart()
        ended = [engine.wait_sync(record, timeout=120) for record in records]
        _assert_all_ended_once(engine, ended, reference)
        before = on_loop.commits
        after = engine.wait_sync(engine.start_sync("chain", {"v": 0}), timeout=60)
        assert after.status == ExecutionStatus.SUCCEEDED
        assert on_loop.commits > before and on_loop.backend_pid != first_pid


def _committer(store: Store) -> Committer:
    on_loop = store.loop_commit()
    assert on_loop is not None
    return Committer(store, worker_id="w", clock=SystemClock(), run_db=in_thread, on_loop=on_loop)


def _on_asyncio(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args, backend="asyncio")


def test_a_lease_lost_before_the_commit_is_still_lease_lost(postgres_url: str) -> None:
    store = _prepared(postgres_url, fast=True)
    try:
        committer = _committer(store)
        assert committer.on_loop is not None

        async def scenario() -> tuple[CommitResult, CommitResult, CommitResult]:
            ok = await committer.commit(
                Checkpoint("e-c", journal=[("s/A", "1")], events=[_event(2, "TaskScheduled")])
            )
            # b's lease expired and another worker took it over.
            assert store.claim_execution(
                "e-b", "other", lease_seconds=60, now=T0 + timedelta(minutes=2)
            )
            lost = await committer.commit(
                Checkpoint("e-b", journal=[("s/A", "1")], events=[_event(2, "TaskScheduled")])
            )
            # A step another worker recorded already: a collision.
            conflict = await committer.commit(Checkpoint("e-c", journal=[("s/A", "2")]))
            await committer.on_loop.aclose()  # type: ignore[union-attr]
            return ok, lost, conflict

        ok, lost, conflict = _on_asyncio(scenario)
        assert (ok, lost, conflict) == (
            CommitResult.OK,
            CommitResult.LEASE_LOST,
            CommitResult.CONFLICT,
        )
        assert committer.leases_lost == 1
        # The loop sent the OK one; the refused ones it handed to the careful path.
        assert committer.on_loop.commits == 1
        assert [e.event_id for e in store.history("e-b")] == [1]
        assert store.load("e-c").journal["s/A"] == "1"
    finally:
        store.close()


def test_the_finishing_commit_answers_what_a_describe_returns(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _prepared(postgres_url, fast=True)
    try:
        store.request_stop("e-b", error="Halt", cause="from elsewhere", now=T0)
        committer = _committer(store)
        asked: list[str] = []
        real = store.get_execution

        def recording(ref: str) -> ExecutionRecord:
            asked.append(ref)
            return real(ref)

        monkeypatch.setattr(store, "get_execution", recording)

        async def scenario() -> tuple[CommitResult, ExecutionRecord | None]:
            try:
                return await committer.commit_reading(_finish("e-b"))
            finally:
                await committer.on_loop.aclose()  # type: ignore[union-attr]

        result, record = _on_asyncio(scenario)
        assert result is CommitResult.OK and asked == []  # read in the call's round trip
        assert committer.on_loop is not None and committer.on_loop.commits == 1
        assert record is not None and record == real("e-b")
        assert record.status == ExecutionStatus.SUCCEEDED and record.stop_date == LATER
        assert record.stop_requested and record.stop_requested_error == "Halt"
    finally:
        store.close()


def _terminate(url: str, pid: int | None) -> None:
    assert pid is not None
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _step(execution_id: str, n: int) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[(f"k{n}", "1")],
        events=[_event(n + 1, "PassStateEntered", name=f"S{n}")],
        last_event_id=n,
    )


def test_the_loop_connection_killed_while_idle_is_replaced_without_an_error(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connect, "_PING_AFTER_IDLE_SECONDS", 0.05)
    store = _prepared(postgres_url, fast=True)
    try:
        committer = _committer(store)
        on_loop = committer.on_loop
        assert on_loop is not None

        async def scenario() -> list[CommitResult]:
            try:
                first = await committer.commit(_step("e-c", 1))
                pid = on_loop.backend_pid
                _terminate(postgres_url, pid)
                await anyio.sleep(0.1)
                second = await committer.commit(_step("e-c", 2))
                assert on_loop.backend_pid not in (None, pid)
                return [first, second]
            finally:
                await on_loop.aclose()

        assert _on_asyncio(scenario) == [CommitResult.OK] * 2
        assert on_loop.commits == 2
        assert [e.event_id for e in store.history("e-c")] == [1, 2, 3]
    finally:
        store.close()


def test_the_loop_connection_killed_in_use_fails_one_commit_then_recovers(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connect, "_PING_AFTER_IDLE_SECONDS", 3600.0)
    store = _prepared(postgres_url, fast=True)
    try:
        committer = _committer(store)
        on_loop = committer.on_loop
        assert on_loop is not None

        async def scenario() -> list[CommitResult]:
            try:
                first = await committer.commit(_step("e-c", 1))
                _terminate(postgres_url, on_loop.backend_pid)
                # Its outcome unknown to the caller, as on the store's threads.
                with pytest.raises(StoreUnavailable):
                    await committer.commit(_step("e-c", 2))
                assert on_loop.backend_pid is None  # dropped
                second = await committer.commit(_step("e-c", 2))
                return [first, second]
            finally:
                await on_loop.aclose()

        assert _on_asyncio(scenario) == [CommitResult.OK] * 2
        assert on_loop.commits == 2
        assert [e.event_id for e in store.history("e-c")] == [1, 2, 3]
        assert store.load("e-c").journal == {"k1": "1", "k2": "1"}
    finally:
        store.close()


def test_a_refused_finishing_commit_leaves_the_loop_connection_fit_for_the_next(
    postgres_url: str,
) -> None:
    # A finishing commit someone waits on is sent as BEGIN, call, COMMIT and
    # the read-back; refused inside that transaction (a lease lost), the
    # session must not carry the failed transaction into the next group,
    # which belongs to other executions and must commit as if nothing happened.
    store = _prepared(postgres_url, fast=True)
    try:
        committer = _committer(store)
        on_loop = committer.on_loop
        assert on_loop is not None

        async def scenario() -> tuple[CommitResult, CommitResult, CommitResult]:
            try:
                first = await committer.commit(_step("e-c", 1))
                assert store.claim_execution(
                    "e-b", "other", lease_seconds=60, now=T0 + timedelta(minutes=2)
                )
                lost, _record = await committer.commit_reading(_finish("e-b"))
                after = await committer.commit(_step("e-c", 2))
                return first, lost, after
            finally:
                await on_loop.aclose()

        first, lost, after = _on_asyncio(scenario)
        assert (first, lost, after) == (CommitResult.OK, CommitResult.LEASE_LOST, CommitResult.OK)
        assert on_loop.commits == 2  # the step after the refusal went out on the loop too
        assert [e.event_id for e in store.history("e-c")] == [1, 2, 3]
    finally:
        store.close()


def test_the_engines_start_plans_the_commit_functions_statements_writing_nothing(
    postgres_url: str,
) -> None:
    # The warm-up runs the function's progress, finish and release statements
    # for no execution (rolled back): an alert that takes every status gets no
    # delivery, no row changes, and the first commits still land.

    async def alert_on_everything() -> None:
        async with Engine(postgres_url, registry=_registry()) as engine:
            await engine.create_state_machine("chain", machine(STEPS))
            statuses = ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]
            await engine.alerts.create("all", statuses=statuses, webhook="http://127.0.0.1:9/h")

    anyio.run(alert_on_everything)
    counts = {t: _rows(postgres_url, t) for t in ("executions", "work_queue", "alert_deliveries")}
    with Engine(postgres_url, registry=_registry()) as engine:
        on_loop = engine.runtime.committer.on_loop
        assert on_loop is not None
        with psycopg.connect(_plain(postgres_url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT query FROM pg_stat_activity WHERE pid = %s", (on_loop.backend_pid,)
            ).fetchone()
        assert row is not None and row[0] == "ROLLBACK"
        assert {t: _rows(postgres_url, t) for t in counts} == counts
        record = engine.wait_sync(engine.start_sync("chain", {"v": 0}), timeout=120)
        assert record.status == "SUCCEEDED"
        assert on_loop.commits > 0


def _rows(url: str, table: str) -> int:
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
    return int(count)
