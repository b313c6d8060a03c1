"""DescribeMapRun, ListMapRuns, UpdateMapRun and ListExecutions(mapRunArn) through boto3.

The server's own worker runs a Distributed Map whose children are
executions; boto3 reads the Map Run back in AWS's shapes, lists the
children by ``mapRunArn``, is refused an update of the ended run with
``ValidationException``, and gets ``ResourceNotFound`` for a Map Run that
does not exist.
"""

from __future__ import annotations

import json
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
