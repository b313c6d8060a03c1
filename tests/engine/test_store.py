"""The durable store on both backends: migrations, versions, executions, leases, group commit,
callbacks, stops and wake-ups. Every test runs on a fresh SQLite file and a fresh PostgreSQL
database unless it is about one backend only."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.store import (
    SCHEMA_VERSION,
    AmbiguousExecution,
    Checkpoint,
    CommitResult,
    Event,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    ExecutionNotRunning,
    ExecutionRecord,
    Finish,
    InvalidToken,
    MachineVersion,
    StateMachineDoesNotExist,
    Store,
    StoreUnavailable,
    TaskTimedOut,
    TokenRecord,
    default_database_url,
)
from engine.store.schema import UTCDateTime

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def claim(
    store: Store, worker_id: str, *, limit: int, lease_seconds: float, now: datetime
) -> list[str]:
    """The ids a worker's claim leases (what `claim_due` returns, without the due times)."""
    claimed = store.claim_due(worker_id, limit=limit, lease_seconds=lease_seconds, now=now)
    return [execution_id for execution_id, _due in claimed]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def started_event(when: datetime = T0, input: str = "{}") -> Event:
    return Event(1, 0, "ExecutionStarted", when, {"input": input, "roleArn": "local"})


def start(
    store: Store,
    name: str,
    *,
    input: str = "{}",
    machine: MachineVersion | None = None,
    when: datetime = T0,
    execution_id: str | None = None,
) -> ExecutionRecord:
    machine = machine or store.put_state_machine("Machine", DEFINITION)
    record, created = store.create_execution(
        execution_id=execution_id or f"exec-{name}",
        name=name,
        machine=machine,
        input=input,
        start_date=when,
        trace_id="0" * 32,
        first_event=started_event(when, input),
    )
    assert created
    return record


def journal_rows(store: Store, execution_id: str) -> dict[str, str]:
    return store.load(execution_id).journal


# -- migrations --------------------------------------------------------------


def test_fresh_database_is_migrated_and_migrate_is_idempotent(db_url: str) -> None:
    store = Store(db_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.migrate() == SCHEMA_VERSION
        assert store.migrate() == SCHEMA_VERSION
    finally:
        store.close()
    engine = sa.create_engine(store.url)
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_migrations")).scalars().all()
    engine.dispose()
    assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))


