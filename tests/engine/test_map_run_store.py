"""The Map Run's commit hook at the store level: counting a child's end and waking its parent.

A worker's group commit may carry, in one transaction, the parent's
release (it suspended, having read its Map Run as still running) and the
end of the run's last child: the parent must come out of that commit due,
or it would wait forever (a lost wake-up). Both stores.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from engine import Engine
from engine.store import Checkpoint, CommitResult, Finish

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


def json_text(value: object) -> str:
    return json.dumps(value)
