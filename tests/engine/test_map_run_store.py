"""The Map Run's commit hook at the store level: counting a child's end and waking its parent.

A worker's group commit may carry, in one transaction, the parent's
release (it suspended, having read its Map Run as still running) and the
end of the run's last child: the parent must come out of that commit due,
or it would wait forever (a lost wake-up). And a parent's unsuccessful end
takes its running Map Runs down in the commit that records it: with no
further store call, the run is ABORTED, its pending children never start
and its running ones are asked to stop. A redriven Map Run redrives its
failed children in place, as AWS does, in its own transaction and in the
commits that make room under MaxConcurrency. Both stores.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from engine import Engine
from engine.store import Checkpoint, CommitResult, Event, Finish
from engine.store.map_runs import MapRunRedriveCounts

PARENT = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
WORKER = "worker-test"


def test_parent_released_with_its_last_childs_end_in_one_commit_is_due(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:
        store = engine.store
        engine.create_state_machine_sync("parent", PARENT)
        child_machine = store.put_state_machine("parent/label", json_text(PARENT), "STANDARD")
        parent = engine.start_sync("parent", {})
        now = datetime.now(UTC)
        assert store.claim_execution(parent.execution_id, WORKER, lease_seconds=60, now=now)
        run_id = "00000000-0000-0000-0000-000000000001"
        arn = f"arn:aws:states:local:000000000000:mapRun:parent/label:{run_id}"
        child_id = "arn:aws:states:local:000000000000:execution:parent/label:child-0"
        store.create_map_run(
            map_run_id=run_id,
            arn=arn,
            execution_id=parent.execution_id,
            state_key="0",
            attempt=0,
            machine="parent/label",
            version=child_machine.version,
            queue=parent.queue,
            now=now,
            max_concurrency=0,
            tolerated_failure_percentage=None,
            tolerated_failure_count=None,
        )
        store.add_map_run_children(run_id, [(0, child_id, "1", 1)])
        started = store.start_map_run(run_id, now=now)
        assert started.running == 1
        assert store.claim_execution(child_id, WORKER, lease_seconds=60, now=now)
        later = now + timedelta(seconds=1)
        results = store.commit(
            [
                Checkpoint(execution_id=parent.execution_id, release=True, release_due_at=None),
                Checkpoint(
                    execution_id=child_id,
                    finish=Finish(status="SUCCEEDED", stop_date=later, output="1"),
                ),
            ],
            worker_id=WORKER,
            now=later,
        )
        assert results == [CommitResult.OK, CommitResult.OK]
        run = store.get_map_run(arn)
        assert (run.status, run.succeeded, run.running) == ("SUCCEEDED", 1, 0)
        queued, due_at = store.work_due_at(parent.execution_id)
        assert queued and due_at is not None and due_at <= later


def start_parent_with_run(
    engine: Engine, now: datetime, tolerated_failure_count: int | None = None
) -> tuple[str, str, list[str]]:
    """A parent leased by WORKER with a Map Run of 3 children, 1 running (MaxConcurrency 1)."""
    store = engine.store
    engine.create_state_machine_sync("parent", PARENT)
    child_machine = store.put_state_machine("parent/label", json_text(PARENT), "STANDARD")
    parent = engine.start_sync("parent", {})
    assert store.claim_execution(parent.execution_id, WORKER, lease_seconds=60, now=now)
    run_id = "00000000-0000-0000-0000-000000000002"
    arn = f"arn:aws:states:local:000000000000:mapRun:parent/label:{run_id}"
    children = [f"arn:aws:states:local:000000000000:execution:parent/label:c-{i}" for i in range(3)]
    store.create_map_run(
        map_run_id=run_id,
        arn=arn,
        execution_id=parent.execution_id,
        state_key="0",
        attempt=0,
        machine="parent/label",
        version=child_machine.version,
        queue=parent.queue,
        now=now,
        max_concurrency=1,
        tolerated_failure_percentage=None,
        tolerated_failure_count=tolerated_failure_count,
    )
    store.add_map_run_children(run_id, [(i, child, "1", 1) for i, child in enumerate(children)])
    assert store.start_map_run(run_id, now=now).running == 1
    return parent.execution_id, arn, children


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_a_parent_ending_unsuccessfully_aborts_its_runs_in_the_same_commit(
    db_url: str, status: str
) -> None:
    with Engine(db_url, worker=False) as engine:
        store = engine.store
        now = datetime.now(UTC)
        parent_id, arn, children = start_parent_with_run(engine, now)
        later = now + timedelta(seconds=1)
        # The parent's terminal commit, alone: nothing runs after it (as if
        # its worker were killed the moment it returned).
        results = store.commit(
            [
                Checkpoint(
                    execution_id=parent_id,
                    finish=Finish(status=status, stop_date=later, error="Boom"),
                )
            ],
            worker_id=WORKER,
            now=later,
        )
        assert results == [CommitResult.OK]
        run = store.get_map_run(arn)
        running = store.get_execution(children[0])
        queued, due_at = store.work_due_at(children[0])
        never_started = [child.status for child in store.map_run_children_page(run.map_run_id)]
        started = store.list_map_run_children(arn)
    assert (run.status, run.stop_date, run.pending, run.aborted) == ("ABORTED", later, 0, 2)
    # The running child is asked to stop and due, so a worker aborts it now.
    assert running.status == "RUNNING" and running.stop_requested
    assert queued and due_at is not None and due_at <= later
    # The pending ones never start.
    assert never_started == ["RUNNING", "ABORTED", "ABORTED"]
    assert started == [children[0]]


def end_child(engine: Engine, child: str, status: str, at: datetime) -> None:
    store = engine.store
    assert store.claim_execution(child, WORKER, lease_seconds=60, now=at)
    finish = Finish(status=status, stop_date=at, output="1" if status == "SUCCEEDED" else None)
    last = store.get_execution(child).last_event_id
    ended = Event(last + 1, last, "ExecutionSucceeded" if finish.output else "ExecutionFailed", at)
    results = store.commit(
        [Checkpoint(execution_id=child, events=[ended], finish=finish)], worker_id=WORKER, now=at
    )
    assert results == [CommitResult.OK]


def test_a_redriven_run_redrives_its_failed_children_in_place(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:
        store = engine.store
        now = datetime.now(UTC)
        _parent, arn, (first, second, third) = start_parent_with_run(
            engine, now, tolerated_failure_count=1
        )
        # 0 fails (tolerated), 1 fails (one too many): the run fails, 2 never starts.
        end_child(engine, first, "FAILED", now + timedelta(seconds=1))
        end_child(engine, second, "FAILED", now + timedelta(seconds=2))
        run = store.get_map_run(arn)
        assert (run.status, run.failed, run.aborted) == ("FAILED", 2, 1)
        later = now + timedelta(seconds=3)
        assert store.map_run_redrive_counts(run.map_run_id, now=later) == MapRunRedriveCounts()
        redriven = store.redrive_map_run(run.map_run_id, now=later)
        # In that one transaction: the run is RUNNING again and its first
        # failed child, the same execution, is redriven (MaxConcurrency 1).
        assert (redriven.status, redriven.redrive_count, redriven.redrive_date) == (
            "RUNNING",
            1,
            later,
        )
        assert (redriven.running, redriven.pending, redriven.failed) == (1, 2, 0)
        reopened = store.get_execution(first)
        assert (reopened.status, reopened.redrive_count) == ("RUNNING", 1)
        assert [e.type for e in engine.history_sync(first)][-2:] == [
            "ExecutionFailed",
            "ExecutionRedriven",
        ]
        assert store.work_due_at(first)[0]
        # The second waits for room: still FAILED, pending redrive; the third never ran.
        assert store.get_execution(second).status == "FAILED"
        described = engine.describe_map_run_sync(arn)
        assert described["executionCounts"]["pendingRedrive"] == 1
        assert described["itemCounts"]["pendingRedrive"] == 1
        assert described["redriveCount"] == 1
        # The first one's end makes room: the commit redrives the second in place.
        end_child(engine, first, "SUCCEEDED", now + timedelta(seconds=4))
        again = store.get_execution(second)
        assert (again.status, again.redrive_count) == ("RUNNING", 1)
        assert [e.type for e in engine.history_sync(second)] == [
            "ExecutionStarted",
            "ExecutionFailed",
            "ExecutionRedriven",
        ]
        end_child(engine, second, "SUCCEEDED", now + timedelta(seconds=5))
        # The third starts for the first time, under its own id.
        fresh = store.get_execution(third)
        assert (fresh.status, fresh.redrive_count) == ("RUNNING", 0)
        end_child(engine, third, "SUCCEEDED", now + timedelta(seconds=6))
        done = store.get_map_run(arn)
        assert (done.status, done.succeeded, done.failed, done.redrive_count) == (
            "SUCCEEDED",
            3,
            0,
            1,
        )
        assert store.list_map_run_children(arn) == [first, second, third]
        assert engine.describe_map_run_sync(arn)["executionCounts"]["pendingRedrive"] == 0


def test_children_past_their_redrive_window_stay_as_they_ended(db_url: str) -> None:
    """A child a redrive cannot reopen (AWS: NOT_REDRIVABLE) counts as failuresNotRedrivable."""
    with Engine(db_url, worker=False) as engine:
        store = engine.store
        now = datetime.now(UTC)
        _parent, arn, (first, second, _third) = start_parent_with_run(
            engine, now, tolerated_failure_count=1
        )
        end_child(engine, first, "FAILED", now)
        end_child(engine, second, "FAILED", now)
        run_id = store.get_map_run(arn).map_run_id
        too_late = now + timedelta(days=15)
        counts = store.map_run_redrive_counts(run_id, now=too_late)
        redriven = store.redrive_map_run(run_id, now=too_late)
        children = [child.status for child in store.map_run_children_page(run_id)]
        still = store.get_execution(first)
    assert (counts.failures_not_redrivable, counts.failures_not_redrivable_items) == (2, 2)
    # Both stay FAILED (two failures, one tolerated): the run fails again at once.
    assert (still.status, still.redrive_count) == ("FAILED", 0)
    assert (redriven.status, redriven.failed, redriven.redrive_count) == ("FAILED", 2, 1)
    assert children == ["FAILED", "FAILED", "ABORTED"]


def json_text(value: object) -> str:
    return json.dumps(value)