def test_concurrent_migrations_apply_each_step_once(db_url: str) -> None:
    barrier = threading.Barrier(6)

    def migrate() -> int:
        store = Store(db_url, auto_migrate=False)
        try:
            barrier.wait(timeout=60)  # a thread that failed early breaks it: no hang
            return store.migrate()
        finally:
            store.close()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: migrate(), range(6)))
    assert results == [SCHEMA_VERSION] * 6
    store = Store(db_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION
        assert start(store, "after-migrate").status == "RUNNING"
    finally:
        store.close()
    engine = sa.create_engine(store.url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM schema_migrations")).scalar()
    engine.dispose()
    assert count == SCHEMA_VERSION


def test_database_newer_than_the_code_is_refused(db_url: str) -> None:
    store = Store(db_url)
    store.close()
    engine = sa.create_engine(store.url)
    with engine.begin() as conn:
        # Bound as the store binds it: a raw datetime would go through sqlite3's
        # default adapter, deprecated since Python 3.12.
        conn.execute(
            sa.text(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (999, :t)"
            ).bindparams(sa.bindparam("t", type_=UTCDateTime)),
            {"t": T0},
        )
    engine.dispose()
    with pytest.raises(StoreUnavailable, match="version 999, newer than this Stepwise"):
        Store(db_url)


def test_unreachable_databases_give_a_message_not_a_traceback(tmp_path: object) -> None:
    with pytest.raises(StoreUnavailable) as info:
        Store("postgresql://someone:secret@127.0.0.1:1/nowhere")
    message = str(info.value)
    assert "127.0.0.1:1/nowhere" in message
    assert "secret" not in message
    assert "Traceback" not in message and "\n" not in message
    with pytest.raises(StoreUnavailable, match="unable to open database file"):
        Store("sqlite:////nonexistent-dir/for/sure/stepwise.db")
    with pytest.raises(StoreUnavailable, match="unsupported database 'mysql'"):
        Store("mysql://localhost/x")
    with pytest.raises(StoreUnavailable, match="not a database URL"):
        Store("not a url")


def test_default_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPWISE_DATABASE_URL", raising=False)
    assert default_database_url() == "sqlite:///./stepwise.db"
    monkeypatch.setenv("STEPWISE_DATABASE_URL", "postgresql://h/db")
    assert default_database_url() == "postgresql://h/db"


def test_plain_postgresql_url_uses_psycopg(postgres_url: str) -> None:
    store = Store(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert store.dialect == "postgresql"
        assert store.url.startswith("postgresql+psycopg://")
    finally:
        store.close()


# -- state machines ------------------------------------------------------------


def test_machine_versions_follow_the_content_hash(store: Store) -> None:
    v1 = store.put_state_machine("M", DEFINITION)
    assert (v1.name, v1.version, v1.machine_type) == ("M", 1, "STANDARD")
    assert len(v1.content_hash) == 64
    assert v1.created_at.tzinfo is not None
    # Same content, other whitespace and key order: still version 1.
    same = store.put_state_machine("M", '{"States":{"A":{"Type":"Succeed"}},\n  "StartAt":"A"}')
    assert same.version == 1 and same.definition == DEFINITION
    v2 = store.put_state_machine("M", DEFINITION.replace("Succeed", 'Pass, "End": true'))
    assert v2.version == 2 and v2.content_hash != v1.content_hash
    v3 = store.put_state_machine("M", v2.definition, "EXPRESS")
    assert (v3.version, v3.machine_type) == (3, "EXPRESS")
    assert store.get_state_machine("M") == v3
    assert store.get_state_machine("M", 1).definition == DEFINITION
    assert store.get_state_machine("M", 1).machine_type == "STANDARD"
    store.put_state_machine("Another", DEFINITION)
    assert [(m.name, m.version) for m in store.list_state_machines()] == [("Another", 1), ("M", 3)]
    with pytest.raises(StateMachineDoesNotExist, match="State Machine Does Not Exist: 'Nope'"):
        store.get_state_machine("Nope")
    with pytest.raises(StateMachineDoesNotExist, match="'M:9'"):
        store.get_state_machine("M", 9)
    with pytest.raises(ValueError):
        store.put_state_machine("M", DEFINITION, "BATCH")


def test_concurrent_puts_of_one_machine_mint_one_version(db_url: str) -> None:
    Store(db_url).close()
    barrier = threading.Barrier(5)

    def put(i: int) -> int:
        store = Store(db_url)
        try:
            barrier.wait()
            return store.put_state_machine("Race", DEFINITION).version
        finally:
            store.close()

    with ThreadPoolExecutor(5) as pool:
        assert list(pool.map(put, range(5))) == [1] * 5


# -- executions -------------------------------------------------------------


def test_create_execution_records_start_event_and_work(store: Store) -> None:
    record = start(store, "first", input='{"a": 1}')
    assert record.status == "RUNNING" and record.last_event_id == 1
    assert store.get_execution("exec-first") == record
    assert store.history("exec-first") == [started_event(T0, '{"a": 1}')]
    assert claim(store, "w", limit=10, lease_seconds=30, now=T0) == ["exec-first"]


def test_start_is_idempotent_for_a_running_execution_with_equal_input(store: Store) -> None:
    machine = store.put_state_machine("Machine", DEFINITION)
    original = start(store, "job", input='{"a": 1, "b": [1, 2]}', machine=machine)
    again, created = store.create_execution(
        execution_id="exec-other-id",
        name="job",
        machine=machine,
        input='{"b": [1, 2], "a": 1}',
        start_date=at(5),
        trace_id="1" * 32,
        first_event=started_event(at(5)),
    )
    assert created is False and again == original
    with pytest.raises(ExecutionDoesNotExist):
        store.get_execution("exec-other-id")
    with pytest.raises(ExecutionAlreadyExists, match="Execution Already Exists: 'exec-job'"):
        store.create_execution(
            execution_id="exec-third",
            name="job",
            machine=machine,
            input='{"a": 2}',
            start_date=at(5),
            trace_id="1" * 32,
            first_event=started_event(at(5)),
        )
    # The same name under another machine is another execution.
    other = store.put_state_machine("OtherMachine", DEFINITION)
    assert start(store, "job", machine=other, execution_id="exec-job-2").machine == "OtherMachine"


def test_reusing_the_name_of_a_closed_execution_is_refused(store: Store) -> None:
    start(store, "done")
    assert claim(store, "w", limit=1, lease_seconds=30, now=T0) == ["exec-done"]
    finish = Finish(status="SUCCEEDED", stop_date=at(1), output="{}")
    assert store.commit(
        [Checkpoint("exec-done", finish=finish, last_event_id=1)], worker_id="w", now=at(1)
    ) == [CommitResult.OK]
    machine = store.get_state_machine("Machine")
    with pytest.raises(ExecutionAlreadyExists):
        store.create_execution(
            execution_id="exec-done-again",
            name="done",
            machine=machine,
            input="{}",
            start_date=at(2),
            trace_id="2" * 32,
            first_event=started_event(at(2)),
        )


def test_get_execution_by_id_or_unambiguous_name(store: Store) -> None:
    start(store, "solo")
    assert store.get_execution("solo").execution_id == "exec-solo"
    other = store.put_state_machine("Other", DEFINITION)
    start(store, "twin")
    start(store, "twin", machine=other, execution_id="exec-twin-2")
    with pytest.raises(AmbiguousExecution, match="'twin' is used by 2 executions"):
        store.get_execution("twin")
    assert store.get_execution("exec-twin-2").machine == "Other"
    with pytest.raises(ExecutionDoesNotExist, match="Execution Does Not Exist: 'ghost'"):
        store.get_execution("ghost")
    with pytest.raises(ExecutionDoesNotExist):
        store.history("ghost")
    with pytest.raises(ExecutionDoesNotExist):
        store.load("ghost")


def test_list_executions_newest_first_with_filters(store: Store) -> None:
    other = store.put_state_machine("Other", DEFINITION)
    for i in range(4):
        start(store, f"e{i}", when=at(i))
    start(store, "o", machine=other, when=at(10))
    claim(store, "w", limit=1, lease_seconds=30, now=at(20))  # e0, the oldest due
    store.commit(
        [Checkpoint("exec-e0", finish=Finish("FAILED", at(21), error="E", cause="C"))],
        worker_id="w",
        now=at(21),
    )
    assert [r.name for r in store.list_executions()] == ["o", "e3", "e2", "e1", "e0"]
    assert [r.name for r in store.list_executions(machine="Machine", limit=2)] == ["e3", "e2"]
    failed = store.list_executions(status="FAILED")
    assert [(r.name, r.error, r.cause, r.stop_date) for r in failed] == [("e0", "E", "C", at(21))]
    assert [r.name for r in store.list_executions(machine="Other", status="RUNNING")] == ["o"]
    with pytest.raises(StateMachineDoesNotExist):
        store.list_executions(machine="Missing")


def test_history_is_ordered_by_event_id_and_details_round_trip(store: Store) -> None:
    start(store, "h")
    claim(store, "w", limit=1, lease_seconds=30, now=T0)
    details = {"name": "Ünïcode ✓", "output": '{"x": [1, 2.5, null]}', "nested": {"a": [True]}}
    events = [Event(i, i - 1, f"Type{i}", at(i), details) for i in (4, 2, 5, 3)]
    assert store.commit(
        [Checkpoint("exec-h", events=events, last_event_id=5)], worker_id="w", now=at(1)
    ) == [CommitResult.OK]
    history = store.history("exec-h")
    assert [e.event_id for e in history] == [1, 2, 3, 4, 5]
    assert [e.previous_event_id for e in history] == [0, 1, 2, 3, 4]
    assert history[2] == Event(3, 2, "Type3", at(3), details)
    assert store.get_execution("exec-h").last_event_id == 5


# -- claims and leases --------------------------------------------------------


def test_claim_takes_due_unleased_work_oldest_first(store: Store) -> None:
    for i in (3, 1, 2):
        start(store, f"e{i}", when=at(i))
    start(store, "future", when=at(100))
    assert claim(store, "a", limit=2, lease_seconds=30, now=at(50)) == ["exec-e1", "exec-e2"]
    assert claim(store, "b", limit=10, lease_seconds=30, now=at(50)) == ["exec-e3"]
    assert claim(store, "b", limit=10, lease_seconds=30, now=at(50)) == []
    assert claim(store, "b", limit=0, lease_seconds=30, now=at(200)) == []


def test_an_expired_lease_lets_another_worker_claim(store: Store) -> None:
    start(store, "x")
    assert claim(store, "a", limit=1, lease_seconds=10, now=T0) == ["exec-x"]
    assert claim(store, "b", limit=1, lease_seconds=10, now=at(9.9)) == []
    assert store.renew("a", ["exec-x"], lease_seconds=10, now=at(5)) == {"exec-x"}
    assert claim(store, "b", limit=1, lease_seconds=10, now=at(14)) == []
    assert claim(store, "b", limit=1, lease_seconds=10, now=at(15)) == ["exec-x"]
    assert store.renew("a", ["exec-x"], lease_seconds=10, now=at(16)) == set()
    assert store.renew("b", ["exec-x", "exec-unknown"], lease_seconds=10, now=at(16)) == {"exec-x"}


def test_claim_execution_ignores_due_time_but_respects_leases(store: Store) -> None:
    start(store, "x", when=at(100))
    assert store.claim_execution("exec-x", "a", lease_seconds=10, now=T0) is True
    assert store.claim_execution("exec-x", "b", lease_seconds=10, now=at(5)) is False
    assert store.claim_execution("exec-x", "a", lease_seconds=10, now=at(5)) is True
    store.release("exec-x", "a", due_at=None)
    assert claim(store, "b", limit=1, lease_seconds=10, now=at(10_000)) == []
    assert store.claim_execution("exec-x", "b", lease_seconds=10, now=at(6)) is True
    assert store.claim_execution("exec-missing", "b", lease_seconds=10, now=at(6)) is False


def test_release_by_a_worker_without_the_lease_changes_nothing(store: Store) -> None:
    start(store, "x")
    claim(store, "a", limit=1, lease_seconds=10, now=T0)
    store.release("exec-x", "intruder", due_at=T0)
    assert claim(store, "b", limit=1, lease_seconds=10, now=at(1)) == []
    store.release("exec-x", "a", due_at=at(50))
    assert claim(store, "b", limit=1, lease_seconds=10, now=at(49)) == []
    assert claim(store, "b", limit=1, lease_seconds=10, now=at(50)) == ["exec-x"]


def test_concurrent_claimers_never_get_the_same_execution(db_url: str) -> None:
    setup = Store(db_url)
    machine = setup.put_state_machine("Machine", DEFINITION)
    for i in range(60):
        start(setup, f"c{i:02}", machine=machine)
    setup.close()
    barrier = threading.Barrier(4)

    def claimer(worker: str) -> list[str]:
        store = Store(db_url)
        got: list[str] = []
        try:
            barrier.wait()
            while batch := claim(store, worker, limit=3, lease_seconds=60, now=at(1)):
                got.extend(batch)
            return got
        finally:
            store.close()

    with ThreadPoolExecutor(4) as pool:
        claimed = list(pool.map(claimer, ["w1", "w2", "w3", "w4"]))
    everything = [eid for batch in claimed for eid in batch]
    assert len(everything) == len(set(everything)) == 60


# -- group commit -------------------------------------------------------------


def test_commit_with_a_lost_lease_writes_nothing(store: Store) -> None:
    start(store, "x")
    claim(store, "a", limit=1, lease_seconds=10, now=T0)
    claim(store, "b", limit=1, lease_seconds=10, now=at(11))
    stale = Checkpoint(
        "exec-x",
        journal=[("A#0", '"stale"')],
        events=[Event(2, 1, "PassStateEntered", at(12), {})],
        finish=Finish("SUCCEEDED", at(12), output='"stale"'),
        last_event_id=2,
    )
    assert store.commit([stale], worker_id="a", now=at(12)) == [CommitResult.LEASE_LOST]
    loaded = store.load("exec-x")
    assert loaded.journal == {}
    assert loaded.record.status == "RUNNING" and loaded.last_event_id == 1
    assert [e.event_id for e in store.history("exec-x")] == [1]
    # Even the lease's own holder cannot write once it has expired.
    assert store.commit([stale], worker_id="b", now=at(21)) == [CommitResult.LEASE_LOST]
    assert store.commit([stale], worker_id="b", now=at(20)) == [CommitResult.OK]
    assert store.get_execution("exec-x").output == '"stale"'


def test_a_colliding_checkpoint_never_double_records_and_the_rest_commit(store: Store) -> None:
    machine = store.put_state_machine("Machine", DEFINITION)
    for name in ("a", "b", "c", "d"):
        start(store, name, machine=machine)
    assert len(claim(store, "w", limit=10, lease_seconds=60, now=T0)) == 4
    first = [
        Checkpoint("exec-b", journal=[("K", '"first"')], last_event_id=1),
        Checkpoint("exec-c", events=[Event(2, 1, "X", at(1), {"v": "first"})], last_event_id=2),
    ]
    assert store.commit(first, worker_id="w", now=at(1)) == [CommitResult.OK, CommitResult.OK]
    group = [
        Checkpoint("exec-a", journal=[("K", '"a"')], events=[Event(2, 1, "X", at(2), {})]),
        Checkpoint(
            "exec-b",
            journal=[("K2", '"lost"'), ("K", '"second"')],
            events=[Event(2, 1, "X", at(2), {})],
        ),
        Checkpoint("exec-c", events=[Event(2, 1, "X", at(2), {"v": "second"})]),
        Checkpoint("exec-d", journal=[("K", '"d"')], release=True, release_due_at=at(30)),
    ]
    assert store.commit(group, worker_id="w", now=at(2)) == [
        CommitResult.OK,
        CommitResult.CONFLICT,
        CommitResult.CONFLICT,
        CommitResult.OK,
    ]
    assert journal_rows(store, "exec-a") == {"K": '"a"'}
    assert journal_rows(store, "exec-b") == {"K": '"first"'}
    assert [e.event_id for e in store.history("exec-b")] == [1]
    assert store.history("exec-c")[1].details == {"v": "first"}
    assert journal_rows(store, "exec-d") == {"K": '"d"'}
    assert store.get_execution("exec-a").last_event_id == 2
    assert claim(store, "w2", limit=10, lease_seconds=60, now=at(30)) == ["exec-d"]


def test_commit_of_a_finish_closes_the_execution_and_its_work(store: Store) -> None:
    start(store, "x")
    claim(store, "w", limit=1, lease_seconds=60, now=T0)
    token = TokenRecord("tok-1", "exec-x", "Wait#0/token", "Wait", created_at=at(1))
    assert store.commit(
        [Checkpoint("exec-x", tokens=[token], release=False)], worker_id="w", now=at(1)
    ) == [CommitResult.OK]
    assert store.get_token("tok-1").status == "OPEN"
    finish = Finish("SUCCEEDED", at(3), output='{"ok": true}')
    checkpoint = Checkpoint(
        "exec-x",
        events=[Event(2, 1, "ExecutionSucceeded", at(3), {"output": '{"ok": true}'})],
        finish=finish,
        release=True,
        release_due_at=at(4),
    )
    assert store.commit([checkpoint], worker_id="w", now=at(3)) == [CommitResult.OK]
    record = store.get_execution("exec-x")
    assert (record.status, record.output, record.stop_date, record.last_event_id) == (
        "SUCCEEDED",
        '{"ok": true}',
        at(3),
        2,
    )
    assert store.claim_execution("exec-x", "w", lease_seconds=60, now=at(5)) is False
    assert claim(store, "w", limit=5, lease_seconds=60, now=at(100)) == []
    assert store.get_token("tok-1").status == "TIMED_OUT"
    with pytest.raises(ExecutionNotRunning, match="SUCCEEDED, not RUNNING"):
        store.request_stop("exec-x", error=None, cause=None, now=at(6))


def test_empty_commit_and_load(store: Store) -> None:
    assert store.commit([], worker_id="w", now=T0) == []
    start(store, "x")
    claim(store, "w", limit=1, lease_seconds=60, now=T0)
    store.commit(
        [Checkpoint("exec-x", journal=[("k", "1")], last_event_id=1)],
        worker_id="w",
        now=at(1),
    )
    loaded = store.load("exec-x")
    assert loaded.journal == {"k": "1"}
    assert loaded.machine == store.get_state_machine("Machine", 1)
    assert loaded.record.execution_id == "exec-x" and loaded.last_event_id == 1


# -- callbacks and stops ------------------------------------------------------


def waiting_on_token(store: Store, token: str = "tok") -> None:
    start(store, "cb")
    claim(store, "w", limit=1, lease_seconds=60, now=T0)
    record = TokenRecord(token, "exec-cb", "Task#0/result", "Task", created_at=at(1))
    assert store.commit(
        [Checkpoint("exec-cb", tokens=[record], release=True, release_due_at=None)],
        worker_id="w",
        now=at(1),
    ) == [CommitResult.OK]
    assert claim(store, "w", limit=1, lease_seconds=60, now=at(1000)) == []


def test_complete_token_once(store: Store) -> None:
    waiting_on_token(store)
    store.complete_token(
        "tok", journal_key="Task#0/result", value='{"r": 1}', status="SUCCEEDED", now=at(5)
    )
    assert store.get_token("tok").status == "SUCCEEDED"
    assert journal_rows(store, "exec-cb") == {"Task#0/result": '{"r": 1}'}
    assert claim(store, "w", limit=1, lease_seconds=60, now=at(5)) == ["exec-cb"]
    with pytest.raises(TaskTimedOut, match="Provided task does not exist anymore"):
        store.complete_token(
            "tok", journal_key="Task#0/result", value='"again"', status="FAILED", now=at(6)
        )
    assert journal_rows(store, "exec-cb") == {"Task#0/result": '{"r": 1}'}
    with pytest.raises(InvalidToken, match="Invalid Token"):
        store.complete_token("nope", journal_key="k", value="1", status="SUCCEEDED", now=at(6))
    with pytest.raises(InvalidToken):
        store.get_token("nope")
    with pytest.raises(ValueError):
        store.complete_token("tok", journal_key="k", value="1", status="OPEN", now=at(6))


def test_complete_token_after_the_step_was_recorded_is_timed_out(store: Store) -> None:
    waiting_on_token(store)
    store.claim_execution("exec-cb", "w", lease_seconds=60, now=at(2))
    # The walk recorded a heartbeat timeout under the same key first.
    store.commit(
        [Checkpoint("exec-cb", journal=[("Task#0/result", '"timeout"')])], worker_id="w", now=at(3)
    )
    with pytest.raises(TaskTimedOut):
        store.complete_token(
            "tok", journal_key="Task#0/result", value='"late"', status="SUCCEEDED", now=at(4)
        )
    assert store.get_token("tok").status == "OPEN"
    assert journal_rows(store, "exec-cb") == {"Task#0/result": '"timeout"'}


def test_heartbeat_token(store: Store) -> None:
    waiting_on_token(store)
    store.heartbeat_token("tok", now=at(7))
    assert store.get_token("tok").heartbeat_at == at(7)
    assert store.load("exec-cb").tokens["Task#0/result"].heartbeat_at == at(7)
    store.complete_token("tok", journal_key="k", value='"e"', status="FAILED", now=at(8))
    with pytest.raises(TaskTimedOut):
        store.heartbeat_token("tok", now=at(9))
    with pytest.raises(InvalidToken):
        store.heartbeat_token("unknown", now=at(9))


def test_a_signal_during_a_lease_survives_the_release(store: Store) -> None:
    waiting_on_token(store)
    assert store.claim_execution("exec-cb", "w", lease_seconds=60, now=at(2)) is True
    store.complete_token("tok", journal_key="k", value="1", status="SUCCEEDED", now=at(3))
    # Leased: the callback does not hand the execution to another worker.
    assert claim(store, "other", limit=1, lease_seconds=60, now=at(4)) == []
    # The walk (loaded before the callback) releases to wait "forever"; the
    # callback it did not see must still wake it.
    assert store.commit(
        [Checkpoint("exec-cb", release=True, release_due_at=None)], worker_id="w", now=at(5)
    ) == [CommitResult.OK]
    assert claim(store, "other", limit=1, lease_seconds=60, now=at(5)) == ["exec-cb"]
    # Once seen by a claim, a release for a later time holds again.
    store.release("exec-cb", "other", due_at=at(500))
    assert claim(store, "other", limit=1, lease_seconds=60, now=at(6)) == []


def test_request_stop(store: Store) -> None:
    waiting_on_token(store)
    record = store.request_stop("exec-cb", error="Halt", cause="operator", now=at(10))
    assert (record.stop_requested, record.stop_requested_error, record.stop_requested_cause) == (
        True,
        "Halt",
        "operator",
    )
    assert store.get_execution("exec-cb") == record
    again = store.request_stop("exec-cb", error="Other", cause=None, now=at(11))
    assert again.stop_requested_error == "Halt"
    assert claim(store, "w", limit=1, lease_seconds=60, now=at(11)) == ["exec-cb"]
    with pytest.raises(ExecutionDoesNotExist):
        store.request_stop("ghost", error=None, cause=None, now=at(11))


# -- wake-ups -----------------------------------------------------------------


def test_notify_from_another_connection_wakes_a_postgres_waiter(postgres_url: str) -> None:
    waiter, sender = Store(postgres_url), Store(postgres_url)
    try:
        waiter.wait_for_work(0.01)  # opens the LISTEN connection
        for wake in (sender.notify, lambda: start(sender, "wake")):
            woke = threading.Event()

            def wait(woke: threading.Event = woke) -> None:
                waiter.wait_for_work(20)
                woke.set()

            thread = threading.Thread(target=wait)
            thread.start()
            time.sleep(0.2)
            assert not woke.is_set()
            wake()
            # Well inside the waiter's own 20 s: only the NOTIFY can have woken it.
            assert woke.wait(15), "wait_for_work did not return after NOTIFY"
            thread.join()
    finally:
        waiter.close()
        sender.close()


def _returns(store: Store, timeout: float, deadline: float = 60) -> bool:
    """Whether `store.wait_for_work(timeout)` returns within `deadline` seconds."""
    done = threading.Event()

    def wait() -> None:
        store.wait_for_work(timeout)
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    return done.wait(deadline)


def test_sqlite_waits_at_most_one_poll_and_wakes_on_local_work(sqlite_url: str) -> None:
    polling = Store(sqlite_url, poll_interval=0.2)
    try:
        # An hour-long wait ends at the next poll: another process's work is seen.
        assert _returns(polling, 3600)
    finally:
        polling.close()
    idle = Store(sqlite_url, poll_interval=3600)
    try:
        # Polls an hour apart: only this process's own notify can end these waits.
        idle.notify()
        assert _returns(idle, 3600)
        woke = threading.Event()

        def wait() -> None:
            idle.wait_for_work(3600)
            woke.set()

        threading.Thread(target=wait, daemon=True).start()
        time.sleep(0.2)
        assert not woke.is_set()
        idle.notify()
        assert woke.wait(60)
    finally:
        idle.close()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
            st.integers(min_value=-14 * 60, max_value=14 * 60),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_due_times_in_any_offset_are_claimed_in_instant_order(
    moments: list[tuple[datetime, int]],
) -> None:
    store = Store("sqlite://")
    try:
        machine = store.put_state_machine("Machine", DEFINITION)
        due = {}
        for i, (naive, offset) in enumerate(moments):
            when = naive.replace(tzinfo=timezone(timedelta(minutes=offset)))
            due[f"exec-{i}"] = when
            start(store, str(i), machine=machine, when=when, execution_id=f"exec-{i}")
        latest = max(due.values())
        claimed = claim(store, "w", limit=100, lease_seconds=1, now=latest)
        assert claimed == sorted(due, key=lambda eid: (due[eid], eid))
        assert store.get_execution("exec-0").start_date == due["exec-0"]
        assert store.get_execution("exec-0").start_date.tzinfo is UTC
        earliest = min(due.values())
        assert (
            claim(store, "v", limit=100, lease_seconds=1, now=earliest - timedelta(0, 0, 1)) == []
        )
    finally:
        store.close()
