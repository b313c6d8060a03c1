"""Distributed Map for real: a Map Run whose children are executions any worker may claim.

Two worker processes (tests/engine/map_worker.py) share one database —
SQLite and PostgreSQL alike — and handle the batches of a CSV on local S3
storage: every row exactly once, the result files as AWS writes them, the
parent's history AWS's, the Map Run's counts right, MaxConcurrency never
exceeded (by the store's own counts at the moment each child runs), and
the tolerated failures deciding the outcome. Stopping the parent aborts
the Map Run and its children.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.errors import MapRunUpdateRefused
from engine.s3local import S3_ROOT_ENV
from tests.engine.processes import ROOT, wait_until


def spawn(url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # Two executions at a time each: no one process can take every child.
        [sys.executable, "-m", "tests.engine.map_worker", url, str(log), "2"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def csv_map(**fields: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Map",
        "Label": "rows",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Handle",
            "States": {"Handle": {"Type": "Task", "Resource": "rows", "End": True}},
        },
        "ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "Parameters": {"Bucket": "data", "Key": "rows.csv"},
            "ReaderConfig": {"InputType": "CSV"},
        },
        "ItemBatcher": {"MaxItemsPerBatch": 3},
        "End": True,
        **fields,
    }
    return {"StartAt": "Rows", "States": {"Rows": state}}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "s3"
    (root / "data").mkdir(parents=True)
    monkeypatch.setenv(S3_ROOT_ENV, str(root))  # inherited by the worker processes
    return root


def write_csv(root: Path, rows: int, failing: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    lines = ["id,fail"] + [f"{i},{'yes' if i in failing else 'no'}" for i in range(rows)]
    (root / "data" / "rows.csv").write_text("\n".join(lines) + "\n")


def run_with_workers(
    url: str, tmp_path: Path, definition: dict[str, Any]
) -> tuple[Any, list[dict[str, Any]], Engine]:
    log = tmp_path / "calls.jsonl"
    engine = Engine(url, worker=False)
    engine.__enter__()
    engine.create_state_machine_sync("csv", definition)
    workers = [spawn(url, log), spawn(url, log)]
    try:
        wait_until(lambda: log.exists() and log.read_text().count('"ready"') == 2)
        started = engine.start_sync("csv", {})
        done = engine.wait_sync(started, timeout=120)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    calls = [line for line in lines if "ready" not in line]
    return done, calls, engine


def test_csv_batches_run_as_children_on_two_workers(
    db_url: str, root: Path, tmp_path: Path
) -> None:
    write_csv(root, 40)
    definition = csv_map(
        MaxConcurrency=3,
        ResultWriter={
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "data", "Prefix": "out"},
        },
    )
    done, calls, engine = run_with_workers(db_url, tmp_path, definition)
    try:
        assert done.status == "SUCCEEDED", done.cause
        # Every row handled exactly once, by children spread over both processes.
        ids = sorted(int(i) for call in calls for i in call["ids"])
        assert ids == list(range(40))
        assert len({call["pid"] for call in calls}) == 2
        assert len({call["execution"] for call in calls}) == 14  # 13 batches of 3, one of 1
        # MaxConcurrency 3, by the store's counts while each child ran.
        assert max(call["running"] for call in calls) <= 3
        assert max(call["live"] for call in calls) <= 3
        # Children are executions of the hidden machine csv/rows.
        assert all(":execution:csv/rows:" in call["execution"] for call in calls)

        history = [event.type for event in engine.history_sync(done)]
        assert history == [
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapRunStarted",
            "MapRunSucceeded",
            "MapStateSucceeded",
            "MapStateExited",
            "ExecutionSucceeded",
        ]
        output = json.loads(done.output or "")
        (run,) = engine.store.list_map_runs(done.execution_id)
        assert output["MapRunArn"] == run.arn
        assert ":mapRun:csv/rows:" in run.arn
        assert (run.status, run.total, run.succeeded, run.pending, run.running) == (
            "SUCCEEDED",
            14,
            14,
            0,
            0,
        )
        assert engine.store.map_run_item_counts(run.map_run_id) == {"SUCCEEDED": 40}
        manifest = json.loads((root / "data" / output["ResultWriterDetails"]["Key"]).read_text())
        assert manifest["MapRunArn"] == run.arn
        (succeeded,) = manifest["ResultFiles"]["SUCCEEDED"]
        records = json.loads((root / "data" / succeeded["Key"]).read_text())
        # In item order: the first batch holds rows 0, 1, 2.
        assert [json.loads(r["Output"])["sum"] for r in records][:2] == [3, 12]
        assert sum(json.loads(r["Output"])["sum"] for r in records) == sum(range(40))
        assert all(r["Status"] == "SUCCEEDED" for r in records)
    finally:
        engine.__exit__(None, None, None)


def processor_map(**fields: Any) -> dict[str, Any]:
    """A Distributed Map over the input's array whose children fail on {"fail": true}."""
    state: dict[str, Any] = {
        "Type": "Map",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Check",
            "States": {
                "Check": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Boom"}],
                    "Default": "Ok",
                },
                "Boom": {"Type": "Fail", "Error": "Row.Bad", "Cause": "bad row"},
                "Ok": {"Type": "Pass", "End": True},
            },
        },
        "End": True,
        **fields,
    }
    return {"StartAt": "M", "States": {"M": state}}


