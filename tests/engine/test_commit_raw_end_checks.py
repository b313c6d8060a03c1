"""SQLite's raw ends ask whether an alert or a task token exists only when another connection wrote.

An end enqueues its alert deliveries only while an unpaused alert exists,
and closes its open tokens only while the token table holds any
(`HeldSqlite.end_checks`). The kept connection keeps that answer while its
``PRAGMA data_version`` says no other connection committed. What a user
relies on: an alert created by this store's careful path or by another
process delivers for the next end, and a token issued meanwhile is closed
(TIMED_OUT) when its execution ends; ends in between ask nothing again.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from engine.store import Checkpoint, CommitResult, Event, Finish, Store, TokenRecord
from engine.store.outbox import AlertRecord
from tests.engine.test_fastcommit import T0, _start
from tests.engine.test_start_raw_heads import _held


def _started(store: Store, names: str) -> None:
    for name in names:
        _start(store, name)
    store.claim_due("w", limit=len(names), lease_seconds=60, now=T0)


def _end(store: Store, name: str) -> None:
    ended = Checkpoint(
        f"e-{name}",
        events=[Event(2, 1, "ExecutionSucceeded", T0, {"output": "{}"})],
        finish=Finish("SUCCEEDED", T0 + timedelta(seconds=1), output="{}"),
        last_event_id=1,
    )
    assert store.commit([ended], worker_id="w", now=T0) == [CommitResult.OK]


def _alert(store: Store, name: str) -> None:
    store.create_alert(
        AlertRecord(name=name, machine=None, statuses=("SUCCEEDED",), target="x", created_at=T0)
    )


def test_ends_ask_again_only_after_another_connection_wrote(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ends.db'}"
    store, elsewhere = Store(url), Store(url)
    try:
        _started(store, "abcdef")
        _end(store, "a")  # the kept connection's first end: it asks
        held = _held(store)
        kept = held._pooled
        assert kept is not None
        statements: list[str] = []
        kept.driver_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
        _end(store, "b")
        asked = [s for s in statements if "alerts" in s or "task_tokens" in s]
        assert asked == []  # nothing else wrote: neither asked nor a token update

        _alert(store, "mine")  # the careful path, on another connection of this store
        _end(store, "c")
        _alert(elsewhere, "theirs")  # another process
        _end(store, "d")

        token = TokenRecord("tok-e", "e-e", "t/0", "A", created_at=T0)
        assert store.commit(
            [Checkpoint("e-e", tokens=[token], last_event_id=1)], worker_id="w", now=T0
        ) == [CommitResult.OK]
        _end(store, "e")
        _end(store, "f")
        with store._engine.connect() as conn:
            delivered = sorted(
                tuple(row)
                for row in conn.exec_driver_sql("SELECT alert, execution_id FROM alert_deliveries")
            )
            (status,) = conn.execute(sa.text("SELECT status FROM task_tokens")).one()
        assert delivered == sorted(
            [("mine", e) for e in ("e-c", "e-d", "e-e", "e-f")]
            + [("theirs", e) for e in ("e-d", "e-e", "e-f")]
        )
        assert status == "TIMED_OUT"
    finally:
        store.close()
        elsewhere.close()
