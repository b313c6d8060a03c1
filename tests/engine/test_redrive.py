"""Redrive on both stores through the embedding API: what reruns, what is refused, what is shown.

A failed execution is fixed and redriven: the steps that succeeded are not
run again (their handlers see each idempotency key once), the step that
failed runs again with its Retry counters restarted, and inside Parallel
and inline Map only the branches and iterations that failed or were aborted
run again. The history continues after ``ExecutionRedriven``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from activities import ActivityContext, ActivityError, Registry
from engine import Engine
from engine.errors import ExecutionNotRedrivable
from engine.store import ExecutionStatus


class Fixable:
    """Handlers that record every call by idempotency key; `broken` ones fail until fixed."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.by_state: Counter[str] = Counter()
        self.broken: set[str] = set()
        # Labels a broken handler waits for before failing, so siblings finish first.
        self.fail_after: set[str] = set()
        self.finished: set[str] = set()
        self.changed = threading.Condition()

    def registry(self) -> Registry:
        registry = Registry()

        def work(value: Any, context: ActivityContext) -> Any:
            self.calls[context.idempotency_key] += 1
            label = value["label"] if isinstance(value, dict) else str(value)
            self.by_state[label] += 1
            if label in self.broken:
                with self.changed:
                    self.changed.wait_for(lambda: self.fail_after <= self.finished, timeout=60)
                raise ActivityError("Broken", f"{label} is broken")
            with self.changed:
                self.finished.add(label)
                self.changed.notify_all()
            return {"done": label}

        registry.register("work", work)
        return registry


def task(label: str, **more: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "work",
        "Parameters": {"label": label},
        **more,
    }


CHAIN = {
    "StartAt": "Load",
    "States": {
        "Load": task("load", ResultPath="$.load", Next="Transform"),
        "Transform": task(
            "transform",
            ResultPath="$.transform",
            Retry=[
                {
                    "ErrorEquals": ["Broken"],
                    "MaxAttempts": 2,
                    "IntervalSeconds": 1,
                    "BackoffRate": 1,
                }
            ],
            Next="Report",
        ),
        "Report": {"Type": "Pass", "Result": "reported", "ResultPath": "$.report", "End": True},
    },
}


def test_redrive_reruns_only_the_failed_task_and_continues_the_history(db_url: str) -> None:
    handlers = Fixable()
    handlers.broken.add("transform")
    with Engine(db_url, registry=handlers.registry()) as engine:
        engine.create_state_machine_sync("Nightly", json.dumps(CHAIN))
        started = engine.start_sync("Nightly", {"day": 1}, name="load-1")
        failed = engine.wait_sync(started, timeout=60)
        assert failed.status == ExecutionStatus.FAILED
        assert failed.error == "Broken"
        assert handlers.by_state == {"load": 1, "transform": 3}  # 1 try + 2 retries

        handlers.broken.clear()  # the operator fixes the cause
        redriven = engine.redrive_sync(failed)
        assert redriven.status == ExecutionStatus.RUNNING
        assert redriven.redrive_count == 1
        assert redriven.redrive_date is not None
        done = engine.wait_sync(failed, timeout=60)

        assert done.status == ExecutionStatus.SUCCEEDED
        assert done.execution_id == failed.execution_id
        assert done.start_date == failed.start_date
        output = json.loads(done.output or "null")
        assert output["day"] == 1
        assert output["transform"] == {"done": "transform"}
        assert output["report"] == "reported"
        # Load succeeded before: not run again. Transform ran once more, as a first try.
        assert handlers.by_state == {"load": 1, "transform": 4}
        assert all(count == 1 for count in handlers.calls.values()), handlers.calls

        history = engine.history_sync(done)
        kinds = [event.type for event in history]
        redrive_at = kinds.index("ExecutionRedriven")
        assert kinds[redrive_at - 1] == "ExecutionFailed"
        assert history[redrive_at].details == {"redriveCount": 1}
        assert kinds[-1] == "ExecutionSucceeded"
        assert kinds.count("ExecutionStarted") == 1
        assert [e.event_id for e in history] == list(range(1, len(history) + 1))
        # The rerun's first event chains on ExecutionRedriven, as AWS's do.
        assert history[redrive_at + 1].previous_event_id == history[redrive_at].event_id
        after = kinds[redrive_at:]
        assert "TaskStateEntered" in after and after.count("TaskSucceeded") == 1
        assert engine.list_executions_sync(redrive_filter="REDRIVEN") == [done]
        assert engine.list_executions_sync(redrive_filter="NOT_REDRIVEN") == []