ITEMS = [{"fail": i in (1, 4)} for i in range(10)]  # 2 failures in 10: 20 %


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        ({"ToleratedFailureCount": 2}, "SUCCEEDED"),
        ({"ToleratedFailureCount": 1}, "FAILED"),
        ({"ToleratedFailurePercentage": 20}, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 19.5}, "FAILED"),
        ({}, "FAILED"),
    ],
)
def test_tolerated_failures_decide_the_outcome(
    sqlite_url: str, tolerance: dict[str, Any], status: str
) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(processor_map(MaxConcurrency=1, **tolerance), ITEMS)
        history = engine.history_sync(record)
        (run,) = engine.store.list_map_runs(record.execution_id)
    types = [event.type for event in history]
    assert record.status == status
    if status == "SUCCEEDED":
        output = json.loads(record.output or "")
        assert output[1] == {"Error": "Row.Bad", "Cause": "bad row"}
        assert output[0] == {"fail": False}
        assert "MapRunSucceeded" in types
        assert (run.succeeded, run.failed) == (8, 2)
        return
    assert record.error == "States.ExceedToleratedFailureThreshold"
    failed = next(event for event in history if event.type == "MapRunFailed")
    assert failed.details == {
        "error": "States.ExceedToleratedFailureThreshold",
        "cause": "The specified tolerated failure threshold was exceeded",
    }
    assert types[-3:] == ["MapRunFailed", "MapStateFailed", "ExecutionFailed"]
    # One at a time: the run failed at the failure that crossed the line and
    # the rest never started.
    assert run.status == "FAILED"
    assert run.aborted == 10 - run.succeeded - run.failed
    assert run.aborted > 0


def test_max_concurrency_bounds_the_running_children(
    postgres_url: str, root: Path, tmp_path: Path
) -> None:
    write_csv(root, 30)
    definition = csv_map(MaxConcurrency=2, ItemBatcher={"MaxItemsPerBatch": 1})
    done, calls, engine = run_with_workers(postgres_url, tmp_path, definition)
    try:
        assert done.status == "SUCCEEDED", done.cause
        assert len(calls) == 30
        assert max(call["running"] for call in calls) <= 2
        assert max(call["live"] for call in calls) <= 2
    finally:
        engine.__exit__(None, None, None)


def test_stop_aborts_the_map_run_and_its_children(db_url: str) -> None:
    definition = processor_map(MaxConcurrency=2)
    waiting = definition["States"]["M"]["ItemProcessor"]["States"]
    waiting["Ok"] = {"Type": "Wait", "Seconds": 3600, "End": True}
    with Engine(db_url) as engine:
        engine.create_state_machine_sync("waits", definition)
        parent = engine.start_sync("waits", [{"fail": False}] * 5)
        wait_until(lambda: engine.store.list_map_runs(parent.execution_id))
        (run,) = engine.store.list_map_runs(parent.execution_id)
        wait_until(lambda: engine.store.get_map_run(run.arn).running == 2)
        children = engine.store.list_map_run_children(run.arn)
        assert len(children) == 2
        engine.stop_sync(parent)
        assert engine.wait_sync(parent, timeout=60).status == "ABORTED"
        for child in children:
            assert engine.wait_sync(child, timeout=60).status == "ABORTED"
        wait_until(lambda: engine.store.get_map_run(run.arn).running == 0)
        ended = engine.store.get_map_run(run.arn)
    assert (ended.status, ended.aborted, ended.pending, ended.succeeded) == ("ABORTED", 5, 0, 0)


