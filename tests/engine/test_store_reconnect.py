"""The PostgreSQL store survives its connections being killed server-side.

Pooled connections are pinged only after sitting idle (no round trip on the
hot path); one that died while idle is replaced transparently, and one that
dies in use fails that call with StoreUnavailable and is replaced for the next.
"""

from __future__ import annotations

import time

import psycopg
import pytest

import engine.store.connect as connect
from engine.store import Store, StoreUnavailable

MACHINE = '{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}'
# The store's one pooled connection, used once and idle: the only other backend.
KILLED = 1


def _kill_other_backends(url: str) -> int:
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_idle_connections_killed_by_the_server_are_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connect, "_PING_AFTER_IDLE_SECONDS", 0.05)
    store = Store(postgres_url)
    try:
        store.put_state_machine("m", MACHINE)
        assert _kill_other_backends(postgres_url) == KILLED
        time.sleep(0.1)
        assert store.get_state_machine("m").version == 1  # no error: pinged and replaced
    finally:
        store.close()


def test_a_connection_killed_in_use_fails_one_call_then_recovers(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Never idle long enough to be pinged: the dead connection is used as it is.
    monkeypatch.setattr(connect, "_PING_AFTER_IDLE_SECONDS", 3600.0)
    store = Store(postgres_url)
    try:
        store.put_state_machine("m", MACHINE)
        assert _kill_other_backends(postgres_url) == KILLED
        # This call fails cleanly (the store's own error, not a driver's), the next succeeds.
        with pytest.raises(StoreUnavailable) as failed:
            store.get_state_machine("m")
        assert "unavailable" in str(failed.value)
        assert store.get_state_machine("m").version == 1
    finally:
        store.close()
