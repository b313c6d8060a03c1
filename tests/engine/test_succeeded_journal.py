"""The commit of an execution's SUCCEEDED end writes no journal rows; nothing a user sees changes.

Nothing resumes or redrives a SUCCEEDED execution, so the journal rows its
end's commit would write are never read (`engine.runner._checkpointer`).
That commit still writes every history event and the execution's end; the
rows of earlier commits stay. A FAILED, TIMED_OUT or ABORTED end keeps its
rows (a redrive reads them); a Map iteration's or Parallel branch's end is a
row like any other; a worker killed before the end leaves the earlier rows,
and another resumes from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from activities import ActivityContext, ActivityError, Registry
from engine import Engine
from engine.store import ExecutionStatus
from tests.engine.processes import finished_on_a_new_worker, killed_mid_call, wait_until
from tests.engine.test_journal_superseded import journal_keys

CHAIN = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": 1, "ResultPath": "$.n", "Next": "Work"},
        "Work": {"Type": "Task", "Resource": "work", "ResultPath": "$.work", "Next": "Decide"},
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.work", "NumericEquals": 2, "Next": "Report"}],
            "Default": "Report",
        },
        "Report": {"Type": "Pass", "Result": "ok", "ResultPath": "$.report", "End": True},
    },
}

# What the Task's scheduling commit writes (before its handler runs): Prepare's
# exit, the Task's entry and its scheduled record.
SCHEDULED = {"0:out", "1:in", "1:t0:s"}
# What the end's commit holds: the task's result, the exits, the end.
AT_THE_END = {"1:t0:r", "1:out", "2:out", "3:out", "execution:end"}


def test_a_succeeded_end_writes_no_journal_rows_and_the_same_history(db_url: str) -> None:
    registry = Registry()
    registry.register("work", lambda value: value["n"] + 1)
    unwritten: list[tuple[str, list[tuple[str, str]]]] = []
    with Engine(db_url, registry=registry) as engine:
        engine.runtime.unwritten_rows = lambda execution, rows: unwritten.append((execution, rows))
        engine.create_state_machine_sync("chain", CHAIN)
        done = engine.wait_sync(engine.start_sync("chain", {}), timeout=60)
        history = engine.history_sync(done)
        described = engine.describe_sync(done)

    assert done.status == described.status == ExecutionStatus.SUCCEEDED
    assert json.loads(done.output or "null") == {"n": 1, "work": 2, "report": "ok"}
    assert json.loads(described.output or "null") == {"n": 1, "work": 2, "report": "ok"}
    # The earlier commit's rows stay; the end's commit wrote none of its own.
    assert journal_keys(db_url, done.execution_id) == SCHEDULED
    [(execution, rows)] = unwritten
    assert execution == done.execution_id
    assert {key for key, _ in rows} == AT_THE_END
    # Every event is written, numbered and chained as before the change.
    assert [(e.type, e.event_id, e.previous_event_id, e.details.get("name")) for e in history] == [
        ("ExecutionStarted", 1, 0, None),
        ("PassStateEntered", 2, 1, "Prepare"),
        ("PassStateExited", 3, 2, "Prepare"),
        ("TaskStateEntered", 4, 3, "Work"),
        ("TaskScheduled", 5, 4, None),
        ("TaskStarted", 6, 5, None),
        ("TaskSucceeded", 7, 6, None),
        ("TaskStateExited", 8, 7, "Work"),
        ("ChoiceStateEntered", 9, 8, "Decide"),
        ("ChoiceStateExited", 10, 9, "Decide"),
        ("PassStateEntered", 11, 10, "Report"),
        ("PassStateExited", 12, 11, "Report"),
        ("ExecutionSucceeded", 13, 12, None),
    ]
    assert json.loads(history[6].details["output"]) == 2
    assert json.loads(history[-1].details["output"]) == {"n": 1, "work": 2, "report": "ok"}
    assert described.last_event_id == 13


def test_a_failed_end_keeps_its_rows_and_its_redrive_replays_them(db_url: str) -> None:
    outcomes: list[Exception | None] = [ActivityError("Broken", "not yet"), None]
    runs: list[str] = []

    def work(value: Any, context: ActivityContext) -> Any:
        runs.append(context.idempotency_key)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return value["n"] + 1

    registry = Registry()
    registry.register("work", work)
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("chain", CHAIN)
        failed = engine.wait_sync(engine.start_sync("chain", {}), timeout=60)
        # The failure's commit wrote its rows: the task's outcome and the end.
        at_failure = journal_keys(db_url, failed.execution_id)
        engine.redrive_sync(failed)
        done = engine.wait_sync(failed, timeout=60)
        history = engine.history_sync(done)

    assert failed.status == ExecutionStatus.FAILED
    assert SCHEDULED | {"1:t0:r", "execution:end"} <= at_failure
    assert done.status == ExecutionStatus.SUCCEEDED
    assert json.loads(done.output or "null") == {"n": 1, "work": 2, "report": "ok"}
    # The redrive replayed Prepare from the failed run's rows (it ran once) and
    # ran the Task again, under its new generation's key.
    entered = [e.details.get("name") for e in history if e.type.endswith("StateEntered")]
    assert entered == ["Prepare", "Work", "Work", "Decide", "Report"]
    assert len(runs) == len(set(runs)) == 2
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    # The redriven run's SUCCEEDED end wrote no rows; its scheduling did, and the
    # failed run's rows are all still there.
    keys = journal_keys(db_url, done.execution_id)
    assert at_failure | {"r1/1:in", "r1/1:t0:s"} <= keys
    assert not {"r1/1:t0:r", "r1/1:out", "r1/2:out", "r1/3:out", "execution:end:r1"} & keys


WAITS = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": 1, "ResultPath": "$.n", "Next": "Hold"},
        "Hold": {"Type": "Wait", "Seconds": 3600, "End": True},
    },
}


def test_an_aborted_or_timed_out_end_keeps_its_rows(db_url: str) -> None:
    timing_out = dict(WAITS, TimeoutSeconds=1)
    with Engine(db_url, hold_seconds=0) as engine:
        engine.create_state_machine_sync("waits", WAITS)
        engine.create_state_machine_sync("times-out", timing_out)
        stopped = engine.start_sync("waits", {})
        wait_until(lambda: "1:in" in journal_keys(db_url, stopped.execution_id))
        engine.stop_sync(stopped, error="Enough", cause="test")
        aborted = engine.wait_sync(stopped, timeout=60)
        timed_out = engine.wait_sync(engine.start_sync("times-out", {}), timeout=60)

    assert aborted.status == ExecutionStatus.ABORTED
    assert timed_out.status == ExecutionStatus.TIMED_OUT
    for ended in (aborted, timed_out):
        assert "execution:end" in journal_keys(db_url, ended.execution_id)


CHILDREN_THEN_TASK = {
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": True}}},
                {"StartAt": "Right", "States": {"Right": {"Type": "Pass", "End": True}}},
            ],
            "ResultPath": "$.fan",
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "Tag", "States": {"Tag": {"Type": "Pass", "End": True}}},
            "ResultPath": "$.each",
            "Next": "Count",
        },
        "Count": {"Type": "Task", "Resource": "count", "End": True},
    },
}


def test_a_childs_end_is_written_when_the_execution_goes_on(db_url: str) -> None:
    """The branches and iterations end in the commit that schedules Count, before the
    execution's end: their end rows are written there as before."""
    registry = Registry()
    registry.register("count", lambda value: len(value["fan"]) + len(value["each"]))
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("children", CHILDREN_THEN_TASK)
        done = engine.wait_sync(engine.start_sync("children", {"items": [1, 2, 3]}), timeout=60)
    assert done.status == ExecutionStatus.SUCCEEDED
    assert json.loads(done.output or "null") == 5

    keys = journal_keys(db_url, done.execution_id)
    ends = {
        "0.a0.b0/end",
        "0.a0.b1/end",
        "0:out",
        "1.a0.i0/end",
        "1.a0.i1/end",
        "1.a0.i2/end",
        "1:out",
        "2:in",
        "2:t0:s",
    }
    assert ends <= keys
    assert not {"2:t0:r", "2:out", "execution:end"} & keys