def test_redriving_the_parent_reruns_only_children_that_did_not_succeed(db_url: str) -> None:
    from activities import Registry

    calls: list[int] = []
    failing = {"on": True}

    def handle(value: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(value["n"])
        if failing["on"] and value["n"] == 1:
            raise RuntimeError("not yet")
        return value

    registry = Registry()
    registry.register("handle", handle)
    definition = processor_map(MaxConcurrency=1)
    definition["States"]["M"]["ItemProcessor"]["States"] = {
        "H": {"Type": "Task", "Resource": "handle", "End": True}
    }
    definition["States"]["M"]["ItemProcessor"]["StartAt"] = "H"
    items = [{"n": n} for n in range(5)]
    with Engine(db_url, worker=False, registry=registry) as engine:
        failed = engine.run_sync(definition, items)
        assert failed.status == "FAILED"
        assert failed.error == "States.ExceedToleratedFailureThreshold"
        # One at a time: 0 succeeded, 1 failed, and 2-4 never started.
        assert calls == [0, 1]
        (run,) = engine.store.list_map_runs(failed.execution_id)
        assert (run.succeeded, run.failed, run.aborted) == (1, 1, 3)
        first, second = engine.list_map_run_executions_sync(run.arn)
        failing["on"] = False
        engine.redrive_sync(failed)
        done = engine.resume_sync(failed)
        history = [event.type for event in engine.history_sync(done)]
        again = engine.store.get_map_run(run.arn)
        described = engine.describe_map_run_sync(run.arn)
        children = engine.list_map_run_executions_sync(run.arn)
        histories = [[e.type for e in engine.history_sync(child)] for child in children]
    assert done.status == "SUCCEEDED", done.cause
    assert json.loads(done.output or "") == items
    # Only what did not succeed ran again, in the same Map Run.
    assert calls == [0, 1, 1, 2, 3, 4]
    assert history.count("MapRunStarted") == 1
    assert history.count("MapRunRedriven") == 1
    assert (again.status, again.succeeded, again.redrive_count) == ("SUCCEEDED", 5, 1)
    assert again.redrive_date is not None
    assert (described["redriveCount"], described["executionCounts"]["succeeded"]) == (1, 5)
    assert "redriveDate" in described
    # As AWS: the failed child is redriven in place (same ARN, ExecutionRedriven,
    # from its failed step); the one that succeeded is untouched; those that
    # never started start once.
    assert [child.execution_id for child in children[:2]] == [
        first.execution_id,
        second.execution_id,
    ]
    assert [child.status for child in children] == ["SUCCEEDED"] * 5
    assert [child.redrive_count for child in children] == [0, 1, 0, 0, 0]
    assert children[1].redrive_date is not None
    assert histories[0].count("ExecutionRedriven") == 0
    assert histories[1] == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "ExecutionFailed",
        "ExecutionRedriven",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    assert all("ExecutionRedriven" not in h for h in histories[2:])


def test_a_failed_run_still_writes_its_result_files(sqlite_url: str, root: Path) -> None:
    writer = {
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": "data", "Prefix": "out"},
    }
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(processor_map(MaxConcurrency=1, ResultWriter=writer), ITEMS)
        (run,) = engine.store.list_map_runs(record.execution_id)
    assert record.error == "States.ExceedToleratedFailureThreshold"
    folder = root / "data" / "out" / run.map_run_id
    manifest = json.loads((folder / "manifest.json").read_text())
    files = manifest["ResultFiles"]
    assert [len(files[s]) for s in ("SUCCEEDED", "FAILED", "PENDING")] == [1, 1, 1]
    succeeded = json.loads((root / "data" / files["SUCCEEDED"][0]["Key"]).read_text())
    failed = json.loads((root / "data" / files["FAILED"][0]["Key"]).read_text())
    pending = json.loads((root / "data" / files["PENDING"][0]["Key"]).read_text())
    # One at a time: item 0 succeeded, item 1 failed, items 2-9 never ran.
    assert len(succeeded) == 1 and len(failed) == 1 and len(pending) == 8
    assert failed[0]["Error"] == "Row.Bad"
    assert json.loads(pending[0]["Input"]) == {"fail": False}


def test_map_runs_from_plain_code(sqlite_url: str) -> None:
    """The embedding API's _sync twins: list, describe, list children, update refused once ended."""
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(processor_map(MaxConcurrency=1, ToleratedFailureCount=2), ITEMS)
        (run,) = engine.list_map_runs_sync(record)
        described = engine.describe_map_run_sync(run.arn)
        children = engine.list_map_run_executions_sync(run.arn)
        with pytest.raises(MapRunUpdateRefused):
            engine.update_map_run_sync(run.arn, max_concurrency=5)
    assert record.status == "SUCCEEDED"
    assert described["executionCounts"]["succeeded"] == 8
    assert described["executionCounts"]["failed"] == 2
    assert len(children) == 10
    assert {child.status for child in children} == {"SUCCEEDED", "FAILED"}


SLOW = {
    "TimeoutSeconds": 2,
    "StartAt": "M",
    "States": {
        "M": {
            "Type": "Map",
            "Label": "slow",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Nap",
                "States": {"Nap": {"Type": "Wait", "Seconds": 3600, "End": True}},
            },
            "End": True,
        }
    },
}


