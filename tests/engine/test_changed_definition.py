"""A journal recorded for one definition does not replay silently under another.

Journal keys are positions (step 0, 1, … through branches and iterations),
so a definition changed under an execution in flight would line a recorded
step up with a different state. The walk checks the state name recorded at
each entry and stops with a nondeterminism error naming both states, rather
than feeding one state's recorded result into another.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from engine import Engine
from engine.store import Checkpoint, Event, Store
from tests.engine.test_golden_histories import refusing_registry

GOLDEN = Path(__file__).resolve().parents[1] / "histories" / "task_retry_catch.json"


def _load(url: str, definition: dict[str, object], golden: dict[str, object]) -> str:
    """An execution of `definition` whose journal is the golden one, as if resumed after a crash."""
    now = datetime.now(UTC)
    store = Store(url)
    try:
        machine = store.put_state_machine("changed", json.dumps(definition))
        execution_id = "arn:aws:states:local:000000000000:execution:changed:one"
        store.create_execution(
            execution_id=execution_id,
            name="one",
            machine=machine,
            input=json.dumps(golden["input"]),
            start_date=now,
            trace_id="0" * 32,
            first_event=Event(
                event_id=1, previous_event_id=0, type="ExecutionStarted", timestamp=now
            ),
        )
        assert store.claim_execution(execution_id, "loader", lease_seconds=60, now=now)
        records = golden["journal"]
        assert isinstance(records, dict)
        events = golden["events"]
        assert isinstance(events, list)
        store.commit(
            [
                Checkpoint(
                    execution_id=execution_id,
                    journal=[
                        (key, msgspec.json.encode(value).decode())
                        for key, value in records.items()
                        # Without the state exits, the walk takes each Next from the
                        # (changed) definition, as it would after an upgrade.
                        if key != "execution:end" and not key.endswith(":out")
                    ],
                    events=[
                        Event(
                            event_id=e["id"],
                            previous_event_id=e["previous"],
                            type=e["type"],
                            timestamp=now,
                        )
                        for e in events[1:-1]
                    ],
                    release=True,
                    release_due_at=now,
                    last_event_id=events[-1]["id"] - 1,
                )
            ],
            worker_id="loader",
            now=now,
        )
    finally:
        store.close()
    return execution_id


def test_a_changed_definition_fails_the_replay(db_url: str) -> None:
    golden = json.loads(GOLDEN.read_text())
    text = json.dumps(golden["definition"]).replace('"Boom"', '"Bang"')
    execution_id = _load(db_url, json.loads(text), golden)
    with Engine(db_url, registry=refusing_registry(), worker=False) as engine:
        done = engine._call(engine._drive, execution_id, hold_seconds=float("inf"))
        history = engine.history_sync(done)
    assert done.status == "FAILED"
    assert done.error == "States.Runtime"
    assert done.cause == (
        f"execution {execution_id}: step 1 was recorded for state 'Boom' "
        "but the walk reached 'Bang'"
    )
    assert history[-1].type == "ExecutionFailed"
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
