"""A state's entry row is not written when its exit commits with it; nothing a user sees changes.

Pure states (Pass, Choice) enter and exit inside one checkpoint, so their
``:in`` rows were written only to be passed over by every later replay. The
history (every event, its id and previousEventId) stays the same; a state
whose entry committed before its exit (a Task: its entry goes with the
scheduling checkpoint, before its handler runs) keeps the entry; a resume
and a redrive replay the pure states from their exits alone.
"""

from __future__ import annotations

import json
import random
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from activities import ActivityContext, ActivityError, Registry
from engine import Engine, keys
from engine.clock import SystemClock
from engine.journal import Journal, RowTime, encode_row, superseded_entries
from engine.store import ExecutionStatus, Store
from engine.store.schema import journal
from tests.engine.processes import spawn_worker, wait_until

PURE = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": 1, "ResultPath": "$.n", "Next": "Decide"},
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "Done"}],
            "Default": "Done",
        },
        "Done": {"Type": "Pass", "End": True},
    },
}

WITH_TASK = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": 1, "ResultPath": "$.n", "Next": "Work"},
        "Work": {"Type": "Task", "Resource": "work", "ResultPath": "$.work", "Next": "Report"},
        "Report": {"Type": "Pass", "Result": "ok", "ResultPath": "$.report", "End": True},
    },
}


def journal_keys(db_url: str, execution_id: str) -> set[str]:
    store = Store(db_url)
    try:
        with store._engine.connect() as conn:  # reading the table on purpose
            rows = conn.execute(
                sa.select(journal.c.key).where(journal.c.execution_id == execution_id)
            )
            return {row.key for row in rows}
    finally:
        store.close()


def test_pure_states_write_their_exit_rows_only_and_the_same_history(db_url: str) -> None:
    batches: list[tuple[str, list[tuple[str, str]]]] = []
    with Engine(db_url) as engine:
        # The end's commit holds every row here, and a SUCCEEDED end writes
        # none of them (test_succeeded_journal.py): the hook sees the batch.
        engine.runtime.unwritten_rows = lambda execution, rows: batches.append((execution, rows))
        engine.create_state_machine_sync("pure", json.dumps(PURE))
        done = engine.wait_sync(engine.start_sync("pure", {"x": 1}), timeout=60)
        assert done.status == ExecutionStatus.SUCCEEDED
        assert json.loads(done.output or "null") == {"x": 1, "n": 1}
        history = engine.history_sync(done)

    [(execution, rows)] = batches
    assert execution == done.execution_id
    assert [key for key, _ in rows] == ["0:out", "1:out", "2:out", "execution:end"]
    assert journal_keys(db_url, done.execution_id) == set()
    # Every event is still written, numbered and chained as before.
    assert [(e.type, e.event_id, e.previous_event_id) for e in history] == [
        ("ExecutionStarted", 1, 0),
        ("PassStateEntered", 2, 1),
        ("PassStateExited", 3, 2),
        ("ChoiceStateEntered", 4, 3),
        ("ChoiceStateExited", 5, 4),
        ("PassStateEntered", 6, 5),
        ("PassStateExited", 7, 6),
        ("ExecutionSucceeded", 8, 7),
    ]
    assert [e.details.get("name") for e in history[1:-1]] == [
        "Prepare",
        "Prepare",
        "Decide",
        "Decide",
        "Done",
        "Done",
    ]


def test_a_redrive_replays_pure_states_from_their_exits_alone(db_url: str) -> None:
    calls: Counter[str] = Counter()
    broken = [True]

    def work(value: Any, context: ActivityContext) -> Any:
        calls[context.idempotency_key] += 1
        if broken[0]:
            raise ActivityError("Broken", "not yet")
        return value["n"] + 1

    registry = Registry()
    registry.register("work", work)
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("chain", json.dumps(WITH_TASK))
        failed = engine.wait_sync(engine.start_sync("chain", {}), timeout=60)
        assert failed.status == ExecutionStatus.FAILED
        # Prepare's entry went out with its exit; the Task's entry committed
        # before its handler ran (with its schedule), and it never exited.
        keys = journal_keys(db_url, failed.execution_id)
        assert "0:out" in keys and "0:in" not in keys
        assert "1:in" in keys and "1:out" not in keys

        broken[0] = False
        engine.redrive_sync(failed)
        done = engine.wait_sync(failed, timeout=60)
        assert done.status == ExecutionStatus.SUCCEEDED
        assert json.loads(done.output or "null") == {"n": 1, "work": 2, "report": "ok"}
        history = engine.history_sync(done)

    kinds = [(e.type, e.details.get("name")) for e in history]
    # Prepare ran once, before the failure: the redrive replayed it from its exit.
    assert kinds.count(("PassStateEntered", "Prepare")) == 1
    assert kinds.count(("PassStateEntered", "Report")) == 1
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    assert sorted(calls.values()) == [1, 1]  # the failed try and the redriven one
    keys = journal_keys(db_url, done.execution_id)
    # Only the Task's entries remain (before the redrive, and in its new generation).
    assert {key for key in keys if key.endswith(":in")} == {"1:in", "r1/1:in"}


