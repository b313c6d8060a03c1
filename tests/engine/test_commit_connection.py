"""PostgreSQL's group commit keeps one connection between commits, and survives losing it.

The commit path holds its connection (`pgraw.HeldConnection`) instead of
taking one from the pool per commit. Killed by the server while idle, it is
pinged and replaced without an error; killed while in use, that one commit
fails with StoreUnavailable (nothing written) and the next one commits on a
new connection; closing the store closes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

import engine.store.connect as connect
from engine.store import Checkpoint, CommitResult, Event, Store, StoreUnavailable

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'


_PROBE = "stepwise-test-sessions-probe"


def _sessions(url: str, *, kill: bool) -> int:
    """The database's other server sessions (terminated when `kill`).

    Not this probe's own, nor an earlier probe's, whose session the server may
    still be ending (its client closed it a moment ago).
    """
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    what = "pg_terminate_backend(pid)" if kill else "pid"
    with psycopg.connect(raw, autocommit=True, application_name=_PROBE) as conn:
        rows = conn.execute(
            f"SELECT {what} FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' AND application_name <> %s",
            (_PROBE,),
        ).fetchall()
    return len(rows)


@pytest.fixture
def started(postgres_url: str) -> Iterator[Store]:
    """A store whose worker w holds the lease of execution e."""
    store = Store(postgres_url)
    machine = store.put_state_machine("m", DEFINITION)
    store.create_execution(
        execution_id="e",
        name="e",
        machine=machine,
        input="{}",
        start_date=T0,
        trace_id="0" * 32,
        first_event=Event(1, 0, "ExecutionStarted", T0, {}),
    )
    store.claim_due("w", limit=1, lease_seconds=3600, now=T0)
    yield store
    store.close()


def _step(n: int) -> Checkpoint:
    return Checkpoint(
        "e", journal=[(f"k{n}", "1")], events=[Event(n + 1, n, "PassStateEntered", T0, {})]
    )


def test_a_commit_connection_killed_while_idle_is_replaced_without_an_error(
    started: Store, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connect, "_PING_AFTER_IDLE_SECONDS", 0.05)
    assert started.commit([_step(1)], worker_id="w", now=T0) == [CommitResult.OK]
    assert _sessions(postgres_url, kill=True) >= 1
    time.sleep(0.1)
    assert started.commit([_step(2)], worker_id="w", now=T0) == [CommitResult.OK]
    assert [e.event_id for e in started.history("e")] == [1, 2, 3]


def test_a_commit_connection_killed_in_use_fails_one_commit_then_recovers(
    started: Store, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connect, "_PING_AFTER_IDLE_SECONDS", 3600.0)
    assert started.commit([_step(1)], worker_id="w", now=T0) == [CommitResult.OK]
    assert _sessions(postgres_url, kill=True) >= 1
    with pytest.raises(StoreUnavailable):
        started.commit([_step(2)], worker_id="w", now=T0)
    assert started.commit([_step(2)], worker_id="w", now=T0) == [CommitResult.OK]
    assert [e.event_id for e in started.history("e")] == [1, 2, 3]
    assert started.load("e").journal == {"k1": "1", "k2": "1"}


def test_closing_the_store_closes_the_commit_connection(started: Store, postgres_url: str) -> None:
    assert started.commit([_step(1)], worker_id="w", now=T0) == [CommitResult.OK]
    assert _sessions(postgres_url, kill=False) >= 1
    started.close()
    # The server ends a session a moment after its client closes it.
    deadline = time.monotonic() + 30
    while _sessions(postgres_url, kill=False) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sessions(postgres_url, kill=False) == 0