def test_redrive_refusals_carry_aws_reasons(db_url: str) -> None:
    handlers = Fixable()
    with Engine(db_url, registry=handlers.registry()) as engine:
        engine.create_state_machine_sync("Nightly", json.dumps(CHAIN))
        done = engine.wait_sync(engine.start_sync("Nightly", {}), timeout=60)
        assert done.status == ExecutionStatus.SUCCEEDED
        with pytest.raises(ExecutionNotRedrivable) as refused:
            engine.redrive_sync(done)
        assert str(refused.value) == "Execution is SUCCEEDED and cannot be redriven."
        assert refused.value.aws_code == "ExecutionNotRedrivable"
        assert refused.value.exit_code == 2
        assert engine.redrive_status_sync(done) == (
            "NOT_REDRIVABLE",
            "Execution is SUCCEEDED and cannot be redriven.",
        )

        handlers.broken.add("load")
        failed = engine.wait_sync(engine.start_sync("Nightly", {}), timeout=60)
        assert engine.redrive_status_sync(failed) == ("REDRIVABLE", None)

        # A deleted machine's executions are not redriven (nothing to run them under).
        engine.create_state_machine_sync("Gone", json.dumps(CHAIN))
        orphan = engine.wait_sync(engine.start_sync("Gone", {}), timeout=60)
        assert orphan.status == ExecutionStatus.FAILED
        engine.delete_state_machine_sync("Gone")
        reason = "State machine is deleted; its executions cannot be redriven."
        assert engine.redrive_status_sync(orphan) == ("NOT_REDRIVABLE", reason)
        with pytest.raises(ExecutionNotRedrivable, match="State machine is deleted"):
            engine.redrive_sync(orphan)
        assert engine.describe_sync(orphan).status == ExecutionStatus.FAILED
    # Out of the redrive window: AWS's reason.
    with (
        Engine(db_url, worker=False, redrive_window=timedelta(0)) as engine,
        pytest.raises(ExecutionNotRedrivable, match="redrivable period exceeded"),
    ):
        engine.redrive_sync(failed)


def test_racing_redrives_start_one_and_a_client_token_repeats_it(db_url: str) -> None:
    handlers = Fixable()
    handlers.broken.add("load")
    with Engine(db_url, registry=handlers.registry(), worker=False) as engine:
        engine.create_state_machine_sync("Nightly", json.dumps(CHAIN))
        failed = engine.run_sync(CHAIN, {}, machine_name="Once")
        assert failed.status == ExecutionStatus.FAILED
        first = engine.redrive_sync(failed, client_token="tok-1")
        again = engine.redrive_sync(failed, client_token="tok-1")
        assert (again.redrive_count, again.redrive_date) == (
            first.redrive_count,
            first.redrive_date,
        )
        with pytest.raises(ExecutionNotRedrivable, match="RUNNING and cannot be redriven"):
            engine.redrive_sync(failed, client_token="tok-2")
        with pytest.raises(ExecutionNotRedrivable, match="RUNNING"):
            engine.redrive_sync(failed)
        kinds = [e.type for e in engine.history_sync(failed)]
        assert kinds.count("ExecutionRedriven") == 1


FAN_OUT = {
    "StartAt": "Both",
    "States": {
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "A", "States": {"A": task("a", End=True)}},
                {
                    "StartAt": "B1",
                    "States": {"B1": task("b1", Next="B2"), "B2": task("b2", End=True)},
                },
            ],
            "ResultPath": "$.both",
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 1,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "One",
                "States": {"One": {**task("x"), "Parameters": {"label.$": "$"}, "End": True}},
            },
            "ResultPath": "$.each",
            "End": True,
        },
    },
}


def test_redrive_reruns_only_failed_branches_and_iterations(db_url: str) -> None:
    handlers = Fixable()
    handlers.broken.update({"b2", "item-2"})
    handlers.fail_after.add("a")
    items = ["item-1", "item-2", "item-3"]
    with Engine(db_url, registry=handlers.registry()) as engine:
        engine.create_state_machine_sync("Fan", json.dumps(FAN_OUT))
        failed = engine.wait_sync(engine.start_sync("Fan", {"items": items}), timeout=60)
        assert failed.status == ExecutionStatus.FAILED
        assert handlers.by_state == {"a": 1, "b1": 1, "b2": 1}

        handlers.broken.discard("b2")  # the Parallel can pass now; the Map still fails
        engine.redrive_sync(failed)
        failed = engine.wait_sync(failed, timeout=60)
        assert failed.status == ExecutionStatus.FAILED
        assert failed.redrive_count == 1
        # Branch A succeeded before: not run. Branch B reran, B1 replayed from its record.
        assert handlers.by_state["a"] == 1
        assert handlers.by_state["b1"] == 1
        assert handlers.by_state["b2"] == 2
        assert handlers.by_state["item-2"] == 1

        handlers.broken.clear()
        engine.redrive_sync(failed)
        done = engine.wait_sync(failed, timeout=60)
        assert done.status == ExecutionStatus.SUCCEEDED
        assert done.redrive_count == 2
        # Only the failed iteration reran; its siblings (succeeded, or aborted
        # after they succeeded) were not run again.
        assert handlers.by_state["item-2"] == 2
        assert handlers.by_state["item-1"] == 1
        assert handlers.by_state["item-3"] == 1
        assert handlers.by_state["a"] == 1 and handlers.by_state["b1"] == 1
        assert all(count == 1 for count in handlers.calls.values()), handlers.calls
        output = json.loads(done.output or "null")
        assert output["both"] == [{"done": "a"}, {"done": "b2"}]
        assert output["each"] == [{"done": item} for item in items]
        kinds = [e.type for e in engine.history_sync(done)]
        assert kinds.count("ExecutionRedriven") == 2