def all_aborted(engine: Engine, arn: str, count: int) -> bool:
    children = engine.list_map_run_executions_sync(arn)
    return len(children) == count and {c.status for c in children} == {"ABORTED"}


def test_a_parent_that_times_out_aborts_its_map_run_and_children(db_url: str) -> None:
    """The parent's TimeoutSeconds ends it; its Map Run and waiting children end with it."""
    with Engine(db_url) as engine:
        engine.create_state_machine_sync("slow", json.dumps(SLOW))
        parent = engine.wait_sync(engine.start_sync("slow", [1, 2, 3]), timeout=120)
        (run,) = engine.list_map_runs_sync(parent)
        wait_until(lambda: all_aborted(engine, run.arn, 3), timeout=120)
        described = engine.describe_map_run_sync(run.arn)
    assert parent.status == "TIMED_OUT"
    assert described["status"] == "ABORTED"
    assert described["executionCounts"]["running"] == 0


def test_workers_killed_as_the_parent_times_out_leave_no_run_going(
    db_url: str, tmp_path: Path
) -> None:
    """Two worker processes, SIGKILLed the moment the parent is seen TIMED_OUT.

    The run ended in the parent's terminal commit: at that moment it is
    already ABORTED and every running child has a stop request, with no
    process left to do anything more. New workers then abort the children.
    """
    log = tmp_path / "calls.jsonl"
    with Engine(db_url, worker=False) as engine:
        store = engine.store
        engine.create_state_machine_sync("slow", json.dumps(SLOW))
        workers = [spawn(db_url, log), spawn(db_url, log)]
        try:
            wait_until(lambda: log.exists() and log.read_text().count('"ready"') == 2)
            parent = engine.start_sync("slow", [1, 2, 3])
            wait_until(
                lambda: store.get_execution(parent.execution_id).status != "RUNNING", timeout=120
            )
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
        ended = store.get_execution(parent.execution_id)
        (run,) = store.list_map_runs(parent.execution_id)
        children = [store.get_execution(child) for child in store.list_map_run_children(run.arn)]
        assert ended.status == "TIMED_OUT"
        assert run.status == "ABORTED"
        assert all(c.stop_requested for c in children if c.status == "RUNNING")
        workers = [spawn(db_url, log), spawn(db_url, log)]
        try:
            wait_until(lambda: all_aborted(engine, run.arn, 3), timeout=120)
            described = engine.describe_map_run_sync(run.arn)
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
    assert (described["status"], described["executionCounts"]["aborted"]) == ("ABORTED", 3)


