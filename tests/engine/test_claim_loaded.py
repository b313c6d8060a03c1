"""The worker's claim loads what it leases: `claim_due_loaded` returns, for each execution it
claims, exactly what `Store.load` returns, read under the claim's lease, on both stores."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from engine.store import Checkpoint, CommitResult, Event, Store, StoreUnavailable, TokenRecord
from tests.engine.test_store import DEFINITION, T0, at, start

OTHER = '{"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}'


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def test_the_claim_returns_what_load_returns_for_each_execution_it_leases(store: Store) -> None:
    machine = store.put_state_machine("Machine", DEFINITION)
    other = store.put_state_machine("Other", OTHER)
    start(store, "a", machine=machine)
    start(store, "b", machine=other, when=at(1))
    start(store, "c", machine=machine, when=at(2))
    # Give one a journal, later events and a task token, and make it due again.
    assert [i for i, _ in store.claim_due("w0", limit=1, lease_seconds=60, now=at(3))] == ["exec-a"]
    token = TokenRecord("tok-1", "exec-a", "Task#0/result", "Task", created_at=at(4))
    checkpoint = Checkpoint(
        "exec-a",
        journal=[("A#0", '"one"'), ("A#0/result", '{"x": 1}')],
        events=[Event(2, 1, "TaskStateEntered", at(4), {"name": "A"})],
        tokens=[token],
        last_event_id=2,
        release=True,
        release_due_at=at(5),
    )
    assert store.commit([checkpoint], worker_id="w0", now=at(4)) == [CommitResult.OK]

    claimed = store.claim_due_loaded("w", limit=2, lease_seconds=60, now=at(10))

    assert [(i, due) for i, due, _ in claimed] == [("exec-b", at(1)), ("exec-c", at(2))]
    for execution_id, _due, loaded in claimed:
        assert loaded == store.load(execution_id)
    (rest,) = store.claim_due_loaded("w", limit=5, lease_seconds=60, now=at(10))
    assert rest[0] == "exec-a" and rest[2] == store.load("exec-a")
    assert rest[2] is not None
    assert rest[2].journal == {"A#0": '"one"', "A#0/result": '{"x": 1}'}
    assert rest[2].tokens["Task#0/result"].token == "tok-1"
    assert rest[2].last_event_id == 2


def test_the_loading_claim_leases_like_the_plain_one(store: Store) -> None:
    start(store, "x")
    assert store.claim_due_loaded("w1", limit=0, lease_seconds=60, now=T0) == []
    assert [i for i, _, _ in store.claim_due_loaded("w1", limit=5, lease_seconds=10, now=T0)] == [
        "exec-x"
    ]
    # Leased: nobody else gets it until the lease expires, then the next claimer does.
    assert store.claim_due_loaded("w2", limit=5, lease_seconds=10, now=at(9)) == []
    assert store.claim_due("w2", limit=5, lease_seconds=10, now=at(9)) == []
    ((execution_id, _, loaded),) = store.claim_due_loaded(
        "w2", limit=5, lease_seconds=10, now=at(10)
    )
    assert execution_id == "exec-x" and loaded is not None
    # The first worker's lease is gone: its commits are refused.
    late = Checkpoint("exec-x", journal=[("k", "1")], last_event_id=1)
    assert store.commit([late], worker_id="w1", now=at(11)) == [CommitResult.LEASE_LOST]
    assert store.commit([late], worker_id="w2", now=at(11)) == [CommitResult.OK]


def test_an_execution_already_leased_by_the_same_worker_is_not_claimed_again(store: Store) -> None:
    machine = store.put_state_machine("Machine", DEFINITION)
    start(store, "held", machine=machine)
    start(store, "due", machine=machine, when=at(1))
    # The same worker already drives one (as `Engine.run` does), leased until the same instant
    # a claim at the same time would lease until.
    assert store.claim_execution("exec-held", "w", lease_seconds=60, now=at(5))
    claimed = store.claim_due_loaded("w", limit=5, lease_seconds=60, now=at(5))
    assert [(i, loaded is not None) for i, _, loaded in claimed] == [("exec-due", True)]
    assert claimed[0][2] == store.load("exec-due")


def test_an_idle_sqlite_claim_takes_no_write_lock(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process holds the file's write lock (a long write, a backup):
    # an idle worker's claim finds nothing due without waiting for the lock,
    # so it neither fails nor pauses as for an outage; work that is due still
    # needs the lock, and is claimed once the lock is gone.
    monkeypatch.setenv("STEPWISE_SQLITE_BUSY_TIMEOUT", "0.1")
    store = Store(sqlite_url)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        start(store, "later", when=at(10))
        other.execute("BEGIN IMMEDIATE")
        assert store.claim_due_loaded("w", limit=5, lease_seconds=60, now=at(9)) == []
        with pytest.raises(StoreUnavailable):
            store.claim_due_loaded("w", limit=5, lease_seconds=60, now=at(10))
        other.execute("COMMIT")
        claimed = store.claim_due_loaded("w", limit=5, lease_seconds=60, now=at(10))
        assert [i for i, _, _ in claimed] == ["exec-later"]
    finally:
        other.close()
        store.close()
