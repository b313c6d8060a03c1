"""Golden histories (tests/histories/*.json) replayed against the current interpreter.

Each file is a real execution's journal. Loaded without its last record — as
if the worker died just before finishing — the execution must resume on
replay alone: the same output, the same final event id, and not one handler
called. A change to journal keys, walk order or data flow that would break
executions in flight across an upgrade fails here first.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from activities import Registry
from engine import Engine
from engine.store import Checkpoint, Event, Store

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*.json"))


def refusing_registry() -> Registry:
    registry = Registry()

    def refuse(value: Any) -> Any:
        raise AssertionError("a recorded step ran again on replay")

    for resource in ("flaky", "boom", "double"):
        registry.register(resource, refuse)
    return registry


def _is_summary(key: str) -> bool:
    """Records that summarize finished work (a state's exit, a child's end)."""
    return key == "execution:end" or key.endswith((":out", "/end"))


def _droppable(key: str, journal: dict[str, Any]) -> bool:
    """A summary the deep replay drops: a child's end whose inner record is complete,
    or a state's exit whose entry row was recorded. A state whose exit committed
    with its entry has no entry row, and a child whose end committed with its inner
    rows has none of them (`journal.superseded_entries`); the exit or end is then
    its only record, and dropping it would describe a journal no database can hold."""
    if not _is_summary(key):
        return False
    if key.endswith("/end"):
        prefix = key[: -len("end")]
        inner = [other for other in journal if other.startswith(prefix) and other != key]
        # Complete: every state entered under it exited, every child started ended.
        # A child's scheduling rows (durable before its handler ran) outlive the
        # rest of its record when its end superseded them.
        return bool(inner) and all(
            (not other.endswith(":in") or f"{other[: -len(':in')]}:out" in journal)
            and (not other.endswith("/start") or f"{other[: -len('start')]}end" in journal)
            for other in inner
        )
    return not key.endswith(":out") or f"{key[: -len(':out')]}:in" in journal


@pytest.mark.parametrize("deep", [False, True], ids=["before-end", "inner-records-only"])
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_golden_history_replays_without_running_anything(
    db_url: str, path: Path, deep: bool
) -> None:
    """`deep`: also drop every state exit and child end, so the replay must rebuild each
    state from its inner records (task outcomes, timers, random draws) alone."""
    golden = json.loads(path.read_text())
    final = golden["events"][-1]
    assert final["type"] == "ExecutionSucceeded"
    now = datetime.now(UTC)
    store = Store(db_url)
    try:
        machine = store.put_state_machine(path.stem, json.dumps(golden["definition"]))
        execution_id = f"arn:aws:states:local:000000000000:execution:{path.stem}:golden"
        store.create_execution(
            execution_id=execution_id,
            name="golden",
            machine=machine,
            input=json.dumps(golden["input"]),
            start_date=now,
            trace_id="0" * 32,
            first_event=Event(
                event_id=1, previous_event_id=0, type="ExecutionStarted", timestamp=now
            ),
        )
        assert store.claim_execution(execution_id, "loader", lease_seconds=60, now=now)
        recorded = golden["journal"]
        journal = [
            (key, msgspec.json.encode(value).decode())
            for key, value in recorded.items()
            if key != "execution:end" and not (deep and _droppable(key, recorded))
        ]
        events = [
            Event(event_id=e["id"], previous_event_id=e["previous"], type=e["type"], timestamp=now)
            for e in golden["events"][1:-1]
        ]
        store.commit(
            [
                Checkpoint(
                    execution_id=execution_id,
                    journal=journal,
                    events=events,
                    release=True,
                    release_due_at=now,
                    last_event_id=final["id"] - 1,
                )
            ],
            worker_id="loader",
            now=now,
        )
    finally:
        store.close()
    with Engine(db_url, registry=refusing_registry(), worker=False) as engine:
        done = engine._call(engine._drive, execution_id, hold_seconds=float("inf"))
        history = engine.history_sync(done)
    assert done.status == "SUCCEEDED", done.cause
    assert json.loads(done.output or "") == golden["output"]
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    if not deep:
        assert [(e.event_id, e.type) for e in history][-1] == (final["id"], "ExecutionSucceeded")
