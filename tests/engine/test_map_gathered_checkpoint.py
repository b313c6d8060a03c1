"""A Map's iterations schedule their Tasks in one commit, each durable before its handler runs.

While several children (Map iterations, Parallel branches) walk at once,
the first to checkpoint yields once so that its ready siblings record their
steps and join its commit (`Walk.durable`). What a user relies on stays:
every iteration's TaskScheduled is in the database before its handler is
called, the outputs are in item order, and the history is the same events
with the same ids and previousEventId chains; the many schedules now take
one commit, not one and then the rest.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import sqlalchemy as sa

from activities import Registry
from engine import Engine
from engine.store import ExecutionStatus, Store
from engine.store.schema import history_blocks, history_events

ITEMS = 12

MAP = {
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemSelector": {"i.$": "$$.Map.Item.Value"},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Work",
                "States": {"Work": {"Type": "Task", "Resource": "work", "End": True}},
            },
            "End": True,
        }
    },
}


def test_every_iteration_is_scheduled_durably_before_its_handler_in_one_commit(
    db_url: str,
) -> None:
    reader = Store(db_url)  # a connection of its own: sees only what is committed
    seen: dict[int, bool] = {}
    lock = threading.Lock()

    def work(value: dict[str, Any]) -> dict[str, Any]:
        index = value["i"]
        with reader._engine.connect() as conn:  # reading the table on purpose
            details = list(
                conn.execute(
                    sa.select(history_events.c.details).where(
                        history_events.c.type == "TaskScheduled"
                    )
                ).scalars()
            )
            # Since migration 18 a commit's events are one history_blocks row.
            for text in conn.execute(sa.select(history_blocks.c.events)).scalars():
                details.extend(e[4] for e in json.loads(text) if e[2] == "TaskScheduled")
            scheduled = [json.loads(json.loads(d)["parameters"]) for d in details]
        with lock:
            seen[index] = {"i": index} in scheduled
        return {"j": index * 2}

    registry = Registry()
    registry.register("work", work)
    try:
        with Engine(db_url, registry=registry) as engine:
            engine.create_state_machine_sync("fan", json.dumps(MAP))
            committer = engine._runtime.committer  # type: ignore[union-attr]
            before = committer.commits
            done = engine.wait_sync(
                engine.start_sync("fan", {"items": list(range(ITEMS))}), timeout=60
            )
            commits = committer.commits - before
            history = engine.history_sync(done)
    finally:
        reader.close()

    assert done.status == ExecutionStatus.SUCCEEDED
    assert json.loads(done.output or "null") == [{"j": i * 2} for i in range(ITEMS)]
    # Checkpoint before effect: each handler found its own TaskScheduled committed.
    assert seen == dict.fromkeys(range(ITEMS), True)
    # One commit schedules every iteration; one more ends the execution.
    assert commits == 2
    # Every event once, numbered 1…n, each chained on an earlier one.
    counts = Counter(e.type for e in history)
    for kind in ("MapIterationStarted", "TaskScheduled", "TaskSucceeded", "MapIterationSucceeded"):
        assert counts[kind] == ITEMS
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    assert all(0 <= e.previous_event_id < e.event_id for e in history)