PURE_THEN_TASK = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": 1, "ResultPath": "$.n", "Next": "Decide"},
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "Label"}],
            "Default": "Label",
        },
        "Label": {"Type": "Pass", "Result": "x", "ResultPath": "$.label", "Next": "Capture"},
        "Capture": {"Type": "Task", "Resource": "capture", "End": True},
    },
}


def test_a_worker_killed_after_the_pure_states_committed_resumes_from_their_exits(
    db_url: str, tmp_path: Path
) -> None:
    """SIGKILL while the Task's handler runs (the pure states' exits are durable, their
    entries never written): another worker replays them and finishes with one history."""
    log = tmp_path / "calls.jsonl"
    with Engine(db_url, worker=False, lease_seconds=2) as engine:
        engine.create_state_machine_sync("pure-task", PURE_THEN_TASK)
        started = engine.start_sync("pure-task", {"v": 0})
        first = spawn_worker(db_url, log)
        wait_until(lambda: log.exists() and log.read_text().strip())
        first.send_signal(signal.SIGKILL)
        first.wait()
        keys = journal_keys(db_url, started.execution_id)
        assert {"0:out", "1:out", "2:out", "3:in"} <= keys
        assert not {"0:in", "1:in", "2:in"} & keys
        second = spawn_worker(db_url, log)
        try:
            done = engine.wait_sync(started, timeout=60)
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait()
        history = engine.history_sync(done)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2 and calls[0]["pid"] != calls[1]["pid"]
    assert calls[0]["key"] == calls[1]["key"]
    assert calls[0]["input"] == calls[1]["input"] == {"v": 0, "n": 1, "label": "x"}
    assert done.status == "SUCCEEDED"
    assert json.loads(done.output or "null") == {"v": 0, "n": 1, "label": "x"}
    kinds = [(e.type, e.details.get("name")) for e in history]
    assert kinds.count(("PassStateEntered", "Prepare")) == 1
    assert kinds.count(("ChoiceStateEntered", "Decide")) == 1
    assert kinds.count(("PassStateEntered", "Label")) == 1
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    assert [e.previous_event_id for e in history[1:8]] == list(range(1, 8))


def test_only_an_entry_whose_own_exit_is_in_the_batch_is_left_out() -> None:
    rows = [
        ("0:in", "a"),  # its exit is elsewhere: an iteration's step ends, not this state
        ("0.a0.i0/0:in", "b"),
        ("0.a0.i0/0:out", "c"),
        ("0.a0.i1/0:in", "d"),  # in flight
        ("1:in", "e"),
        ("10:out", "f"),  # another step's exit: 1:in stays
    ]
    assert superseded_entries(rows) == [
        ("0:in", "a"),
        ("0.a0.i0/0:out", "c"),
        ("0.a0.i1/0:in", "d"),
        ("1:in", "e"),
        ("10:out", "f"),
    ]
    assert superseded_entries([("0:in", "a")]) == [("0:in", "a")]


def test_a_childs_inner_rows_are_left_out_when_its_end_is_in_the_batch() -> None:
    rows = [
        ("0.a0.i0/0:t0:r", "a"),  # iteration 0 ends in this batch: its rows go
        ("0.a0.i0/0:out", "b"),
        ("0.a0.i0/1.a0.b0/0:out", "c"),  # nested: under the ended iteration too
        ("0.a0.i0/end", "d"),
        ("0.a0.i1/0:t0:r", "e"),  # iteration 1 has not ended: kept
        ("0.a0.i10/0:out", "f"),  # another child, whose prefix merely starts alike
        ("0.a0.i2/1.a0.b0/end", "g"),  # a nested branch ended, its iteration not
        ("0.a0.i2/1.a0.b0/0:out", "h"),
        ("0.a0.i2/1:in", "i"),
        ("0:m0:succeeded", "j"),  # the Map's own rows are not under a child
    ]
    assert superseded_entries(rows) == [
        ("0.a0.i0/end", "d"),
        ("0.a0.i1/0:t0:r", "e"),
        ("0.a0.i10/0:out", "f"),
        ("0.a0.i2/1.a0.b0/end", "g"),
        ("0.a0.i2/1:in", "i"),
        ("0:m0:succeeded", "j"),
    ]
    assert superseded_entries([("execution:end", "x"), ("0:out", "y")]) == [
        ("execution:end", "x"),
        ("0:out", "y"),
    ]


