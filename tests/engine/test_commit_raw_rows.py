"""A group commit's fast path (SQLite's raw driver, PostgreSQL's pipeline) writes the careful rows.

The same executions get the same checkpoints on two fresh databases of one
kind, one committing through the fast path (the default) and one through the
careful path only; the journal, history, executions, work, token and alert
delivery rows must be identical column for column, and so must every answer.
The group mixes what a commit can carry without a task token: progress that
keeps the lease, a finish that closes a token and queues an alert, a release
due later and a release made due now by a callback that arrived meanwhile.
A lease not held or a collision makes the fast path hand over untouched,
and the careful path answers LEASE_LOST or CONFLICT per checkpoint.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import engine.store.work as work_module
from engine.store import Checkpoint, CommitResult, Event, Finish, Store, TokenRecord
from engine.store.codec import PayloadCodec
from engine.store.outbox import AlertRecord
from engine.store.sqlitecommit import HeldSqlite, raw_commit

T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
LATER = T0 + timedelta(seconds=7, microseconds=12)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'
TABLES = ("executions", "history_events", "history_blocks", "journal", "work_queue", "task_tokens")


def _event(event_id: int, type_: str, **details: Any) -> Event:
    return Event(event_id, event_id - 1, type_, T0 + timedelta(milliseconds=event_id), details)


def _prepared(url: str, *, fast: bool, codec: PayloadCodec | None = None) -> Store:
    """A store with executions a to d claimed by worker w; a and d hold an open token each."""
    store = Store(url, codec=codec)
    store.raw_commit_writes = fast
    machine = store.put_state_machine("m", DEFINITION)
    store.create_alert(
        AlertRecord(name="ends", machine=None, statuses=("SUCCEEDED",), target="x", created_at=T0)
    )
    for name in "abcd":
        store.create_execution(
            execution_id=f"e-{name}",
            name=name,
            machine=machine,
            input='{"n": 1}',
            start_date=T0,
            trace_id="0" * 32,
            first_event=_event(1, "ExecutionStarted", input='{"n": 1}'),
        )
    store.claim_due("w", limit=4, lease_seconds=60, now=T0)
    for name in "ad":
        token = TokenRecord(f"tok-{name}", f"e-{name}", "t/0", "A", created_at=T0)
        assert store.commit(
            [Checkpoint(f"e-{name}", tokens=[token], last_event_id=1)], worker_id="w", now=T0
        ) == [CommitResult.OK]
    # A callback answers d's token while w holds the lease: d's release is due now.
    store.complete_token("tok-d", journal_key="t/0", value='"done"', status="SUCCEEDED", now=T0)
    return store


def _group() -> list[Checkpoint]:
    return [
        Checkpoint(
            "e-a",
            journal=[("s/A", '{"v":1}'), ("s/B", '{"v":"\\u00e9"}')],
            events=[_event(2, "PassStateEntered", name="A"), _event(3, "ExecutionSucceeded")],
            finish=Finish("SUCCEEDED", LATER, output='{"out": 1}'),
            last_event_id=1,
        ),
        Checkpoint("e-b", journal=[("s/A", "1")], events=[_event(2, "TaskScheduled")]),
        Checkpoint(
            "e-c",
            events=[_event(2, "WaitStateEntered")],
            last_event_id=1,
            release=True,
            release_due_at=T0 + timedelta(hours=1),
        ),
        Checkpoint("e-d", events=[_event(2, "TaskSucceeded")], release=True),
    ]


def _rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of the tables a commit writes, as the database holds them."""
    with store._engine.connect() as conn:
        present = sa.inspect(conn)  # history_blocks: not on a database older than migration 18
        rows = {
            table: sorted(
                (tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM {table}")), key=repr
            )
            for table in TABLES
            if present.has_table(table)
        }
        rows["alert_deliveries"] = sorted(
            tuple(row)
            for row in conn.exec_driver_sql(
                "SELECT delivery_id, alert, execution_id, status, state, attempts, "
                "next_attempt_at, created_at FROM alert_deliveries"
            )
        )
    return rows


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
def test_fast_commit_writes_are_the_careful_paths_rows(
    urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, careful = _prepared(urls[0], fast=True), _prepared(urls[1], fast=False)
    try:
        answers = {"careful": careful.commit(_group(), worker_id="w", now=LATER)}
        with monkeypatch.context() as patched:

            def refuse(*args: object, **kwargs: object) -> object:
                raise AssertionError("the careful path ran for an ordinary group")

            patched.setattr(work_module, "write_checkpoints", refuse)
            answers["fast"] = fast.commit(_group(), worker_id="w", now=LATER)
        assert answers["fast"] == answers["careful"] == [CommitResult.OK] * 4
        assert _rows(fast) == _rows(careful)
        assert len(_rows(fast)["alert_deliveries"]) == 1
        assert fast.get_token("tok-a").status == "TIMED_OUT"  # closed by the finish
        assert fast.work_due_at("e-d") == (True, LATER)  # the callback made it due now
        assert fast.work_due_at("e-c") == (True, T0 + timedelta(hours=1))
        assert fast.get_execution("e-a").output == '{"out": 1}'
    finally:
        fast.close()
        careful.close()


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("alerts", ["none", "paused", "another machine's", "two"])
def test_fast_commit_queues_the_alerts_the_careful_path_queues(
    urls: tuple[str, str], alerts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's raw commit skips the outbox's INSERT when no unpaused alert exists: same rows."""
    fast, careful = _prepared(urls[0], fast=True), _prepared(urls[1], fast=False)
    try:
        for store in (fast, careful):
            if alerts == "none":
                store.delete_alert("ends")
            elif alerts == "paused":
                store.set_alert_paused("ends", True)
            elif alerts == "another machine's":
                store.delete_alert("ends")
                store.create_alert(
                    AlertRecord(
                        name="other",
                        machine="n",
                        statuses=("SUCCEEDED",),
                        target="x",
                        created_at=T0,
                    )
                )
            else:
                store.create_alert(
                    AlertRecord(
                        name="more", machine="m", statuses=("SUCCEEDED",), target="y", created_at=T0
                    )
                )
        assert careful.commit(_group(), worker_id="w", now=LATER) == [CommitResult.OK] * 4
        with monkeypatch.context() as patched:

            def refuse(*args: object, **kwargs: object) -> object:
                raise AssertionError("the careful path ran for an ordinary group")

            patched.setattr(work_module, "write_checkpoints", refuse)
            assert fast.commit(_group(), worker_id="w", now=LATER) == [CommitResult.OK] * 4
        assert _rows(fast) == _rows(careful)
        assert len(_rows(fast)["alert_deliveries"]) == (2 if alerts == "two" else 0)
    finally:
        fast.close()
        careful.close()


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
def test_a_group_of_many_rows_is_written_whole(
    urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More rows than one multi-row INSERT carries: all written, as the careful path writes them."""
    group = [
        Checkpoint(
            f"e-{name}",
            journal=[(f"s/{i}", f'{{"i":{i}}}') for i in range(n)],
            events=[_event(2 + i, "PassStateEntered", name=f"S{i}") for i in range(n)],
        )
        for name, n in (("b", 70), ("c", 33), ("a", 1))
    ]
    fast, careful = _prepared(urls[0], fast=True), _prepared(urls[1], fast=False)
    try:
        assert careful.commit(group, worker_id="w", now=LATER) == [CommitResult.OK] * 3
        with monkeypatch.context() as patched:

            def refuse(*args: object, **kwargs: object) -> object:
                raise AssertionError("the careful path ran for an ordinary group")

            patched.setattr(work_module, "write_checkpoints", refuse)
            assert fast.commit(group, worker_id="w", now=LATER) == [CommitResult.OK] * 3
        assert _rows(fast) == _rows(careful)
        assert len(fast.load("e-b").journal) == 70
        assert len(fast.history("e-c")) == 34  # ExecutionStarted and the 33 written here
    finally:
        fast.close()
        careful.close()


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
def test_fast_commit_seals_payloads_as_the_careful_path(urls: tuple[str, str]) -> None:
    codec = PayloadCodec([os.urandom(32)])
    fast = _prepared(urls[0], fast=True, codec=codec)
    careful = _prepared(urls[1], fast=False, codec=codec)
    try:
        for store in (fast, careful):
            assert store.commit(_group(), worker_id="w", now=LATER) == [CommitResult.OK] * 4
        stored = _rows(fast)
        assert all('"out": 1' not in repr(row) for row in stored["executions"])
        assert all("\\u00e9" not in repr(row) for row in stored["journal"])
        for store in (fast, careful):
            assert store.get_execution("e-a").output == '{"out": 1}'
            assert store.load("e-b").journal["s/A"] == "1"
        assert fast.history("e-a") == careful.history("e-a")
    finally:
        fast.close()
        careful.close()


def test_sqlite_raw_commit_of_ends_only_checks_each_lease_as_it_deletes_the_work(
    tmp_path: Path,
) -> None:
    """A group of ends checks each lease in its work row's DELETE: a lost one writes nothing."""
    store = _prepared(f"sqlite:///{tmp_path / 'fast.db'}", fast=True)
    engine = HeldSqlite(store._engine)
    codec = PayloadCodec()
    try:
        expired = T0 + timedelta(seconds=61)
        store.renew("w", ["e-c"], lease_seconds=600, now=T0 + timedelta(seconds=30))
        # b's lease is taken over by another worker; a's expired (nobody took it).
        assert store.claim_execution("e-b", "other", lease_seconds=60, now=expired)
        end = Finish("SUCCEEDED", expired, output="{}")
        c_end = Checkpoint(
            "e-c", events=[_event(2, "ExecutionSucceeded")], finish=end, last_event_id=1
        )
        b_end = Checkpoint("e-b", events=[_event(2, "ExecutionSucceeded")], finish=end)
        a_end = Checkpoint("e-a", events=[_event(2, "ExecutionSucceeded")], finish=end)
        before = _rows(store)
        assert raw_commit(engine, [c_end, b_end], "w", expired, codec) is None
        assert raw_commit(engine, [a_end], "w", expired, codec) is None
        assert _rows(store) == before  # nothing of either group was written
        assert store.commit([c_end, b_end], worker_id="w", now=expired) == [
            CommitResult.OK,
            CommitResult.LEASE_LOST,
        ]
        assert store.commit([a_end], worker_id="w", now=expired) == [CommitResult.LEASE_LOST]
        statuses = {eid: store.get_execution(eid).status for eid in ("e-a", "e-b", "e-c")}
        assert statuses == {"e-a": "RUNNING", "e-b": "RUNNING", "e-c": "SUCCEEDED"}
        assert [store.work_due_at(eid)[0] for eid in ("e-a", "e-b", "e-c")] == [True, True, False]
        # The worker holding b's lease ends it on the raw path.
        assert raw_commit(engine, [b_end], "other", expired, codec) == ([CommitResult.OK], False)
        assert store.get_execution("e-b").status == "SUCCEEDED"
    finally:
        store.close()


def test_sqlite_raw_commit_hands_lost_leases_and_collisions_to_the_careful_path(
    tmp_path: Path,
) -> None:
    store = _prepared(f"sqlite:///{tmp_path / 'fast.db'}", fast=True)
    engine = HeldSqlite(store._engine)
    codec = PayloadCodec()
    try:
        # b's lease is taken over by another worker after it expired.
        expired = T0 + timedelta(seconds=61)
        store.renew("w", ["e-a", "e-c", "e-d"], lease_seconds=600, now=T0 + timedelta(seconds=30))
        assert store.claim_execution("e-b", "other", lease_seconds=60, now=expired)
        lost = [Checkpoint("e-a", journal=[("k", "1")]), Checkpoint("e-b", journal=[("k", "1")])]
        assert raw_commit(engine, lost, "w", expired, codec) is None
        assert store.load("e-a").journal.get("k") is None  # nothing of the group was written
        assert store.commit(lost, worker_id="w", now=expired) == [
            CommitResult.OK,
            CommitResult.LEASE_LOST,
        ]
        # c's key is recorded already: the group collides and nothing of it stays.
        store.commit([Checkpoint("e-c", journal=[("dup", "1")])], worker_id="w", now=expired)
        colliding = [
            Checkpoint("e-a", journal=[("k2", "1")]),
            Checkpoint("e-c", journal=[("dup", "2")]),
        ]
        assert raw_commit(engine, colliding, "w", expired, codec) is None
        assert "k2" not in store.load("e-a").journal
        assert store.commit(colliding, worker_id="w", now=expired) == [
            CommitResult.OK,
            CommitResult.CONFLICT,
        ]
        assert store.load("e-c").journal["dup"] == "1"
        # A release made due now (d's callback) is reported as a wake-up owed.
        wake = raw_commit(engine, [Checkpoint("e-d", release=True)], "w", expired, codec)
        assert wake == ([CommitResult.OK], True)
        # Tokens always take the careful path.
        token = TokenRecord("tok-x", "e-a", "t/1", "A", created_at=T0)
        assert raw_commit(engine, [Checkpoint("e-a", tokens=[token])], "w", expired, codec) is None
    finally:
        store.close()