PURE_THEN_TASK = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": 1, "ResultPath": "$.n", "Next": "Capture"},
        "Capture": {"Type": "Task", "Resource": "capture", "Next": "Decide"},
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "Label"}],
            "Default": "Label",
        },
        "Label": {"Type": "Pass", "Result": "x", "ResultPath": "$.label", "End": True},
    },
}


def test_a_worker_killed_before_the_end_leaves_the_earlier_rows_and_another_finishes(
    db_url: str, tmp_path: Path
) -> None:
    """SIGKILL while the last Task's handler runs (all that is left is the end's
    commit): another worker resumes from the scheduling rows and ends the execution."""
    log = tmp_path / "calls.jsonl"
    with Engine(db_url, worker=False, lease_seconds=2) as engine:
        engine.create_state_machine_sync("ends-after-task", PURE_THEN_TASK)
        started = engine.start_sync("ends-after-task", {"v": 0})
        killed_mid_call(db_url, log)
        at_kill = journal_keys(db_url, started.execution_id)
        done = finished_on_a_new_worker(engine, db_url, log, started)
        history = engine.history_sync(done)
    assert at_kill == {"0:out", "1:in", "1:t0:s"}
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2 and calls[0]["pid"] != calls[1]["pid"]
    assert calls[0]["key"] == calls[1]["key"]
    assert calls[0]["input"] == calls[1]["input"] == {"v": 0, "n": 1}
    assert done.status == ExecutionStatus.SUCCEEDED
    assert json.loads(done.output or "null") == {"v": 0, "n": 1, "label": "x"}
    kinds = [(e.type, e.details.get("name")) for e in history]
    assert kinds.count(("PassStateEntered", "Prepare")) == 1
    assert kinds.count(("ChoiceStateEntered", "Decide")) == 1
    assert kinds[-1] == ("ExecutionSucceeded", None)
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    # The resumed end's commit added no rows.
    assert journal_keys(db_url, done.execution_id) == at_kill
