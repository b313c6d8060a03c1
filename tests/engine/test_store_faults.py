"""A store fault inside a commit is not the execution's poison; refused data fails only its own.

The store's boundary decides whose fault a driver error is (`boundary.fault_of`).
An error the database raises that is not about the data it was given (here
InFailedSqlTransaction, SQLSTATE 25P02, raised by a real server-side trigger
while a switch is on) ends the activation as an outage does: the execution
is retried and, once the fault is gone, succeeds with nothing recorded lost.
An error about the data (SQLSTATE 22P05, a character the database cannot
store) fails only the execution whose checkpoint held it: the group commit
it shared is committed again without it. A SQLite file locked by another
process past the busy timeout is an outage too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import anyio
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from activities import Registry
from engine import Engine
from engine.clock import SystemClock
from engine.committer import Committer
from engine.errors import StoreUnavailable
from engine.store import Checkpoint, CommitResult, Event, Store
from engine.store.boundary import fault_of, is_transient, mapped_errors
from engine.store.errors import UnstorableData
from engine.walk import is_poison
from engine.worker import outage_of
from tests.engine.committing import T0, claimed
from tests.engine.processes import wait_until

# A trigger that refuses any history row or block whose text holds `zqfault`, with
# the SQLSTATE in fault_switch, while the switch is on; each refusal takes a
# number from fault_hits (a sequence: not rolled back with the refused commit).
_FAULT = """
CREATE TABLE fault_switch (code text NOT NULL, active boolean NOT NULL);
INSERT INTO fault_switch VALUES ('{code}', true);
CREATE SEQUENCE fault_hits;
CREATE FUNCTION fault_inject() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE chosen text;
BEGIN
  SELECT code INTO chosen FROM fault_switch WHERE active;
  IF chosen IS NOT NULL AND to_jsonb(NEW)::text LIKE '%zqfault%' THEN
    PERFORM nextval('fault_hits');
    RAISE EXCEPTION 'injected fault' USING ERRCODE = chosen;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER fault_inject BEFORE INSERT ON history_events
  FOR EACH ROW EXECUTE FUNCTION fault_inject();
CREATE TRIGGER fault_inject_blocks BEFORE INSERT ON history_blocks
  FOR EACH ROW EXECUTE FUNCTION fault_inject();
