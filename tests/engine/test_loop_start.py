"""Starts sent from the event loop on PostgreSQL (engine/store/asyncstart.py), real server.

The same rows, answers and histories as the store threads' start path; a
connection killed under it costs no start; what it does not decide alone
(a name already taken) is answered by the threads as before.
"""

from __future__ import annotations

import time

import psycopg
import pytest

import engine.store.connect as connect
from engine import Engine
from engine.errors import ExecutionAlreadyExists, StateMachineDoesNotExist
from engine.store import ExecutionRecord
from tests.engine.liveness import machine
from tests.engine.test_loop_commit import (
    STEPS,
    _assert_all_ended_once,
    _plain,
    _reference_shape,
    _registry,
    _terminate,
)


def _count(url: str, table: str) -> int:
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
    return int(count)


def test_starts_go_from_the_event_loop_with_the_thread_paths_histories(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = _reference_shape(postgres_url, monkeypatch)
    before = _count(postgres_url, "executions")
    with Engine(postgres_url, registry=_registry()) as engine:
        engine.create_state_machine_sync("chain", machine(STEPS))
        starts = engine.lifecycle.starts
        on_loop = starts.on_loop
        assert on_loop is not None
        fresh = [engine.start_sync("chain", {"v": 0}) for _ in range(4)]
        named = [engine.start_sync("chain", {"v": 0}, name=f"n{i}") for i in range(3)]
        records = [engine.wait_sync(r, timeout=120) for r in fresh + named]
        # Every start was recorded on the loop's connection: none on a thread.
        assert starts.batches_on_loop == starts.transactions == 7
        _assert_all_ended_once(engine, records, reference)
        assert [r.name for r in records[4:]] == ["n0", "n1", "n2"]
        # A connection of its own, not the committer's.
        pid = on_loop.backend_pid
        committer = engine.runtime.committer.on_loop
        assert pid is not None and committer is not None and pid != committer.backend_pid
    assert _count(postgres_url, "executions") == before + 7
    # The Engine's exit closed it.
    with psycopg.connect(_plain(postgres_url), autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_start_connection_killed_between_starts_costs_no_start(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No ping before use: the next start meets the dead connection itself.
    monkeypatch.setattr(connect, "_PING_AFTER_IDLE_SECONDS", 3600.0)
    reference = _reference_shape(postgres_url, monkeypatch)
    with Engine(postgres_url, registry=_registry()) as engine:
        engine.create_state_machine_sync("chain", machine(STEPS))
        starts = engine.lifecycle.starts
        on_loop = starts.on_loop
        assert on_loop is not None
        records: list[ExecutionRecord] = []
        for round in range(3):
            records.append(engine.start_sync("chain", {"v": 0}, name=f"k{round}"))
            pid = on_loop.backend_pid
            _terminate(postgres_url, pid)
            # Killed before anything was sent: the threads record it, no error.
            records.append(engine.start_sync("chain", {"v": 0}, name=f"after-k{round}"))
            assert on_loop.backend_pid is None  # dropped
        records.append(engine.start_sync("chain", {"v": 0}))
        # Back on the loop, on a new connection.
        assert on_loop.backend_pid not in (None, pid)
        assert starts.batches_on_loop == 4 and starts.transactions == 7
        ended = [engine.wait_sync(r, timeout=120) for r in records]
        _assert_all_ended_once(engine, ended, reference)


def test_the_same_name_is_idempotent_and_errors_are_the_thread_paths(postgres_url: str) -> None:
    # No worker: the executions stay RUNNING, so the same name may return one.
    with Engine(postgres_url, registry=_registry(), worker=False) as engine:
        engine.create_state_machine_sync("chain", machine(STEPS))
        starts = engine.lifecycle.starts
        first = engine.start_sync("chain", {"v": 1}, name="twice")
        assert starts.batches_on_loop == 1
        again = engine.start_sync("chain", {"v": 1}, name="twice")
        assert again == first
        with pytest.raises(ExecutionAlreadyExists, match="Execution Already Exists"):
            engine.start_sync("chain", {"v": 2}, name="twice")
        # The name taken: answered by the threads' careful path, as before.
        assert starts.batches_on_loop == 1
        with pytest.raises(StateMachineDoesNotExist, match="'nope'"):
            engine.start_sync("nope", {"v": 1})
        with pytest.raises(StateMachineDoesNotExist, match="'nope'"):
            engine.start_sync("nope", {"v": 1}, name="named")
        # Answered on the loop: the unknown machine is that path's own answer.
        assert starts.batches_on_loop == 3
        assert [r.name for r in engine.list_executions_sync(machine="chain")] == ["twice"]


def _last_statement(url: str, pid: int | None) -> str:
    assert pid is not None
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        row = conn.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    assert row is not None
    return str(row[0])


def test_the_engines_start_sends_the_starts_write_once_writing_nothing(postgres_url: str) -> None:
    # A fresh Engine's first start finds its write already parsed and planned
    # on the session (W2's cold run), and the warm-up wrote no row.
    with Engine(postgres_url, registry=_registry()) as engine:
        on_loop = engine.lifecycle.starts.on_loop
        assert on_loop is not None
        warmed = _last_statement(postgres_url, on_loop.backend_pid)
        assert warmed.startswith("WITH executions_rows AS (INSERT INTO executions")
        written = [_count(postgres_url, table) for table in ("executions", "work_queue")]
        engine.create_state_machine_sync("chain", machine(STEPS))
        engine.wait_sync(engine.start_sync("chain", {"v": 0}), timeout=120)
        assert engine.lifecycle.starts.batches_on_loop == 1
        # The first start's write is the very statement the warm-up sent.
        assert _last_statement(postgres_url, on_loop.backend_pid) == warmed
    assert _count(postgres_url, "executions") == written[0] + 1
    assert written == [0, 0]
