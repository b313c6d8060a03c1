"""PostgreSQL's group commit as one call of the commit function: same rows, same refusals.

A group commits through migration 19's `stepwise_commit_v3` in one
statement (history blocks), 15's `stepwise_commit_v2` on a database at 15
to 18, 14's `stepwise_commit_v1` at 14 (history rows). Each
must write exactly the careful path's rows (column for column, on two fresh
databases, finishes with their alert deliveries and closed tokens
included), and when a lease is not held or a row collides it must write
nothing and leave the verdict — LEASE_LOST or
CONFLICT — to the careful path. A database at migration 13 upgrades
when a store opens it and then commits through the function; one opened
without migrating still commits (through the pipeline). A database at 14
opened without migrating commits through v1; opened with migrating, it
upgrades and commits through v3. A start batch is one
statement too (`pgstart.py`): when a name was taken meanwhile it writes
nothing, and each start is then decided alone.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

import engine.store.fastcommit as fastcommit
import engine.store.pgstart as pgstart
import engine.store.schema as schema
import engine.store.work as work_module
from engine.store import Checkpoint, CommitResult, Event, Finish, Store
from engine.store.starts import Resolved, StartRequest, StartStore
from tests.engine.test_commit_raw_rows import LATER, T0, _event, _prepared, _rows
from tests.engine.test_commit_raw_rows import _group as _finishing_group


def _refuse(what: str) -> Any:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"{what} ran for a group the one call commits")

    return refuse


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every answer of the one call (None: it handed over to the careful path)."""
    answers: list[object] = []
    real = fastcommit._one_call

    def spying(*args: Any, **kwargs: Any) -> bool | None:
        answer = real(*args, **kwargs)
        answers.append(answer)
        return answer

    monkeypatch.setattr(fastcommit, "_one_call", spying)
    return answers


def _group() -> list[Checkpoint]:
    """Progress that keeps the lease, a release due later, one made due now by a callback."""
    return [
        Checkpoint(
            "e-a",
            journal=[("s/A", '{"v":1}'), ("s/B", '{"v":"\\u00e9","q":"\\"x\\""}')],
            events=[_event(2, "PassStateEntered", name="A"), _event(3, "PassStateExited")],
            last_event_id=1,
        ),
        Checkpoint("e-b", journal=[("s/A", "1")], events=[_event(2, "TaskScheduled")]),
        Checkpoint(
            "e-c",
            events=[_event(2, "WaitStateEntered")],
            last_event_id=1,
            release=True,
            release_due_at=T0 + timedelta(hours=1, microseconds=3),
        ),
        Checkpoint("e-d", events=[_event(2, "TaskSucceeded")], release=True),
    ]


def _committed_both_ways(
    urls: tuple[str, str], group: Any, monkeypatch: pytest.MonkeyPatch, version: int = 2
) -> tuple[Store, Store]:
    """The same group committed by the one call and by the careful path, on two databases.

    The one call is the commit function of `version` (all are defined on a
    database at 19); below v3 both stores write history rows, at v3 blocks.
    Asserts the one call alone wrote it (neither the careful path nor the
    pipeline ran), that both answered OK for every checkpoint
    and that every table holds the same rows; returns the two stores for
    further checks.
    """
    fast, careful = _prepared(urls[0], fast=True), _prepared(urls[1], fast=False)
    fast._backend._held.function_version = version  # type: ignore[attr-defined]
    careful._backend._held.function_version = version  # type: ignore[attr-defined]
    try:
        answers = {"careful": careful.commit(group(), worker_id="w", now=LATER)}
        with monkeypatch.context() as patched:
            patched.setattr(work_module, "write_checkpoints", _refuse("the careful path"))
            patched.setattr(fastcommit, "_queue_writes", _refuse("the pipeline"))
            calls = _spy(patched)
            answers["fast"] = fast.commit(group(), worker_id="w", now=LATER)
        assert calls == [True]  # one call
        assert answers["fast"] == answers["careful"] == [CommitResult.OK] * 4
        assert _rows(fast) == _rows(careful)
    except BaseException:
        fast.close()
        careful.close()
        raise
    return fast, careful


