"""`stepwise map-runs list|describe|update` and `stepwise list --map-run`, on both stores.

A Distributed Map run with `Engine.run` leaves a finished Map Run; the CLI
lists it under its parent, describes it in AWS's shape (counts of items and
of child executions), lists its children, refuses to update it now that it
has ended, and answers an unknown Map Run with one line and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from click.testing import CliRunner, Result

from engine import Engine
from engine.cli import cli
from tests.engine.processes import wait_until

DEFINITION = {
    "StartAt": "M",
    "States": {
        "M": {
            "Type": "Map",
            "Label": "squares",
            "MaxConcurrency": 2,
            "ToleratedFailureCount": 1,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "P",
                "States": {"P": {"Type": "Pass", "End": True}},
            },
            "ItemBatcher": {"MaxItemsPerBatch": 2},
            "End": True,
        }
    },
}


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def invoke_json(args: Sequence[str], code: int = 0) -> Any:
    result = invoke([*args, "-o", "json"])
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout)


def test_map_run_commands(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:
        record = engine.run_sync(DEFINITION, [1, 2, 3, 4, 5], name="parent")
    assert record.status == "SUCCEEDED", record.cause
    listed = invoke_json(["map-runs", "list", record.execution_id, "--db", db_url])
    (item,) = listed["mapRuns"]
    arn = item["mapRunArn"]
    assert ":mapRun:" in arn and "/squares:" in arn
    assert item["executionArn"] == record.execution_id
    assert item["stateMachineArn"].endswith("/squares")
    assert {"startDate", "stopDate"} <= set(item)

    described = invoke_json(["map-runs", "describe", arn, "--db", db_url])
    assert described["status"] == "SUCCEEDED"
    assert described["maxConcurrency"] == 2
    assert described["toleratedFailureCount"] == 1
    assert described["toleratedFailurePercentage"] == 0.0
    assert described["itemCounts"]["total"] == 5
    assert described["itemCounts"]["succeeded"] == 5
    assert described["executionCounts"]["total"] == 3  # batches of 2: 2 + 2 + 1
    assert described["executionCounts"]["succeeded"] == 3
    assert described["executionCounts"]["pending"] == 0
    text = invoke(["map-runs", "describe", arn, "--db", db_url])
    assert text.exit_code == 0
    assert "status: SUCCEEDED" in text.stdout

    children = invoke_json(["list", "--map-run", arn, "--db", db_url])["executions"]
    assert len(children) == 3
    assert all(child["status"] == "SUCCEEDED" for child in children)
    assert all("/squares:" in child["executionArn"] for child in children)
    # The plain listing shows the parent, not the Map Run's children.
    listed = invoke_json(["list", "--db", db_url])["executions"]
    assert [e["executionArn"] for e in listed] == [record.execution_id]

    refused = invoke(["map-runs", "update", arn, "--max-concurrency", "5", "--db", db_url])
    assert refused.exit_code == 2
    assert "CANNOT_UPDATE_COMPLETED_MAP_RUN" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_unknown_map_run_is_one_line_and_exit_2(sqlite_url: str) -> None:
    with Engine(sqlite_url, worker=False):
        pass
    bogus = "arn:aws:states:us-east-1:000000000000:mapRun:nope/x:123"
    for args in (
        ["map-runs", "describe", bogus],
        ["map-runs", "update", bogus, "--max-concurrency", "1"],
        ["list", "--map-run", bogus],
    ):
        result = invoke([*args, "--db", sqlite_url])
        assert result.exit_code == 2, result.stderr
        assert "Map Run Does Not Exist" in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_update_raises_the_concurrency_of_a_running_map_run(db_url: str) -> None:
    definition = json.loads(json.dumps(DEFINITION))
    state = definition["States"]["M"]
    state.pop("ItemBatcher")
    state["MaxConcurrency"] = 1
    state["ItemProcessor"]["States"]["P"] = {"Type": "Wait", "Seconds": 3600, "End": True}
    with Engine(db_url) as engine:
        engine.create_state_machine_sync("slow", definition)
        parent = engine.start_sync("slow", [1, 2, 3, 4])
        wait_until(lambda: engine.store.list_map_runs(parent.execution_id))
        (run,) = engine.store.list_map_runs(parent.execution_id)
        wait_until(lambda: engine.store.get_map_run(run.arn).running == 1)
        result = invoke(["map-runs", "update", run.arn, "--max-concurrency", "3", "--db", db_url])
        assert result.exit_code == 0, result.stderr
        # Two more children started at once; the fourth waits for a free slot.
        now = engine.store.get_map_run(run.arn)
        assert (now.max_concurrency, now.running, now.pending) == (3, 3, 1)
        described = invoke_json(["map-runs", "describe", run.arn, "--db", db_url])
        assert described["executionCounts"]["running"] == 3
        assert described["status"] == "RUNNING"
        engine.stop_sync(parent)
        assert engine.wait_sync(parent, timeout=60).status == "ABORTED"
