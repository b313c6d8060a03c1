"""RedriveExecution through boto3 against `stepwise serve`, on both stores.

A failed execution is redriven: the answer carries ``redriveDate``;
DescribeExecution and ListExecutions show ``redriveCount``/``redriveDate``
and ``redriveStatus`` as AWS does, the history continues after
``ExecutionRedriven``, and a SUCCEEDED execution is refused with AWS's reason.
"""

from __future__ import annotations

import json

from tests.http.support import Server
from tests.http.test_api import ROLE, wait_for_end, wait_until

FAILS = {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Bad", "Cause": "no"}}}
PASSES = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def test_redrive_execution_and_what_describe_and_list_show(server: Server) -> None:
    client = server.client()
    arn = client.create_state_machine(name="redriven", definition=json.dumps(FAILS), roleArn=ROLE)[
        "stateMachineArn"
    ]
    execution = client.start_execution(stateMachineArn=arn, input='{"n": 1}')["executionArn"]
    failed = wait_for_end(client, execution)
    assert failed["status"] == "FAILED"
    assert failed["redriveStatus"] == "REDRIVABLE"
    assert failed["redriveCount"] == 0
    assert "redriveStatusReason" not in failed

    answer = client.redrive_execution(executionArn=execution, clientToken="token-1")
    assert answer["redriveDate"]
    wait_until(lambda: client.describe_execution(executionArn=execution)["redriveCount"] == 1)
    again = wait_for_end(client, execution)
    assert again["status"] == "FAILED"  # a Fail state fails again, as on AWS
    assert again["redriveCount"] == 1
    assert again["redriveDate"] == answer["redriveDate"]
    assert json.loads(again["input"]) == {"n": 1}

    events = client.get_execution_history(executionArn=execution)["events"]
    kinds = [event["type"] for event in events]
    redriven = events[kinds.index("ExecutionRedriven")]
    assert redriven["executionRedrivenEventDetails"] == {"redriveCount": 1}
    assert kinds[-1] == "ExecutionFailed"

    listed = client.list_executions(stateMachineArn=arn, redriveFilter="REDRIVEN")["executions"]
    assert [(e["executionArn"], e["redriveCount"]) for e in listed] == [(execution, 1)]
    assert (
        client.list_executions(stateMachineArn=arn, redriveFilter="NOT_REDRIVEN")["executions"]
        == []
    )

    ok_arn = client.create_state_machine(
        name="succeeds", definition=json.dumps(PASSES), roleArn=ROLE
    )["stateMachineArn"]
    done = client.start_execution(stateMachineArn=ok_arn)["executionArn"]
    described = wait_for_end(client, done)
    assert described["redriveStatus"] == "NOT_REDRIVABLE"
    assert described["redriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven."
    try:
        client.redrive_execution(executionArn=done)
    except client.exceptions.ExecutionNotRedrivable as refused:
        message = refused.response["Error"]["Message"]
    assert message == "Execution is SUCCEEDED and cannot be redriven."
