"""A busy PostgreSQL worker keeps its database sessions: a burst of concurrent store calls as
large as the engine's database limiter (8 threads) plus the committer, lease keeper and pollers
is served again by the sessions already open, never by new server sessions (each a fork)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from engine.store import Store, StoreUnavailable
from engine.store.connect import pool_size

BURST = 12


def _burst(store: Store) -> set[int]:
    """The server pids serving BURST store connections held open at once."""
    barrier = threading.Barrier(BURST)
    pids: set[int] = set()
    lock = threading.Lock()

    def call() -> None:
        with store._engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            barrier.wait(timeout=30)  # all BURST connections are checked out together
            with lock:
                pids.add(int(pid))

    threads = [threading.Thread(target=call) for _ in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return pids


def test_a_repeated_burst_reuses_the_sessions_it_opened(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        first = _burst(store)
        assert len(first) == BURST
        for _ in range(3):
            assert _burst(store) <= first  # no new server session was opened
    finally:
        store.close()


def test_the_pool_size_comes_from_the_environment() -> None:
    assert pool_size({}) == 16
    assert pool_size({"STEPWISE_PG_POOL_SIZE": "40"}) == 40
    for bad in ("0", "-3", "many"):
        with pytest.raises(StoreUnavailable, match="STEPWISE_PG_POOL_SIZE"):
            pool_size({"STEPWISE_PG_POOL_SIZE": bad})