@pytest.mark.parametrize("version", [3, 2, 1])
@pytest.mark.parametrize("urls", ["postgres"], indirect=True)
def test_the_one_call_writes_the_careful_paths_rows(
    urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    fast, careful = _committed_both_ways(urls, _group, monkeypatch, version)
    try:
        assert fast.work_due_at("e-d") == (True, LATER)  # the callback made it due now
        assert fast.work_due_at("e-c") == (True, T0 + timedelta(hours=1, microseconds=3))
        assert fast.load("e-a").journal["s/B"] == '{"v":"\\u00e9","q":"\\"x\\""}'
        assert fast.history("e-a") == careful.history("e-a")
    finally:
        fast.close()
        careful.close()


@pytest.mark.parametrize("version", [3, 2, 1])
@pytest.mark.parametrize("urls", ["postgres"], indirect=True)
def test_a_finish_in_the_one_call_writes_the_careful_paths_rows(
    urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """The status, the outbox's delivery, the closed token and the work row gone, as carefully."""
    fast, careful = _committed_both_ways(urls, _finishing_group, monkeypatch, version)
    try:
        assert len(_rows(fast)["alert_deliveries"]) == 1
        assert fast.get_token("tok-a").status == "TIMED_OUT"  # closed by the finish
        assert fast.get_token("tok-d").status == careful.get_token("tok-d").status
        assert fast.work_due_at("e-a") == (False, None)  # finished: no more work
        assert fast.get_execution("e-a").output == '{"out": 1}'
    finally:
        fast.close()
        careful.close()


def test_a_lost_lease_rolls_the_one_call_back_and_the_careful_path_decides(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _prepared(postgres_url, fast=True)
    try:
        # b's lease is taken over by another worker after it expired.
        expired = T0 + timedelta(seconds=61)
        store.renew("w", ["e-a", "e-c", "e-d"], lease_seconds=600, now=T0 + timedelta(seconds=30))
        assert store.claim_execution("e-b", "other", lease_seconds=60, now=expired)
        monkeypatch.setattr(fastcommit, "_queue_writes", _refuse("the pipeline"))
        calls = _spy(monkeypatch)
        group = [
            Checkpoint("e-a", journal=[("k", "1")], events=[_event(2, "TaskScheduled")]),
            Checkpoint("e-b", journal=[("k", "1")], events=[_event(2, "TaskScheduled")]),
        ]
        assert store.commit(group, worker_id="w", now=expired) == [
            CommitResult.OK,
            CommitResult.LEASE_LOST,
        ]
        assert calls == [None]  # the one call handed over; the careful path decided
        assert store.load("e-a").journal == {"k": "1"}  # written once, by the careful path
        assert [e.event_id for e in store.history("e-a")] == [1, 2]
        assert store.load("e-b").journal == {}
        assert [e.event_id for e in store.history("e-b")] == [1]
        with store._engine.connect() as conn:
            owner = conn.execute(
                sa.text("SELECT lease_owner FROM work_queue WHERE execution_id = 'e-b'")
            ).scalar()
        assert owner == "other"  # the other worker's lease is untouched
    finally:
        store.close()


def test_a_collision_rolls_the_one_call_back_and_the_careful_path_decides(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _prepared(postgres_url, fast=True)
    try:
        store.commit([Checkpoint("e-c", journal=[("dup", "1")])], worker_id="w", now=T0)
        monkeypatch.setattr(fastcommit, "_queue_writes", _refuse("the pipeline"))
        calls = _spy(monkeypatch)
        group = [
            Checkpoint("e-a", journal=[("k", "1")], events=[_event(2, "TaskScheduled")]),
            Checkpoint("e-c", journal=[("dup", "2")], release=True),
        ]
        assert store.commit(group, worker_id="w", now=T0) == [
            CommitResult.OK,
            CommitResult.CONFLICT,
        ]
        assert calls == [None]
        assert store.load("e-a").journal == {"k": "1"}
        assert [e.event_id for e in store.history("e-a")] == [1, 2]
        assert store.load("e-c").journal == {"dup": "1"}
    finally:
        store.close()


def _at_migration(url: str, monkeypatch: pytest.MonkeyPatch, version: int) -> None:
    """Build the schema as Stepwise's migration `version` left it."""
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:version])
        patched.setattr(schema, "SCHEMA_VERSION", version)
        Store(url).close()


def _at_migration_13(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _at_migration(url, monkeypatch, 13)


def _has_function(store: Store, name: str = "stepwise_commit_v1") -> bool:
    with store._engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT count(*) FROM pg_proc WHERE proname = :name"), {"name": name}
        ).scalar()
    return bool(found)


def test_a_migration_13_database_upgrades_and_commits_in_one_call(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _at_migration_13(postgres_url, monkeypatch)
    unmigrated = Store(postgres_url, auto_migrate=False)
    try:
        assert unmigrated.schema_version() == 13
        assert not _has_function(unmigrated)
    finally:
        unmigrated.close()
    store = _prepared(postgres_url, fast=True)  # opening it migrates
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION == 20
        assert _has_function(store, "stepwise_commit_v1")
        assert _has_function(store, "stepwise_commit_v2")
        assert _has_function(store, "stepwise_commit_v3")
        calls = _spy(monkeypatch)
        assert store.commit(_group(), worker_id="w", now=LATER) == [CommitResult.OK] * 4
        assert calls == [True]
        assert store._backend._held.function_version == 3  # type: ignore[attr-defined]
        assert store.load("e-b").journal == {"s/A": "1"}
    finally:
        store.close()


def test_a_migration_14_database_commits_through_v1_then_upgrades_to_v3(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened without migrating, a database at 14 commits through v1, asking for v2 once."""
    _at_migration(postgres_url, monkeypatch, 14)
    with monkeypatch.context() as patched:
        patched.setattr(work_module, "write_checkpoints", _refuse("the careful path"))
        patched.setattr(fastcommit, "_queue_writes", _refuse("the pipeline"))
        at_14 = Store(postgres_url, auto_migrate=False)
        try:
            assert at_14.schema_version() == 14
            assert not _has_function(at_14, "stepwise_commit_v2")
            at_14.raw_commit_writes = True
            machine = at_14.put_state_machine(
                "m", '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'
            )
            for name in "ab":
                at_14.create_execution(
                    execution_id=f"e-{name}",
                    name=name,
                    machine=machine,
                    input="{}",
                    start_date=T0,
                    trace_id="0" * 32,
                    first_event=_event(1, "ExecutionStarted", input="{}"),
                )
            at_14.claim_due("w", limit=2, lease_seconds=600, now=T0)
            calls = _spy(patched)
            first = [Checkpoint("e-a", journal=[("k", "1")], events=[_event(2, "TaskScheduled")])]
            assert at_14.commit(first, worker_id="w", now=T0) == [CommitResult.OK]
            held = at_14._backend._held  # type: ignore[attr-defined]
            assert (held.function_version, held.without_function) == (1, False)
            # v2 was asked for once (it wrote nothing), then v1 committed
            # (False: no work fell due; None would have been a hand-over).
            assert calls == [False]
            second = [Checkpoint("e-a", journal=[("k2", "2")], events=[_event(3, "TaskSucceeded")])]
            assert at_14.commit(second, worker_id="w", now=T0) == [CommitResult.OK]
            assert calls == [False, False]  # straight to v1
            assert at_14.load("e-a").journal == {"k": "1", "k2": "2"}
            assert [e.event_id for e in at_14.history("e-a")] == [1, 2, 3]
        finally:
            at_14.close()
    store = Store(postgres_url)  # opening it migrates
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION
        assert _has_function(store, "stepwise_commit_v2")
        store.raw_commit_writes = True
        monkeypatch.setattr(work_module, "write_checkpoints", _refuse("the careful path"))
        used: list[int] = []
        real = fastcommit._one_call

        def recording(held: Any, *args: Any, **kwargs: Any) -> bool | None:
            used.append(args[0])  # the version called
            return real(held, *args, **kwargs)

        monkeypatch.setattr(fastcommit, "_one_call", recording)
        group = [
            Checkpoint("e-b", journal=[("k", "1")], events=[_event(2, "TaskScheduled")]),
            Checkpoint(
                "e-a",
                events=[_event(4, "ExecutionSucceeded")],
                finish=Finish("SUCCEEDED", LATER, output='{"out": 1}'),
            ),
        ]
        assert store.commit(group, worker_id="w", now=T0) == [CommitResult.OK] * 2
        assert used == [3]  # v3, at the first call
        assert store.load("e-b").journal == {"k": "1"}
        assert store.get_execution("e-a").status == "SUCCEEDED"
        assert store.work_due_at("e-a") == (False, None)
    finally:
        store.close()


def test_a_database_not_yet_migrated_still_commits(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _at_migration_13(postgres_url, monkeypatch)
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:13])
        patched.setattr(schema, "SCHEMA_VERSION", 13)
        store = _prepared(postgres_url, fast=True)
    try:
        store_version = store.schema_version()
        assert store_version == 13
        monkeypatch.setattr(work_module, "write_checkpoints", _refuse("the careful path"))
        group = _finishing_group()
        assert store.commit(group, worker_id="w", now=LATER) == [CommitResult.OK] * 4
        assert store.load("e-b").journal == {"s/A": "1"}
        assert store.work_due_at("e-d") == (True, LATER)
        assert store.get_execution("e-a").status == "SUCCEEDED"
        assert store.get_token("tok-a").status == "TIMED_OUT"
        assert len(_rows(store)["alert_deliveries"]) == 1
        # The missing function is asked for once, not at every commit.
        attempts: list[int] = []
        real = fastcommit._one_call

        def counting(*args: Any, **kwargs: Any) -> bool | None:
            attempts.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(fastcommit, "_one_call", counting)
        later = [Checkpoint("e-b", journal=[("s/Z", "2")], events=[_event(9, "TaskScheduled")])]
        assert store.commit(later, worker_id="w", now=LATER) == [CommitResult.OK]
        assert store.load("e-b").journal == {"s/A": "1", "s/Z": "2"}
        assert attempts == []
    finally:
        store.close()


def test_a_start_batch_that_collides_writes_nothing_and_each_start_is_decided_alone(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process took a name between the check and the insert: the one statement aborts."""
    store = _start_store(postgres_url)
    try:
        (first,) = store.start_executions([_start_request("x")])
        assert first.created
        real_taken = StartStore._taken
        checks: list[int] = []

        def blind_once(self: StartStore, conn: Any, wanted: Any) -> Any:
            checks.append(len(wanted))
            return {} if len(checks) == 1 else real_taken(self, conn, wanted)

        monkeypatch.setattr(StartStore, "_taken", blind_once)
        written: list[bool] = []
        real_starts = pgstart.pipelined_starts

        def spying(*args: Any, **kwargs: Any) -> bool:
            written.append(real_starts(*args, **kwargs))
            return written[-1]

        monkeypatch.setattr(pgstart, "pipelined_starts", spying)
        again, other = store.start_executions([_start_request("x"), _start_request("y")])
        assert written[0] is False  # the batch's statement collided and wrote nothing
        assert (again.created, again.record.execution_id) == (False, first.record.execution_id)
        assert other.created
        assert [e.type for e in store.history(other.record.execution_id)] == ["ExecutionStarted"]
        assert len(store.history(first.record.execution_id)) == 1
        with store._engine.connect() as conn:
            work = conn.execute(sa.text("SELECT count(*) FROM work_queue")).scalar()
        assert work == 2
    finally:
        store.close()


PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def _start_store(url: str) -> Store:
    store = Store(url)
    store.put_state_machine("Machine", json.dumps(PASS))
    return store


def _start_request(name: str) -> StartRequest:
    def prepare(resolved: Resolved) -> tuple[str, Event]:
        details = {"input": "{}", "version": resolved.machine.version}
        return f"arn:exec:Machine:{name}", Event(1, 0, "ExecutionStarted", T0, details)

    return StartRequest(
        machine="Machine",
        qualifier=None,
        name=name,
        input="{}",
        start_date=T0,
        trace_id="ab" * 16,
        queue="q1",
        draw=lambda: 0.5,
        prepare=prepare,
    )


def test_a_connection_lent_while_the_held_one_is_busy_goes_back_as_it_came(
    postgres_url: str,
) -> None:
    """The one call on a pooled connection leaves it out of autocommit for the pool's next user."""
    store = _prepared(postgres_url, fast=True)
    try:
        held = store._backend._held  # type: ignore[attr-defined]
        assert held._take()  # another thread's commit holds the kept connection
        try:
            group = [Checkpoint("e-b", journal=[("k", "1")], events=[_event(2, "TaskScheduled")])]
            assert store.commit(group, worker_id="w", now=T0) == [CommitResult.OK]
        finally:
            held._lock.release()
        pooled = [store._engine.raw_connection() for _ in range(4)]  # every one the pool has
        try:
            assert [p.driver_connection.autocommit for p in pooled] == [False] * 4  # type: ignore[union-attr]
        finally:
            for p in pooled:
                p.close()
        assert store.load("e-b").journal == {"k": "1"}
        # The kept connection, back in use, commits as before.
        more = [Checkpoint("e-b", journal=[("k2", "1")], events=[_event(3, "TaskSucceeded")])]
        assert store.commit(more, worker_id="w", now=T0) == [CommitResult.OK]
        assert [e.event_id for e in store.history("e-b")] == [1, 2, 3]
    finally:
        store.close()