"""


def _raw(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _inject(url: str, code: str) -> None:
    with psycopg.connect(_raw(url), autocommit=True) as conn:
        conn.execute(_FAULT.replace("{code}", code))


def _hits(url: str) -> int:
    with psycopg.connect(_raw(url), autocommit=True) as conn:
        row = conn.execute("SELECT last_value, is_called FROM fault_hits").fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


def _switch_off(url: str) -> None:
    with psycopg.connect(_raw(url), autocommit=True) as conn:
        conn.execute("UPDATE fault_switch SET active = false")


def _checkpoint(execution_id: str, detail: str) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[("k", "1")],
        events=[Event(2, 1, "PassStateEntered", T0, {"name": detail})],
    )


def _group_commit(store: Store, checkpoints: list[Checkpoint]) -> list[Any]:
    """Hand `checkpoints` over while a first commit is held open: they commit as one group.

    Each caller's outcome: its CommitResult, or the exception its commit raised.
    """
    release = threading.Event()
    groups: list[int] = []

    async def gated(fn: Any, group: list[Checkpoint], **kwargs: Any) -> Any:
        groups.append(len(group))
        if len(groups) == 1:  # the first commit waits until the others are queued
            await anyio.to_thread.run_sync(release.wait)
        return await anyio.to_thread.run_sync(lambda: fn(group, **kwargs))

    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=gated)
    outcomes: dict[int, Any] = {}

    async def commit(index: int, checkpoint: Checkpoint) -> None:
        try:
            outcomes[index] = await committer.commit(checkpoint)
        except Exception as error:
            outcomes[index] = error

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(committer.run)
            async with anyio.create_task_group() as commits:
                commits.start_soon(commit, 0, checkpoints[0])
                while not groups:
                    await anyio.sleep(0.01)
                for index, checkpoint in enumerate(checkpoints[1:], 1):
                    commits.start_soon(commit, index, checkpoint)
                    await anyio.wait_all_tasks_blocked()
                release.set()
            group.cancel_scope.cancel()

    anyio.run(main)
    assert groups[:2] == [1, len(checkpoints) - 1]  # the rest were handed over as one group
    return [outcomes[i] for i in range(len(checkpoints))]


def test_a_group_refused_for_one_executions_data_fails_only_that_one(postgres_url: str) -> None:
    store = Store(postgres_url)
    ids = claimed(store, 6)
    _inject(postgres_url, "22P05")  # untranslatable_character: a data exception
    checkpoints = [_checkpoint(i, "zqfault" if i == ids[3] else "fine") for i in ids]
    try:
        outcomes = _group_commit(store, checkpoints)
        histories = [[e.type for e in store.history(i)] for i in ids]
    finally:
        store.close()
    refused = outcomes[3]
    assert isinstance(refused, UnstorableData), refused
    assert "injected fault" in str(refused)
    assert [o for n, o in enumerate(outcomes) if n != 3] == [CommitResult.OK] * 5
    for n, history in enumerate(histories):
        expected = ["ExecutionStarted"] if n == 3 else ["ExecutionStarted", "PassStateEntered"]
        assert history == expected


def test_a_store_fault_in_a_commit_is_retried_and_the_execution_then_succeeds(
    postgres_url: str,
) -> None:
    calls: list[Any] = []
    registry = Registry()

    def handler(value: Any) -> Any:
        calls.append(value)
        return {"result": "zqfault"}

    registry.register("tripping", handler)
    tripping = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "tripping", "End": True}},
    }
    quick = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    with Engine(postgres_url, registry=registry) as engine:
        _inject(postgres_url, "25P02")  # in_failed_sql_transaction: the store's, not the data's
        engine.create_state_machine_sync("tripping", tripping)
        engine.create_state_machine_sync("quick", quick)
        started = engine.start_sync("tripping", {"n": 1})
        # Refused, retried after a backoff, refused again: still the store's fault.
        wait_until(lambda: _hits(postgres_url) >= 2)
        assert engine.describe_sync(started).status == "RUNNING"
        assert outage_of(engine.runtime.store).outages >= 1
        # The worker lives meanwhile: another execution runs to its end.
        beside = engine.wait_sync(engine.start_sync("quick", {"beside": True}), timeout=60)
        _switch_off(postgres_url)
        ended = engine.wait_sync(started, timeout=60)
        events = engine.history_sync(ended)
    assert beside.status == "SUCCEEDED"
    assert ended.status == "SUCCEEDED", ended.cause
    assert json.loads(ended.output or "") == {"result": "zqfault"}
    assert len(calls) >= 2  # the refused result was never recorded: the Task ran again
    types = [e.type for e in events]
    assert types.count("TaskSucceeded") == 1 and types[-1] == "ExecutionSucceeded"
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))


# Holds a history insert whose details hold `zqgate` until the test's session
# lets go of advisory lock 4242: that commit keeps the committer's turn.
_GATE = """
CREATE FUNCTION gate_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF to_jsonb(NEW)::text LIKE '%zqgate%' THEN
    PERFORM pg_advisory_xact_lock_shared(4242);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER gate_hold BEFORE INSERT ON history_events
  FOR EACH ROW EXECUTE FUNCTION gate_hold();
CREATE TRIGGER gate_hold_blocks BEFORE INSERT ON history_blocks
  FOR EACH ROW EXECUTE FUNCTION gate_hold();