def test_a_child_its_redriven_run_holds_pending_is_not_redriven_directly(db_url: str) -> None:
    """RedriveExecution of a child the run will reopen itself is refused: redriven directly
    too, it would be reopened a second time when the run releases it, and its recorded
    Task would run again."""
    import threading

    from activities import Registry
    from engine.errors import ExecutionNotRedrivable

    calls: list[tuple[int, str]] = []
    phase = {"second": False}
    gate = threading.Event()

    def handle(value: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append((value["n"], context.idempotency_key))
        if not phase["second"] and value["n"] in (0, 1):
            raise RuntimeError("not yet")
        if phase["second"] and value["n"] == 0:
            gate.wait(60)
        return value

    registry = Registry()
    registry.register("handle", handle)
    definition = processor_map(MaxConcurrency=1, ToleratedFailureCount=1)
    definition["States"]["M"]["ItemProcessor"]["States"] = {
        "H": {"Type": "Task", "Resource": "handle", "End": True}
    }
    definition["States"]["M"]["ItemProcessor"]["StartAt"] = "H"
    items = [{"n": n} for n in range(3)]
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("dm", definition)
        parent = engine.start_sync("dm", items)
        failed = engine.wait_sync(parent, timeout=60)
        assert failed.status == "FAILED"
        (run,) = engine.store.list_map_runs(failed.execution_id)
        phase["second"] = True
        try:
            engine.redrive_sync(failed)
            # Child 0 runs again (held by the gate); child 1 waits PENDING in the run.
            wait_until(lambda: sum(1 for n, _ in calls if n == 0) == 2)
            child = next(
                c
                for c in engine.list_map_run_executions_sync(run.arn)
                if c.status == "PENDING_REDRIVE"
            )
            with pytest.raises(ExecutionNotRedrivable, match="pending redrive by its Map Run"):
                engine.redrive_sync(child)
        finally:
            gate.set()
        done = engine.wait_sync(parent, timeout=60)
        reopened = engine.describe_sync(child)
    assert done.status == "SUCCEEDED", done.cause
    assert (reopened.status, reopened.redrive_count) == ("SUCCEEDED", 1)
    # Item 1 ran once in the first run and once in the run's redrive: never a third time.
    assert [n for n, _ in calls].count(1) == 2


def test_children_waiting_for_their_redriven_run_show_pending_redrive(db_url: str) -> None:
    """As AWS: a redriven run's children beyond MaxConcurrency are PENDING_REDRIVE (described,
    listed, counted) until the run reopens each, when it is RUNNING; waiting on one waits
    through it. Each redriven child blocks on a gate the test opens, so nothing races."""
    import threading

    from activities import Registry

    calls: list[int] = []
    phase = {"second": False}
    gates = {n: threading.Event() for n in range(3)}

    def handle(value: dict[str, Any]) -> dict[str, Any]:
        calls.append(value["n"])
        if not phase["second"]:
            raise RuntimeError("not yet")
        gates[value["n"]].wait(60)
        return value

    registry = Registry()
    registry.register("handle", handle)
    definition = processor_map(MaxConcurrency=1, ToleratedFailureCount=2)
    definition["States"]["M"]["ItemProcessor"]["StartAt"] = "H"
    definition["States"]["M"]["ItemProcessor"]["States"] = {
        "H": {"Type": "Task", "Resource": "handle", "End": True}
    }
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("dm", definition)
        parent = engine.start_sync("dm", [{"n": n} for n in range(3)])
        failed = engine.wait_sync(parent, timeout=60)
        assert failed.status == "FAILED"
        (run,) = engine.store.list_map_runs(failed.execution_id)
        first, second, third = (
            c.execution_id for c in engine.list_map_run_executions_sync(run.arn)
        )
        assert [engine.describe_sync(c).status for c in (first, second, third)] == ["FAILED"] * 3
        phase["second"] = True
        try:
            engine.redrive_sync(failed)
            wait_until(lambda: calls.count(0) == 2)  # the first runs again, held by its gate
            assert [engine.describe_sync(c).status for c in (first, second, third)] == [
                "RUNNING",
                "PENDING_REDRIVE",
                "PENDING_REDRIVE",
            ]
            listed = engine.list_map_run_executions_sync(run.arn)
            assert [c.status for c in listed] == ["RUNNING", "PENDING_REDRIVE", "PENDING_REDRIVE"]
            counts = engine.describe_map_run_sync(run.arn)["executionCounts"]
            assert (counts["pendingRedrive"], counts["running"]) == (2, 1)
            # The first one's end makes room: the second's redrive starts, the third waits on.
            gates[0].set()
            wait_until(lambda: calls.count(1) == 2)
            assert [engine.describe_sync(c).status for c in (second, third)] == [
                "RUNNING",
                "PENDING_REDRIVE",
            ]
            assert engine.describe_map_run_sync(run.arn)["executionCounts"]["pendingRedrive"] == 1
        finally:
            for gate in gates.values():
                gate.set()
        # A wait on a child pending redrive lasts until its redrive has ended.
        assert engine.wait_sync(third, timeout=60).status == "SUCCEEDED"
        done = engine.wait_sync(parent, timeout=60)
        assert done.status == "SUCCEEDED", done.cause
        assert engine.describe_map_run_sync(run.arn)["executionCounts"]["pendingRedrive"] == 0
        assert [c.redrive_count for c in engine.list_map_run_executions_sync(run.arn)] == [1, 1, 1]
