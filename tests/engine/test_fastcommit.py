"""PostgreSQL's one-round-trip group commit: taken for ordinary batches, and it defers.

The fast path must commit exactly what the careful path would, and hand over
(rolling back everything it sent) whenever a lease is lost or a row collides.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

import engine.store.work as work_module
from engine.store import Checkpoint, CommitResult, Event, Finish, Store

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    s = Store(postgres_url)
    yield s
    s.close()


def _start(store: Store, name: str) -> str:
    machine = store.put_state_machine("m", DEFINITION)
    record, _ = store.create_execution(
        execution_id=f"e-{name}",
        name=name,
        machine=machine,
        input="{}",
        start_date=T0,
        trace_id="0" * 32,
        first_event=Event(1, 0, "ExecutionStarted", T0, {}),
    )
    return record.execution_id


def _checkpoint(execution_id: str, key: str, event_id: int, **extra: object) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[(key, '{"v":1,"e":0}')],
        events=[Event(event_id, event_id - 1, "PassStateEntered", T0, {"name": "A"})],
        last_event_id=event_id,
        **extra,  # type: ignore[arg-type]
    )


def test_ordinary_batches_take_the_fast_path(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [_start(store, n) for n in ("a", "b")]
    assert [i for i, _due in store.claim_due("w", limit=2, lease_seconds=60, now=T0)] == ids

    def careful(*args: object, **kwargs: object) -> object:
        raise AssertionError("the careful path ran for an ordinary batch")

    monkeypatch.setattr(work_module, "write_checkpoints", careful)
    results = store.commit(
        [
            _checkpoint(ids[0], "k", 2),
            _checkpoint(
                ids[1], "k", 2, finish=Finish("SUCCEEDED", T0 + timedelta(seconds=1), output="1")
            ),
        ],
        worker_id="w",
        now=T0,
    )
    assert results == [CommitResult.OK, CommitResult.OK]
    assert store.load(ids[0]).journal == {"k": '{"v":1,"e":0}'}
    assert store.get_execution(ids[1]).status == "SUCCEEDED"
    assert store.work_due_at(ids[1]) == (False, None)  # finished: no more work
    assert [e.event_id for e in store.history(ids[0])] == [1, 2]


def test_fast_path_defers_on_lost_leases_and_conflicts(store: Store) -> None:
    ids = [_start(store, n) for n in ("a", "b", "c")]
    store.claim_due("w", limit=3, lease_seconds=60, now=T0)
    store.commit([_checkpoint(ids[1], "dup", 2)], worker_id="w", now=T0)
    # ids[2]'s lease is taken over by another worker after expiry.
    later = T0 + timedelta(seconds=61)
    store.claim_due("w", limit=0, lease_seconds=60, now=later)
    assert store.claim_execution(ids[2], "other", lease_seconds=60, now=later)
    store.renew("w", ids[:2], lease_seconds=600, now=T0 + timedelta(seconds=30))
    results = store.commit(
        [
            _checkpoint(ids[0], "k", 2),
            _checkpoint(ids[1], "dup", 3),  # collides with the recorded key
            _checkpoint(ids[2], "k", 2),  # lease lost
        ],
        worker_id="w",
        now=later,
    )
    assert results == [CommitResult.OK, CommitResult.CONFLICT, CommitResult.LEASE_LOST]
    assert store.load(ids[0]).journal == {"k": '{"v":1,"e":0}'}
    assert [e.event_id for e in store.history(ids[1])] == [1, 2]
    assert store.load(ids[2]).journal == {}


def test_an_expired_lease_of_our_own_is_refused_inside_the_commit(store: Store) -> None:
    # The lease check runs in the database at the worker's `now`: a lease this
    # worker held but let expire writes nothing, and the group's other
    # checkpoint still commits once (the careful path decides, per checkpoint).
    ids = [_start(store, n) for n in ("a", "b")]
    store.claim_due("w", limit=2, lease_seconds=60, now=T0)
    store.renew("w", ids[:1], lease_seconds=600, now=T0 + timedelta(seconds=30))
    later = T0 + timedelta(seconds=61)
    results = store.commit(
        [_checkpoint(ids[0], "k", 2), _checkpoint(ids[1], "k", 2)], worker_id="w", now=later
    )
    assert results == [CommitResult.OK, CommitResult.LEASE_LOST]
    assert [e.event_id for e in store.history(ids[0])] == [1, 2]
    assert store.load(ids[1]).journal == {}
    assert [e.event_id for e in store.history(ids[1])] == [1]


def test_a_release_due_now_notifies_listeners_at_commit(
    store: Store, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (execution_id,) = [_start(store, "a")]
    store.claim_due("w", limit=1, lease_seconds=60, now=T0)

    def careful(*args: object, **kwargs: object) -> object:
        raise AssertionError("the careful path ran for an ordinary release")

    monkeypatch.setattr(work_module, "write_checkpoints", careful)
    listener = psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    listener.autocommit = True
    try:
        listener.execute("LISTEN stepwise_work")
        results = store.commit(
            [_checkpoint(execution_id, "k", 2, release=True, release_due_at=T0)],
            worker_id="w",
            now=T0,
        )
        assert results == [CommitResult.OK]
        received = list(listener.notifies(timeout=30, stop_after=1))
        assert [n.channel for n in received] == ["stepwise_work"]
    finally:
        listener.close()
    # Released: due at once, and any worker may claim it.
    assert store.work_due_at(execution_id) == (True, T0)
    assert [i for i, _due in store.claim_due("v", limit=1, lease_seconds=60, now=T0)] == [
        execution_id
    ]
