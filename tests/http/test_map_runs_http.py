"""DescribeMapRun, ListMapRuns, UpdateMapRun and ListExecutions(mapRunArn) through boto3.

The server's own worker runs a Distributed Map whose children are
executions; boto3 reads the Map Run back in AWS's shapes, lists the
children by ``mapRunArn``, is refused an update of the ended run with
``ValidationException``, and gets ``ResourceNotFound`` for a Map Run that
does not exist.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.http.support import Server
from tests.http.test_api import ROLE, wait_for_end

DISTRIBUTED = {
    "StartAt": "M",
    "States": {
        "M": {
            "Type": "Map",
            "Label": "each",
            "MaxConcurrency": 2,
            "ToleratedFailurePercentage": 50,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "P",
                "States": {"P": {"Type": "Pass", "End": True}},
            },
            "End": True,
        }
    },
}


def _code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def test_map_run_operations(server: Server) -> None:
    client: Any = server.client()
    machine = client.create_state_machine(
        name="fanout", definition=json.dumps(DISTRIBUTED), roleArn=ROLE
    )["stateMachineArn"]
    execution = client.start_execution(stateMachineArn=machine, input="[1, 2, 3]")["executionArn"]
    described = wait_for_end(client, execution)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == [1, 2, 3]

    (run,) = client.list_map_runs(executionArn=execution)["mapRuns"]
    assert run["executionArn"] == execution
    assert run["stateMachineArn"] == machine + "/each"
    map_run_arn = run["mapRunArn"]
    assert map_run_arn.startswith(machine.replace(":stateMachine:", ":mapRun:") + "/each:")

    answer = client.describe_map_run(mapRunArn=map_run_arn)
    assert answer["status"] == "SUCCEEDED"
    assert answer["executionArn"] == execution
    assert answer["maxConcurrency"] == 2
    assert answer["toleratedFailurePercentage"] == 50.0
    assert answer["toleratedFailureCount"] == 0
    assert answer["itemCounts"]["succeeded"] == 3
    assert answer["executionCounts"]["total"] == 3
    assert answer["stopDate"] >= answer["startDate"]

    children = client.list_executions(mapRunArn=map_run_arn)["executions"]
    assert len(children) == 3
    assert {child["status"] for child in children} == {"SUCCEEDED"}
    assert all(child["stateMachineArn"] == machine + "/each" for child in children)
    assert all(child["mapRunArn"] == map_run_arn for child in children)
    child = client.describe_execution(executionArn=children[0]["executionArn"])
    assert child["status"] == "SUCCEEDED"
    assert child["stateMachineArn"] == machine + "/each"
    assert child["mapRunArn"] == map_run_arn
    assert "mapRunArn" not in client.describe_execution(executionArn=execution)

    with pytest.raises(ClientError) as refused:
        client.update_map_run(mapRunArn=map_run_arn, maxConcurrency=5)
    assert _code(refused.value) == "ValidationException"

    missing = map_run_arn.rsplit(":", 1)[0] + ":00000000-0000-0000-0000-000000000000"
    for call in (
        lambda: client.describe_map_run(mapRunArn=missing),
        lambda: client.update_map_run(mapRunArn=missing, maxConcurrency=1),
        lambda: client.list_executions(mapRunArn=missing),
    ):
        with pytest.raises(ClientError) as raised:
            call()
        assert _code(raised.value) == "ResourceNotFound"


def _activity_task(client: Any, activity: str) -> dict[str, Any]:
    """The next task of `activity` (polled until one is scheduled), its input parsed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task = client.get_activity_task(activityArn=activity, workerName="test")
        if task.get("taskToken"):
            return {"token": task["taskToken"], "input": json.loads(task["input"])}
    raise AssertionError(f"no task of {activity} within 60 s")


def test_children_waiting_for_a_redriven_run_are_pending_redrive(server: Server) -> None:
    """A redriven run's children beyond MaxConcurrency: PENDING_REDRIVE in DescribeExecution,
    listed by ListExecutions(mapRunArn, statusFilter=PENDING_REDRIVE), counted in
    ``pendingRedrive``, and RUNNING once their redrive starts. The children's work is an
    activity task the test answers, so each waits for the test and nothing races."""
    client: Any = server.client()
    activity = client.create_activity(name="pending-redrive-work")["activityArn"]
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "Label": "each",
                "MaxConcurrency": 1,
                "ToleratedFailureCount": 1,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Work",
                    "States": {"Work": {"Type": "Task", "Resource": activity, "End": True}},
                },
                "End": True,
            }
        },
    }
    machine = client.create_state_machine(
        name="redriven-fanout", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    items = [{"n": 0}, {"n": 1}]
    parent = client.start_execution(stateMachineArn=machine, input=json.dumps(items))
    for n in (0, 1):  # both fail: the second is one more than the run tolerates
        task = _activity_task(client, activity)
        assert task["input"] == {"n": n}
        client.send_task_failure(taskToken=task["token"], error="Work.Failed", cause="first try")
    assert wait_for_end(client, parent["executionArn"])["status"] == "FAILED"
    (run,) = client.list_map_runs(executionArn=parent["executionArn"])["mapRuns"]
    map_run = run["mapRunArn"]
    first, second = (
        c["executionArn"] for c in client.list_executions(mapRunArn=map_run)["executions"]
    )

    def statuses() -> list[str]:
        return [client.describe_execution(executionArn=c)["status"] for c in (first, second)]

    def pending() -> list[str]:
        listed = client.list_executions(mapRunArn=map_run, statusFilter="PENDING_REDRIVE")
        return [c["executionArn"] for c in listed["executions"]]

    assert statuses() == ["FAILED", "FAILED"] and pending() == []
    client.redrive_execution(executionArn=parent["executionArn"])
    task = _activity_task(client, activity)  # the first child's redrive runs its Task again
    assert task["input"] == {"n": 0}
    assert statuses() == ["RUNNING", "PENDING_REDRIVE"]
    assert pending() == [second]
    listed = client.list_executions(mapRunArn=map_run)["executions"]
    assert [c["status"] for c in listed] == ["RUNNING", "PENDING_REDRIVE"]
    described = client.describe_map_run(mapRunArn=map_run)
    assert described["executionCounts"]["pendingRedrive"] == 1
    assert described["itemCounts"]["pendingRedrive"] == 1
    client.send_task_success(taskToken=task["token"], output="{}")
    task = _activity_task(client, activity)  # room made: the second's redrive starts
    assert task["input"] == {"n": 1}
    assert statuses()[1] == "RUNNING" and pending() == []
    assert client.describe_map_run(mapRunArn=map_run)["executionCounts"]["pendingRedrive"] == 0
    client.send_task_success(taskToken=task["token"], output="{}")
    assert wait_for_end(client, parent["executionArn"])["status"] == "SUCCEEDED"
    assert statuses() == ["SUCCEEDED", "SUCCEEDED"]
