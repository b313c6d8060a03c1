"""Versions and aliases through boto3 against `stepwise serve`, on both stores.

Publish, list and delete versions; create, describe, update, list and
delete aliases; start through a version ARN and an alias ARN and see both
in DescribeExecution and ListExecutions filtered by them, as AWS shows them.
"""

from __future__ import annotations

import json

import pytest

from tests.http.support import Server
from tests.http.test_api import ROLE, wait_for_end


def machine(label: str) -> str:
    return json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": label, "End": True}}}
    )


def test_versions_and_aliases_through_boto3(server: Server) -> None:
    client = server.client()
    created = client.create_state_machine(
        name="canary", definition=machine("v1"), roleArn=ROLE, publish=True
    )
    arn = created["stateMachineArn"]
    assert created["stateMachineVersionArn"] == f"{arn}:1"
    client.update_state_machine(stateMachineArn=arn, definition=machine("v2"))
    second = client.publish_state_machine_version(stateMachineArn=arn, description="two")
    assert second["stateMachineVersionArn"] == f"{arn}:2"
    # Publishing the same revision again answers the same version.
    again = client.publish_state_machine_version(stateMachineArn=arn)
    assert again["stateMachineVersionArn"] == f"{arn}:2"
    listed = client.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]
    assert [v["stateMachineVersionArn"] for v in listed] == [f"{arn}:2", f"{arn}:1"]
    described = client.describe_state_machine(stateMachineArn=f"{arn}:1")
    assert json.loads(described["definition"])["States"]["P"]["Result"] == "v1"

    alias_arn = client.create_state_machine_alias(
        name="prod",
        description="production",
        routingConfiguration=[
            {"stateMachineVersionArn": f"{arn}:1", "weight": 50},
            {"stateMachineVersionArn": f"{arn}:2", "weight": 50},
        ],
    )["stateMachineAliasArn"]
    assert alias_arn == f"{arn}:prod"
    alias = client.describe_state_machine_alias(stateMachineAliasArn=alias_arn)
    assert alias["name"] == "prod" and alias["description"] == "production"
    assert [r["weight"] for r in alias["routingConfiguration"]] == [50, 50]
    with pytest.raises(client.exceptions.ValidationException):
        client.create_state_machine_alias(
            name="bad",
            routingConfiguration=[{"stateMachineVersionArn": f"{arn}:1", "weight": 40}],
        )
    client.update_state_machine_alias(
        stateMachineAliasArn=alias_arn,
        routingConfiguration=[{"stateMachineVersionArn": f"{arn}:2", "weight": 100}],
    )
    aliases = client.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]
    assert [a["stateMachineAliasArn"] for a in aliases] == [alias_arn]

    through_alias = client.start_execution(stateMachineArn=alias_arn, name="a")["executionArn"]
    through_version = client.start_execution(stateMachineArn=f"{arn}:1", name="v")["executionArn"]
    plain = client.start_execution(stateMachineArn=arn, name="p")["executionArn"]
    by_alias = wait_for_end(client, through_alias)
    assert by_alias["stateMachineArn"] == arn
    assert by_alias["stateMachineAliasArn"] == alias_arn
    assert by_alias["stateMachineVersionArn"] == f"{arn}:2"
    assert json.loads(by_alias["output"]) == "v2"
    by_version = wait_for_end(client, through_version)
    assert by_version["stateMachineVersionArn"] == f"{arn}:1"
    assert "stateMachineAliasArn" not in by_version
    assert json.loads(by_version["output"]) == "v1"
    by_name = wait_for_end(client, plain)
    assert "stateMachineVersionArn" not in by_name and "stateMachineAliasArn" not in by_name
    only = client.list_executions(stateMachineArn=alias_arn)["executions"]
    assert [e["executionArn"] for e in only] == [through_alias]

    with pytest.raises(client.exceptions.ConflictException):
        client.delete_state_machine_version(stateMachineVersionArn=f"{arn}:2")
    client.delete_state_machine_alias(stateMachineAliasArn=alias_arn)
    client.delete_state_machine_version(stateMachineVersionArn=f"{arn}:2")
    listed = client.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]
    assert [v["stateMachineVersionArn"] for v in listed] == [f"{arn}:1"]
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.describe_state_machine_alias(stateMachineAliasArn=alias_arn)
