"""SQLite's driver reads (`rawstart.first_row`) give SQLAlchemy's own rows, value for value.

The start's machine lookup and `Store.get_execution` read through the
driver on SQLite. Here the same prepared SELECTs run both ways on one real
database — a machine with two revisions, a deleted one, an unknown name; a
closed execution with every column set (stop request, redrive date, dates,
booleans) and a running one with most of them None — and the rows must be
equal field for field, typed the same (aware datetimes, bools, ints).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine import Engine
from engine.store import ExecutionDoesNotExist, ExecutionStatus, Store
from engine.store.rawstart import first_row
from engine.store.rows import EXECUTION_BY_ID as _EXECUTION_BY_ID
from engine.store.schema import executions
from engine.store.startplan import HEAD_BY_NAME

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
WAIT = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}


def _both(store: Store, statement: sa.Select[Any], **params: Any) -> tuple[Any, Any]:
    with store._engine.connect() as conn, conn.begin():
        raw = first_row(conn, statement, **params)
        careful = conn.execute(statement, params).first()
    return raw, careful


def _same(raw: Any, careful: Any) -> None:
    assert raw is not None and careful is not None
    assert raw._fields == tuple(careful._fields)
    for field, value in zip(raw._fields, careful, strict=True):
        assert getattr(raw, field) == value, field
        assert type(getattr(raw, field)) is type(value), field


def test_machine_lookup_reads_the_same_row(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.put_state_machine("Machine", json.dumps(PASS))
    store.put_state_machine("Machine", json.dumps({**PASS, "Comment": "two"}))
    store.put_state_machine("Gone", json.dumps(PASS))
    store.delete_state_machine("Gone", now=datetime.now(UTC))
    raw, careful = _both(store, HEAD_BY_NAME, name="Machine")
    _same(raw, careful)
    assert raw.version == 2 and "two" in raw.definition and raw.created_at.tzinfo is not None
    gone_raw, gone_careful = _both(store, HEAD_BY_NAME, name="Gone")
    if gone_careful is None:
        assert gone_raw is None
    else:
        _same(gone_raw, gone_careful)
    assert _both(store, HEAD_BY_NAME, name="Unknown") == (None, None)
    store.close()


def test_describe_reads_the_same_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with Engine(url) as engine:
        engine.create_state_machine_sync("Pass", PASS)
        engine.create_state_machine_sync("Wait", WAIT)
        done = engine.wait_sync(engine.start_sync("Pass", {"v": 1}))
        waiting = engine.start_sync("Wait", {"v": 2})
        stopped = engine.stop_sync(
            engine.start_sync("Wait", {"v": 3}), error="Halt", cause="by test"
        )
        store = engine.store
        raw, careful = _both(store, _EXECUTION_BY_ID, ref=stopped.execution_id)
        _same(raw, careful)
        assert raw.stop_requested is True and raw.stop_requested_cause == "by test"
        engine.redrive_sync(stopped)
        for record in (done, waiting, stopped):
            raw, careful = _both(store, _EXECUTION_BY_ID, ref=record.execution_id)
            _same(raw, careful)
        assert _both(store, _EXECUTION_BY_ID, ref="nope") == (None, None)
        redriven = store.get_execution(stopped.execution_id)
        assert redriven.redrive_count == 1 and redriven.redrive_date is not None
        assert store.get_execution(done.execution_id) == done
        assert done.status == ExecutionStatus.SUCCEEDED and done.stop_date is not None
        # Executions.c columns are all read, none renamed.
        raw, _ = _both(store, _EXECUTION_BY_ID, ref=done.execution_id)
        assert raw._fields == tuple(column.key for column in executions.c)


def test_describe_on_the_kept_connection_sees_other_writers(tmp_path: Path) -> None:
    """A describe by id reads the commit path's kept sqlite3 connection, outside a transaction.

    It must answer as the careful path does, see what another process's
    connection committed since (no snapshot left open), and leave the kept
    connection out of any transaction, so the next start or commit can begin.
    """
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with Engine(url) as engine:
        engine.create_state_machine_sync("Wait", WAIT)
        started = engine.start_sync("Wait", {"v": 1})
        store = engine.store
        before = store.kept_reads
        first = store.get_execution(started.execution_id)
        assert store.kept_reads == before + 1  # read on the kept connection
        with store._read() as conn:
            careful = conn.execute(_EXECUTION_BY_ID, {"ref": started.execution_id}).first()
        assert careful is not None and first.status == ExecutionStatus.RUNNING
        assert first.execution_id == careful.execution_id and first.start_date == careful.start_date
        other = Store(url)
        try:
            other.request_stop(
                started.execution_id, error="Halt", cause="elsewhere", now=datetime.now(UTC)
            )
        finally:
            other.close()
        again = store.get_execution(started.execution_id)
        assert again.stop_requested is True and again.stop_requested_cause == "elsewhere"
        assert store.kept_reads == before + 2  # the other writer's commit seen there
        held = store._backend.held_for(store._engine)  # type: ignore[attr-defined]
        assert held is not None
        with held.connection(write=False) as driver:
            assert not driver.in_transaction
        # The kept connection still writes: a start after the reads commits.
        later = engine.start_sync("Wait", {"v": 2})
        assert store.get_execution(later.execution_id).status == ExecutionStatus.RUNNING
        with pytest.raises(ExecutionDoesNotExist):
            store.get_execution("nope")
