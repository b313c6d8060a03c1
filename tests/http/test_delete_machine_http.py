"""DeleteStateMachine through boto3 against `stepwise serve`, on both stores.

The machine turns DELETING, its versions and aliases go, a running
execution carries on while StartExecution answers StateMachineDeleting,
and once that execution ends the machine is gone. Deleting an unknown
machine succeeds, as on AWS.
"""

from __future__ import annotations

import json

import pytest

from tests.http.support import Server
from tests.http.test_api import ROLE, wait_for_end

WAITING = json.dumps(
    {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}
)


def test_delete_state_machine_through_boto3(server: Server) -> None:
    client = server.client()
    arn = client.create_state_machine(
        name="retiring", definition=WAITING, roleArn=ROLE, publish=True
    )["stateMachineArn"]
    client.create_state_machine_alias(
        name="live", routingConfiguration=[{"stateMachineVersionArn": f"{arn}:1", "weight": 100}]
    )
    running = client.start_execution(stateMachineArn=arn, name="in-flight")["executionArn"]

    client.delete_state_machine(stateMachineArn=arn)
    client.delete_state_machine(stateMachineArn=arn)  # again: no error
    client.delete_state_machine(stateMachineArn=arn.replace("retiring", "never-created"))
    with pytest.raises(client.exceptions.ValidationException):
        client.delete_state_machine(stateMachineArn=f"{arn}:1")
    assert client.describe_state_machine(stateMachineArn=arn)["status"] == "DELETING"
    with pytest.raises(client.exceptions.StateMachineDeleting):
        client.start_execution(stateMachineArn=arn)
    listed = client.list_state_machines()["stateMachines"]
    assert arn not in [m["stateMachineArn"] for m in listed]
    assert client.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"] == []
    aliases = client.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]
    assert aliases == []
    assert client.describe_execution(executionArn=running)["status"] == "RUNNING"

    client.stop_execution(executionArn=running)
    assert wait_for_end(client, running)["status"] == "ABORTED"
    with pytest.raises(client.exceptions.StateMachineDoesNotExist):
        client.describe_state_machine(stateMachineArn=arn)
    with pytest.raises(client.exceptions.StateMachineDoesNotExist):
        client.start_execution(stateMachineArn=arn)
    # The finished execution still shows the definition it ran.
    ran = client.describe_state_machine_for_execution(executionArn=running)
    assert json.loads(ran["definition"]) == json.loads(WAITING)
