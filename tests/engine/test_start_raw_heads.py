"""SQLite's raw starts reuse a machine's head row while no other connection has written.

A start on the kept connection (`HeldSqlite.machine_heads`) keeps the row
its machine resolved to and reads it again only when the connection's
``PRAGMA data_version`` says another connection committed since. What a
user relies on: later starts skip the lookup, a new revision put through the
careful path or by another process is what the next start runs, a machine
another process deleted is not started, and an in-memory database (one
connection for every path) never reuses a row its own writes outdated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.store import Store
from engine.store.sqlite import SqliteBackend
from engine.store.sqlitecommit import HeldSqlite
from tests.engine.test_start_raw_rows import PASS, T0, _request


def _held(store: Store) -> HeldSqlite:
    backend = store._backend
    assert isinstance(backend, SqliteBackend)
    held = backend.held_for(store._engine)
    assert held is not None
    return held


def _version_started(store: Store, name: str) -> int:
    (result,) = store.start_executions([_request("Machine", None, name, "{}")])
    assert result.error is None and result.record is not None and result.created
    return result.record.version


def _revise(store: Store, comment: str) -> None:
    store.put_state_machine("Machine", json.dumps({**PASS, "Comment": comment}))


def test_raw_starts_reuse_the_head_until_another_connection_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'heads.db'}"
    store, elsewhere = Store(url), Store(url)
    try:
        store.put_state_machine("Machine", json.dumps(PASS))
        held = _held(store)
        assert _version_started(store, "a") == 1
        assert held.head_reuses == 0
        assert _version_started(store, "b") == 1
        assert held.head_reuses == 1  # no lookup: nothing else wrote

        _revise(store, "two")  # the careful path, on another connection of this store
        assert _version_started(store, "c") == 2
        assert held.head_reuses == 1  # read again
        assert _version_started(store, "d") == 2
        assert held.head_reuses == 2

        _revise(elsewhere, "three")  # another process
        assert _version_started(store, "e") == 3
        elsewhere.delete_state_machine("Machine", now=T0)
        (refused,) = store.start_executions([_request("Machine", None, "f", "{}")])
        assert type(refused.error).__name__ == "StateMachineDeleting"
    finally:
        store.close()
        elsewhere.close()


def test_an_in_memory_database_never_reuses_a_head() -> None:
    # One connection serves every path: a revision put on it does not change
    # its data_version, so a kept row would outlive it.
    store = Store("sqlite://")
    try:
        store.put_state_machine("Machine", json.dumps(PASS))
        assert _version_started(store, "a") == 1
        _revise(store, "two")
        assert _version_started(store, "b") == 2
        assert _held(store).head_reuses == 0
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///file:heads_shared?mode=memory&cache=shared&uri=true",
        "sqlite:///file:heads_private?mode=memory&uri=true",
    ],
)
def test_a_memory_uri_never_reuses_a_head(url: str) -> None:
    # SQLAlchemy pools a memory URI with one connection a thread
    # (SingletonThreadPool): the careful path writes on the kept connection.
    store = Store(url)
    try:
        store.put_state_machine("Machine", json.dumps(PASS))
        assert _version_started(store, "a") == 1
        assert _version_started(store, "b") == 1
        _revise(store, "two")
        assert _version_started(store, "c") == 2
        store.delete_state_machine("Machine", now=T0)
        (refused,) = store.start_executions([_request("Machine", None, "d", "{}")])
        assert type(refused.error).__name__ == "StateMachineDeleting"
        assert _held(store).head_reuses == 0
    finally:
        store.close()