"""


def _waiting_on_the_gate(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ).fetchone()
    return row is not None and row[0] > 0


@pytest.mark.parametrize(
    "mates",
    [
        pytest.param(3, id="a group of 4: the event loop's one call"),
        pytest.param(8, id="a group of 9: a store thread"),
    ],
)
def test_an_execution_whose_data_is_refused_fails_alone(postgres_url: str, mates: int) -> None:
    go = threading.Event()
    entered: list[Any] = []
    registry = Registry()

    def echo(value: Any) -> Any:
        if value == "gate":
            return {"v": "zqgate"}
        entered.append(value)
        go.wait()
        # The culprit's result holds the refused text (its input does not: its start is stored).
        return {"v": "zqfault"} if value == "bad" else value

    registry.register("echo", echo)
    echo_machine = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "echo", "End": True}},
    }
    with (
        Engine(postgres_url, registry=registry, concurrency=30) as engine,
        psycopg.connect(_raw(postgres_url), autocommit=True) as holder,
    ):
        _inject(postgres_url, "22P05")
        holder.execute(_GATE)
        holder.execute("SELECT pg_advisory_lock(4242)")
        engine.create_state_machine_sync("echo", echo_machine)
        culprit = engine.start_sync("echo", "bad")
        others = [engine.start_sync("echo", {"v": n}) for n in range(mates)]
        wait_until(lambda: len(entered) == mates + 1)  # every handler called, held
        # The gate's result commit holds the committer's turn (and a loop group
        # of 1); the held results, let go, queue behind it: one group.
        gate = engine.start_sync("echo", "gate")
        wait_until(lambda: _waiting_on_the_gate(holder))
        go.set()
        committer = engine.runtime.committer
        wait_until(lambda: committer.queued == mates + 1)
        holder.execute("SELECT pg_advisory_unlock(4242)")
        failed = engine.wait_sync(culprit, timeout=60)
        ended = [engine.wait_sync(m, timeout=60) for m in [*others, gate]]
        events = engine.history_sync(failed)
        outages = outage_of(engine.runtime.store).outages
    assert (failed.status, failed.error) == ("FAILED", "States.Runtime")
    assert "UnstorableData: the database refused a value: injected fault" in (failed.cause or "")
    assert "TaskSucceeded" not in [e.type for e in events]
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    assert [(r.status, json.loads(r.output or "")) for r in ended] == [
        *[("SUCCEEDED", {"v": n}) for n in range(mates)],
        ("SUCCEEDED", {"v": "zqgate"}),
    ]
    assert outages == 0


_HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


def test_a_sqlite_file_locked_past_the_busy_timeout_is_an_outage_not_a_failure(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process holds the file's write lock for longer than the busy
    # timeout while a Task's result is committed: the commit fails, the
    # worker backs off, and once the lock is gone the execution succeeds.
    monkeypatch.setenv("STEPWISE_SQLITE_BUSY_TIMEOUT", "0.1")
    entered, proceed = threading.Event(), threading.Event()
    calls: list[Any] = []
    registry = Registry()

    def gate(value: Any) -> Any:
        calls.append(value)
        if len(calls) == 1:
            entered.set()
            proceed.wait(60)
        return {"calls": len(calls)}

    registry.register("gate", gate)
    gated = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "gate", "End": True}}}
    with Engine(sqlite_url, registry=registry) as engine:
        engine.create_state_machine_sync("gated", gated)
        started = engine.start_sync("gated", {})
        assert entered.wait(60)
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, sqlite_url.removeprefix("sqlite:///")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            proceed.set()  # the Task's result is committed into the locked file
            wait_until(lambda: outage_of(engine.runtime.store).outages >= 1)
            assert engine.describe_sync(started).status == "RUNNING"
        finally:
            holder.communicate("\n", timeout=60)
        ended = engine.wait_sync(started, timeout=60)
        events = engine.history_sync(ended)
    assert ended.status == "SUCCEEDED", ended.cause
    assert len(calls) >= 2  # the result met the lock, was never recorded, and ran again
    types = [e.type for e in events]
    assert types.count("TaskSucceeded") == 1 and types[-1] == "ExecutionSucceeded"
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))


def test_a_statement_on_a_connection_lost_in_its_transaction_is_an_outage(
    postgres_url: str,
) -> None:
    """SQLAlchemy's PendingRollbackError after a lost connection is the store's, not poison.

    A connection lost inside its transaction is invalidated; the next
    statement on it raises PendingRollbackError, not a driver error. It must
    read as an outage (retried on a new connection, one line in the log),
    never as an execution's unexpected exception (a traceback and a strike).
    """
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            conn.begin()
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            with engine.connect() as admin:
                admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(sa_exc.OperationalError):
                conn.execute(sa.text("SELECT 1"))
            with pytest.raises(sa_exc.PendingRollbackError) as raised:
                conn.execute(sa.text("SELECT 1"))
            pending = raised.value
            assert fault_of(pending) == "store"
            assert not is_poison(pending)
            with pytest.raises(StoreUnavailable) as mapped, mapped_errors("postgresql://x"):
                raise pending
            assert is_transient(mapped.value)
    finally:
        engine.dispose()