def _random_key(rng: random.Random) -> str:
    """A key of the grammar's shapes: steps, nested children, task rows, child ends."""
    frame = keys.step("", rng.randrange(3))
    if rng.random() < 0.5:
        prefix = keys.iteration_prefix(frame, 0, rng.randrange(2))
        if rng.random() < 0.3:
            prefix = keys.branch_prefix(keys.step(prefix, rng.randrange(2)), 0, rng.randrange(2))
        if rng.random() < 0.15:
            return keys.child_ended(prefix)
        frame = keys.step(prefix, rng.randrange(3))
    return rng.choice(
        [
            keys.entered(frame),
            keys.exited(frame),
            keys.task_started(keys.attempt(frame, 0)),
            keys.task_result(keys.attempt(frame, 0)),
        ]
    )


def test_drain_leaves_out_what_a_scan_of_its_batch_would() -> None:
    """`Journal.drain` keeps its own account (no scan per batch): it must agree with the scan.

    Random batches of the key grammar's shapes, some drained, some put back
    (`restore`) before later records, every batch checked against
    `superseded_entries` of exactly the rows recorded in it (a batch put
    back twice counts once). Entries are
    recorded as the walk records them (`encode_later`): a kept one's text
    is made by the drain, and is the text `encode_row` gives (the entered
    time as `isoformat` writes it).
    """
    rng = random.Random(1915)
    for _ in range(400):
        journal = Journal("e", {}, last_event_id=1, clock=SystemClock())
        recorded: list[tuple[str, str]] = []
        for _ in range(rng.randrange(1, 4)):
            batch = journal.next_batch()
            taken: list[tuple[str, str]] = []
            for index in range(rng.randrange(1, 9)):
                key = _random_key(rng)
                # As the walk records an exit: naming the entry it supersedes.
                exited = key.endswith(":out")
                if key.endswith(":in"):
                    entered = datetime(2026, 1, 1, 0, 0, index, index * 7, tzinfo=UTC)
                    value = {"s": "S", "t": RowTime(entered)}
                    journal.record(key, value, state="S", encode_later=True)
                    row = {"s": "S", "t": entered.isoformat()}
                    taken.append((key, encode_row(row, 0, "S")))
                    continue
                journal.record(key, index, supersedes=key[:-4] + ":in" if exited else None)
                taken.append((key, journal._records[key]))
            if rng.random() < 0.3:
                journal.drain()
                journal.restore(batch)  # its outcome lost: back before what follows
                if rng.random() < 0.5:  # put back by two callers (the runner, then `_gather`)
                    journal.restore(batch)  # once is all
            recorded.extend(taken)
            if rng.random() < 0.5:
                rows, _events = journal.drain()
                assert rows == superseded_entries(recorded)
                recorded = []
        rows, _events = journal.drain()
        assert rows == superseded_entries(recorded)


MAP_OF_TASKS = {
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Work",
                "States": {
                    "Work": {"Type": "Task", "Resource": "work", "Next": "Tag"},
                    "Tag": {"Type": "Pass", "Result": "t", "ResultPath": "$.tag", "End": True},
                },
            },
            "Next": "Count",
        },
        # The iterations' ends commit with Count's scheduling, before its
        # handler runs, not with the execution's end (which writes no rows).
        "Count": {"Type": "Task", "Resource": "count", "End": True},
    },
}


def test_an_iteration_ending_with_its_last_steps_writes_its_end_and_the_same_history(
    db_url: str,
) -> None:
    registry = Registry()
    registry.register("work", lambda value: {"n": value * 10})
    registry.register("count", lambda value: {"iterations": value})
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("fan", json.dumps(MAP_OF_TASKS))
        done = engine.wait_sync(engine.start_sync("fan", {"items": [1, 2, 3]}), timeout=60)
        history = engine.history_sync(done)
    assert done.status == ExecutionStatus.SUCCEEDED
    assert json.loads(done.output or "null") == {
        "iterations": [{"n": n * 10, "tag": "t"} for n in (1, 2, 3)]
    }

    written = journal_keys(db_url, done.execution_id)
    for index in range(3):
        prefix = f"0.a0.i{index}/"
        # Scheduling committed before the handler ran: those rows stay. What the
        # iteration recorded after it (the task's result, the Pass, the Task's
        # exit) committed with the iteration's end, which alone is written.
        assert {k for k in written if k.startswith(prefix)} == {
            f"{prefix}start",
            f"{prefix}0:in",
            f"{prefix}0:t0:s",
            f"{prefix}end",
        }
    counts = Counter(e.type for e in history)
    for kind in ("MapIterationStarted", "TaskScheduled", "TaskSucceeded", "TaskStateExited"):
        assert counts[kind] == 3 + (kind != "MapIterationStarted")
    assert counts["PassStateExited"] == 3
    assert counts["MapIterationSucceeded"] == 3
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
