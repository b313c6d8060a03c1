"""The Step Functions API through boto3, against a real `stepwise serve` on both stores.

A script written for AWS Step Functions with boto3 must run unchanged:
state machines are created, described, listed and updated; executions
started, described, listed, stopped and their histories paged with
botocore's own paginator; callbacks and activities answered; and every
error arrives as botocore's modelled exception class.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.http.conftest import read_tokens
from tests.http.support import Server

ROLE = "arn:aws:iam::000000000000:role/test"
PASS = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": {"x": 1}, "End": True}}}
STEPS = {
    "StartAt": "S0",
    "States": {
        **{f"S{i}": {"Type": "Pass", "Next": f"S{i + 1}"} for i in range(9)},
        "S9": {"Type": "Pass", "End": True},
    },
}
WAIT = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}
CALLBACK = {
    "StartAt": "Ask",
    "States": {
        "Ask": {
            "Type": "Task",
            "Resource": "notify.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token"},
            "ResultPath": "$.answer",
            "End": True,
        }
    },
}


def _machine(client: Any, name: str, definition: dict[str, Any], **extra: Any) -> str:
    answer = client.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=ROLE, **extra
    )
    return str(answer["stateMachineArn"])


def wait_for_end(client: Any, arn: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = client.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return dict(described)
        time.sleep(0.05)
    raise AssertionError(f"{arn} still running after {timeout} s")


def wait_until(predicate: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def test_state_machines_create_describe_list_update(server: Server) -> None:
    client = server.client()
    arn = _machine(client, "orders", PASS)
    assert arn == "arn:aws:states:us-east-1:000000000000:stateMachine:orders"
    # The same definition again is the same machine; another one is refused, as on AWS.
    assert _machine(client, "orders", PASS) == arn
    with pytest.raises(client.exceptions.StateMachineAlreadyExists):
        _machine(client, "orders", STEPS)
    described = client.describe_state_machine(stateMachineArn=arn)
    assert described["name"] == "orders"
    assert described["type"] == "STANDARD"
    assert described["status"] == "ACTIVE"
    assert json.loads(described["definition"]) == PASS
    updated = client.update_state_machine(
        stateMachineArn=arn, definition=json.dumps(STEPS), publish=True
    )
    # The first published version (the create did not publish), as on AWS.
    assert updated["stateMachineVersionArn"] == f"{arn}:1"
    assert json.loads(client.describe_state_machine(stateMachineArn=arn)["definition"]) == STEPS
    first = client.describe_state_machine(stateMachineArn=f"{arn}:1")
    assert json.loads(first["definition"]) == STEPS
    assert first["stateMachineArn"] == f"{arn}:1"
    for index in range(3):
        _machine(client, f"listed-{index}", PASS)
    paginator = client.get_paginator("list_state_machines")
    names = [
        item["name"]
        for page in paginator.paginate(PaginationConfig={"PageSize": 2})
        for item in page["stateMachines"]
    ]
    assert {"orders", "listed-0", "listed-1", "listed-2"} <= set(names)
    assert len(names) == len(set(names))


def test_validate_state_machine_definition(server: Server) -> None:
    client = server.client()
    assert client.validate_state_machine_definition(definition=json.dumps(PASS))["result"] == "OK"
    broken = {"StartAt": "Missing", "States": {"A": {"Type": "Pass", "End": True}}}
    answer = client.validate_state_machine_definition(definition=json.dumps(broken))
    assert answer["result"] == "FAIL"
    assert answer["diagnostics"] and all(d["severity"] == "ERROR" for d in answer["diagnostics"])
    assert client.validate_state_machine_definition(definition="{not json")["result"] == "FAIL"


def test_execution_runs_and_history_pages_through_paginator(server: Server) -> None:
    client = server.client()
    arn = _machine(client, "steps", STEPS)
    started = client.start_execution(stateMachineArn=arn, name="first", input='{"n": 1}')
    assert started["executionArn"] == (
        "arn:aws:states:us-east-1:000000000000:execution:steps:first"
    )
    described = wait_for_end(client, started["executionArn"])
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"n": 1}
    assert json.loads(described["input"]) == {"n": 1}
    assert described["stateMachineArn"] == arn
    assert described["stopDate"] >= described["startDate"]

    whole = client.get_execution_history(executionArn=started["executionArn"], maxResults=1000)
    assert "nextToken" not in whole
    events = whole["events"]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "ExecutionStarted"
    assert events[-1]["type"] == "ExecutionSucceeded"
    paginator = client.get_paginator("get_execution_history")
    pages = list(
        paginator.paginate(executionArn=started["executionArn"], PaginationConfig={"PageSize": 7})
    )
    assert [len(p["events"]) for p in pages[:-1]] == [7] * (len(pages) - 1)
    assert [e for p in pages for e in p["events"]] == events
    newest_first = client.get_execution_history(
        executionArn=started["executionArn"], reverseOrder=True, maxResults=3
    )
    assert [e["id"] for e in newest_first["events"]] == [
        len(events),
        len(events) - 1,
        len(events) - 2,
    ]
    bare = client.get_execution_history(
        executionArn=started["executionArn"], includeExecutionData=False
    )["events"]
    assert "input" not in bare[0]["executionStartedEventDetails"]
    # The AWS-side ARN forms and the engine's own `local` form name the same execution.
    local = started["executionArn"].replace("us-east-1", "local")
    assert client.describe_execution(executionArn=local)["name"] == "first"
    # StartExecution is idempotent on (name, input) only while the execution runs.
    with pytest.raises(client.exceptions.ExecutionAlreadyExists):
        client.start_execution(stateMachineArn=arn, name="first", input='{"n": 1}')


def test_list_executions_filters_and_pages(server: Server) -> None:
    client = server.client()
    arn = _machine(client, "listing", PASS)
    waiting = _machine(client, "listing-wait", WAIT)
    done = [
        client.start_execution(stateMachineArn=arn, name=f"run-{i}")["executionArn"]
        for i in range(9)
    ]
    for execution in done:
        wait_for_end(client, execution)
    running = client.start_execution(stateMachineArn=waiting, name="sleeper")["executionArn"]
    paginator = client.get_paginator("list_executions")
    listed = [
        item["executionArn"]
        for page in paginator.paginate(stateMachineArn=arn, PaginationConfig={"PageSize": 4})
        for item in page["executions"]
    ]
    assert sorted(listed) == sorted(done)
    assert listed == list(reversed(done))  # newest first
    only_running = client.list_executions(stateMachineArn=waiting, statusFilter="RUNNING")
    assert [e["executionArn"] for e in only_running["executions"]] == [running]
    assert client.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"] == []
    assert client.list_executions(stateMachineArn=arn, redriveFilter="REDRIVEN")["executions"] == []

    stopped = client.stop_execution(executionArn=running, error="Halt", cause="test says stop")
    assert stopped["stopDate"]
    described = wait_for_end(client, running)
    assert (described["status"], described["error"], described["cause"]) == (
        "ABORTED",
        "Halt",
        "test says stop",
    )


def test_callback_completed_with_send_task_success(server: Server) -> None:
    client = server.client()
    arn = _machine(client, "callback", CALLBACK)
    before = len(read_tokens(server))
    execution = client.start_execution(stateMachineArn=arn, input='{"who": "ops"}')["executionArn"]
    token = wait_until(lambda: read_tokens(server)[before:])[0]
    client.send_task_heartbeat(taskToken=token)
    client.send_task_success(taskToken=token, output='{"approved": true}')
    described = wait_for_end(client, execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"who": "ops", "answer": {"approved": True}}
    # The task is closed now: AWS answers TaskTimedOut for a second answer.
    with pytest.raises(client.exceptions.TaskTimedOut):
        client.send_task_success(taskToken=token, output="{}")

    failing = client.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    token = wait_until(lambda: read_tokens(server)[before + 1 :])[0]
    client.send_task_failure(taskToken=token, error="Rejected", cause="no budget")
    described = wait_for_end(client, failing)
    assert (described["status"], described["error"], described["cause"]) == (
        "FAILED",
        "Rejected",
        "no budget",
    )


def test_activity_task_round_trip(server: Server) -> None:
    client = server.client()
    activity = client.create_activity(name="approve")["activityArn"]
    assert activity == "arn:aws:states:us-east-1:000000000000:activity:approve"
    assert client.create_activity(name="approve")["activityArn"] == activity
    assert client.describe_activity(activityArn=activity)["name"] == "approve"
    assert "approve" in [a["name"] for a in client.list_activities()["activities"]]
    definition = {
        "StartAt": "Approve",
        "States": {"Approve": {"Type": "Task", "Resource": activity, "End": True}},
    }
    arn = _machine(client, "approved", definition)
    execution = client.start_execution(stateMachineArn=arn, input='{"doc": 7}')["executionArn"]
    task: dict[str, Any] = {}

    def poll() -> bool:
        task.update(client.get_activity_task(activityArn=activity, workerName="w1"))
        return "taskToken" in task

    wait_until(poll)
    assert json.loads(task["input"]) == {"doc": 7}
    # The only task is taken: the next poll waits (1 s here, 50 s by default) and answers {}.
    empty = client.get_activity_task(activityArn=activity, workerName="w2")
    assert "taskToken" not in empty
    client.send_task_success(taskToken=task["taskToken"], output='{"ok": true}')
    described = wait_for_end(client, execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"ok": True}
    types = [e["type"] for e in client.get_execution_history(executionArn=execution)["events"]]
    assert {"ActivityScheduled", "ActivityStarted", "ActivitySucceeded"} <= set(types)


def test_a_nul_in_errors_and_causes_comes_back_exactly(server: Server) -> None:
    # PostgreSQL's text cannot hold U+0000; AWS's errors and causes can.
    client = server.client()
    activity = client.create_activity(name="nul-activity")["activityArn"]
    asks = _machine(
        client,
        "nul-activity",
        {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": activity, "End": True}}},
    )
    fails = _machine(
        client,
        "nul-fail",
        {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "F\x00E", "Cause": "f\x00c"}}},
    )
    asked = client.start_execution(stateMachineArn=asks)["executionArn"]
    failed = client.start_execution(stateMachineArn=fails)["executionArn"]
    stopped = client.start_execution(stateMachineArn=_machine(client, "nul-wait", WAIT))
    client.stop_execution(executionArn=stopped["executionArn"], error="S\x00E", cause="s\x00c")
    task: dict[str, Any] = {}

    def poll() -> bool:
        task.update(client.get_activity_task(activityArn=activity, workerName="w\x00"))
        return "taskToken" in task

    wait_until(poll)
    client.send_task_failure(taskToken=task["taskToken"], error="A\x00E", cause="a\x00c")
    ended = [wait_for_end(client, arn) for arn in (asked, failed, stopped["executionArn"])]
    assert [(d["status"], d["error"], d["cause"]) for d in ended] == [
        ("FAILED", "A\x00E", "a\x00c"),
        ("FAILED", "F\x00E", "f\x00c"),
        ("ABORTED", "S\x00E", "s\x00c"),
    ]
    events = client.get_execution_history(executionArn=asked)["events"]
    assert events[-1]["executionFailedEventDetails"] == {"error": "A\x00E", "cause": "a\x00c"}
    started = next(e for e in events if e["type"] == "ActivityStarted")
    assert started["activityStartedEventDetails"] == {"workerName": "w\x00"}


def test_a_value_the_database_refuses_is_a_validation_error_not_a_500(server: Server) -> None:
    client = server.client()
    # A NUL in a tag is refused before any store sees it (AWS's tag characters) ...
    activity = client.create_activity(name="nul-tags")["activityArn"]
    with pytest.raises(client.exceptions.ValidationException):
        client.tag_resource(resourceArn=activity, tags=[{"key": "k", "value": "v\x00"}])
    assert client.list_tags_for_resource(resourceArn=activity)["tags"] == []
    # ... an alias's description has no such rule, so PostgreSQL's text is what refuses it.
    arn = _machine(client, "nul-alias", PASS)
    version = client.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"]
    routes = [{"stateMachineVersionArn": version, "weight": 100}]
    try:
        alias = client.create_state_machine_alias(
            name="nul", description="v\x00", routingConfiguration=routes
        )["stateMachineAliasArn"]
    except client.exceptions.ClientError as error:  # PostgreSQL's text cannot hold it
        assert server.db_url.startswith("postgresql")
        assert error.response["Error"]["Code"] == "ValidationException"
        assert "the database refused a value" in error.response["Error"]["Message"]
        assert client.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"] == []
    else:  # SQLite's can: stored exactly
        assert server.db_url.startswith("sqlite")
        described = client.describe_state_machine_alias(stateMachineAliasArn=alias)
        assert described["description"] == "v\x00"


def test_start_sync_execution_answers_the_result(server: Server) -> None:
    client = server.client()
    express = _machine(client, "quick", PASS, type="EXPRESS")
    answer = client.start_sync_execution(stateMachineArn=express, input='{"a": 1}')
    assert answer["status"] == "SUCCEEDED"
    assert json.loads(answer["output"]) == {"x": 1}
    standard = _machine(client, "slow-standard", PASS)
    with pytest.raises(client.exceptions.StateMachineTypeNotSupported):
        client.start_sync_execution(stateMachineArn=standard)


def _code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def test_errors_arrive_as_modelled_exceptions(server: Server) -> None:
    client = server.client()
    arn = _machine(client, "errors", PASS)
    missing_execution = arn.replace(":stateMachine:", ":execution:") + ":nope"
    cases: list[tuple[Any, Any]] = [
        (
            client.exceptions.ExecutionDoesNotExist,
            lambda: client.describe_execution(executionArn=missing_execution),
        ),
        (
            client.exceptions.ExecutionDoesNotExist,
            lambda: client.get_execution_history(executionArn=missing_execution),
        ),
        (
            client.exceptions.ExecutionDoesNotExist,
            lambda: client.stop_execution(executionArn=missing_execution),
        ),
        (
            client.exceptions.StateMachineDoesNotExist,
            lambda: client.start_execution(stateMachineArn=arn + "-missing"),
        ),
        (
            client.exceptions.StateMachineDoesNotExist,
            lambda: client.describe_state_machine(stateMachineArn=arn + "-missing"),
        ),
        (
            client.exceptions.InvalidArn,
            lambda: client.describe_execution(executionArn="not-an-arn"),
        ),
        (
            client.exceptions.InvalidArn,
            lambda: client.start_execution(stateMachineArn=missing_execution),
        ),
        (
            # AWS checks the model's 80 before the name's characters (getmoto/moto#6438).
            client.exceptions.ValidationException,
            lambda: client.start_execution(stateMachineArn=arn, name="x" * 81),
        ),
        (
            client.exceptions.InvalidName,
            lambda: client.start_execution(stateMachineArn=arn, name="has space"),
        ),
        (
            client.exceptions.InvalidName,
            lambda: client.create_state_machine(
                name="a/b", definition=json.dumps(PASS), roleArn=ROLE
            ),
        ),
        (
            client.exceptions.InvalidExecutionInput,
            lambda: client.start_execution(stateMachineArn=arn, input="{not json"),
        ),
        (
            client.exceptions.InvalidExecutionInput,
            lambda: client.start_execution(stateMachineArn=arn, input=json.dumps("x" * 262_145)),
        ),
        (
            client.exceptions.InvalidDefinition,
            lambda: client.create_state_machine(
                name="bad", definition='{"StartAt": "Nope", "States": {}}', roleArn=ROLE
            ),
        ),
        (
            client.exceptions.InvalidToken,
            lambda: client.send_task_success(taskToken="never-issued", output="{}"),
        ),
        (
            client.exceptions.InvalidOutput,
            lambda: client.send_task_success(taskToken="never-issued", output="not json"),
        ),
        (
            client.exceptions.InvalidToken,
            lambda: client.send_task_heartbeat(taskToken="never-issued"),
        ),
        (
            client.exceptions.InvalidToken,
            lambda: client.list_executions(stateMachineArn=arn, nextToken="bogus"),
        ),
        (
            client.exceptions.ValidationException,
            lambda: client.list_executions(stateMachineArn=arn, maxResults=1001),
        ),
        (
            client.exceptions.ValidationException,
            lambda: client.list_executions(stateMachineArn=arn, statusFilter="BOGUS"),
        ),
        (
            client.exceptions.ValidationException,
            lambda: client.get_execution_history(executionArn=missing_execution, maxResults=5000),
        ),
        (
            client.exceptions.ActivityDoesNotExist,
            lambda: client.describe_activity(
                activityArn="arn:aws:states:us-east-1:000000000000:activity:ghost"
            ),
        ),
    ]
    for exception, call in cases:
        with pytest.raises(exception) as raised:
            call()
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "Traceback" not in str(raised.value)
    message = client.exceptions.ValidationException
    with pytest.raises(message) as raised:
        client.list_executions(stateMachineArn=arn, maxResults=1001)
    assert raised.value.response["Error"]["Message"] == (
        "1 validation error detected: Value '1001' at 'maxResults' failed to satisfy "
        "constraint: Member must have value less than or equal to 1000"
    )


def test_redrive_and_unbuilt_operations_answer_aws_errors(server: Server) -> None:
    client = server.client()
    arn = _machine(client, "redrive", PASS)
    execution = client.start_execution(stateMachineArn=arn)["executionArn"]
    wait_for_end(client, execution)
    with pytest.raises(client.exceptions.ExecutionNotRedrivable):
        client.redrive_execution(executionArn=execution)
    # DeleteStateMachine is served now (tests/http/test_delete_machine_http.py).
    # Map Runs are served now (tests/http/test_map_runs_http.py): an unknown one is not found.
    with pytest.raises(ClientError) as raised:
        client.describe_map_run(mapRunArn=arn.replace("stateMachine", "mapRun") + "/m:1")
    assert _code(raised.value) == "ResourceNotFound"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def _raw(server: Server, target: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/x-amz-json-1.0"}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = urllib.request.Request(server.url + "/", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_protocol_errors_and_body_limits(server: Server) -> None:
    client = server.client()
    cases = [
        ("AWSStepFunctions.NoSuchOperation", b"{}", "UnknownOperationException"),
        (None, b"{}", "UnknownOperationException"),
        ("AWSStepFunctions.ListStateMachines", b"{not json", "SerializationException"),
        ("AWSStepFunctions.ListStateMachines", b"[1, 2]", "SerializationException"),
        ("AWSStepFunctions.ListStateMachines", b'{"maxResults": "ten"}', "SerializationException"),
        ("AWSStepFunctions.ListStateMachines", b" " * (5 * 1024 * 1024), "ValidationException"),
        ("AWSStepFunctions.DescribeExecution", b"{}", "ValidationException"),
    ]
    for target, body, code in cases:
        status, answer = _raw(server, target, body)
        assert (status, answer["__type"]) == (400, code), (target, answer)
        assert answer["message"]
    status, answer = _raw(server, "AWSStepFunctions.ListStateMachines", b"")
    assert status == 200 and "stateMachines" in answer
    huge = {"StartAt": "A", "Comment": "x" * 1_048_576, "States": {"A": {"Type": "Succeed"}}}
    with pytest.raises(client.exceptions.ValidationException):
        client.create_state_machine(name="huge", definition=json.dumps(huge), roleArn=ROLE)


def test_metadata_only_leaves_data_out(server: Server) -> None:
    client = server.client()
    arn = _machine(client, "metadata", PASS)
    execution = client.start_execution(stateMachineArn=arn, input='{"secret": 1}')["executionArn"]
    wait_for_end(client, execution)
    described = client.describe_execution(executionArn=execution, includedData="METADATA_ONLY")
    assert "input" not in described and "output" not in described
    assert described["inputDetails"] == {"included": False}
    for_execution = client.describe_state_machine_for_execution(executionArn=execution)
    assert json.loads(for_execution["definition"]) == PASS
    assert for_execution["stateMachineArn"] == arn


def test_tags_on_machines_and_activities(server: Server) -> None:
    client = server.client()
    arn = _machine(client, "tagged", PASS, tags=[{"key": "team", "value": "payments"}])
    client.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "dev"}])
    listed = client.list_tags_for_resource(resourceArn=arn)["tags"]
    assert listed == [{"key": "env", "value": "dev"}, {"key": "team", "value": "payments"}]
    client.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "env", "value": "dev"}
    ]
    activity = client.create_activity(name="tagged-activity", tags=[{"key": "k", "value": "v"}])
    assert client.list_tags_for_resource(resourceArn=activity["activityArn"])["tags"] == [
        {"key": "k", "value": "v"}
    ]
    # A repeated create is idempotent and ignores its tags (AWS's CreateStateMachine and
    # CreateActivity documentation): the resource's tags stay as they were.
    assert _machine(client, "tagged", PASS, tags=[{"key": "other", "value": "x"}]) == arn
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "env", "value": "dev"}
    ]
    again = client.create_activity(name="tagged-activity", tags=[{"key": "k2", "value": "v2"}])
    assert again["activityArn"] == activity["activityArn"]
    assert client.list_tags_for_resource(resourceArn=activity["activityArn"])["tags"] == [
        {"key": "k", "value": "v"}
    ]
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.list_tags_for_resource(resourceArn=arn + "-missing")
    with pytest.raises(client.exceptions.TooManyTags):
        client.tag_resource(
            resourceArn=arn, tags=[{"key": f"k{i}", "value": "v"} for i in range(50)]
        )


def test_test_state_runs_one_state(server: Server) -> None:
    client = server.client()
    shaped = client.test_state(
        definition=json.dumps(
            {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, 1)"}, "Next": "After"}
        ),
        input='{"a": 41}',
    )
    assert (shaped["status"], json.loads(shaped["output"]), shaped["nextState"]) == (
        "SUCCEEDED",
        {"sum": 42},
        "After",
    )
    machine = {
        "StartAt": "Pick",
        "States": {
            "Pick": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}],
                "Default": "Small",
            },
            "Big": {"Type": "Succeed"},
            "Small": {"Type": "Succeed"},
        },
    }
    picked = client.test_state(definition=json.dumps(machine), stateName="Pick", input='{"n": 11}')
    assert (picked["status"], picked["nextState"]) == ("SUCCEEDED", "Big")
    waited = client.test_state(
        definition=json.dumps({"Type": "Wait", "Seconds": 3600, "Next": "Later"}),
        input="{}",
        inspectionLevel="DEBUG",
    )
    assert (waited["status"], waited["nextState"]) == ("SUCCEEDED", "Later")
    assert waited["inspectionData"]["input"] == "{}"
    failed = client.test_state(
        definition=json.dumps({"Type": "Fail", "Error": "Nope", "Cause": "because"})
    )
    assert (failed["status"], failed["error"], failed["cause"]) == ("FAILED", "Nope", "because")
    task = {"Type": "Task", "Resource": "explode", "End": True}
    caught = client.test_state(
        definition=json.dumps(
            {**task, "Catch": [{"ErrorEquals": ["Boom"], "Next": "Handler", "ResultPath": "$.e"}]}
        ),
        input='{"k": 1}',
    )
    assert (caught["status"], caught["nextState"], caught["error"]) == (
        "CAUGHT_ERROR",
        "Handler",
        "Boom",
    )
    assert json.loads(caught["output"])["k"] == 1
    retried = client.test_state(
        definition=json.dumps({**task, "Retry": [{"ErrorEquals": ["Boom"], "MaxAttempts": 3}]})
    )
    assert (retried["status"], retried["error"]) == ("RETRIABLE", "Boom")
    assigned = client.test_state(
        definition=json.dumps({"Type": "Pass", "Parameters": {"seen.$": "$greeting"}, "End": True}),
        variables='{"greeting": "hi"}',
    )
    assert json.loads(assigned["output"]) == {"seen": "hi"}
    with pytest.raises(client.exceptions.InvalidDefinition):
        client.test_state(definition='{"Type": "Bogus"}')
    # A mock stands in for the Task's Resource: its result, or its error.
    mocked = client.test_state(
        definition=json.dumps({**task, "ResultPath": "$.r"}),
        input='{"k": 1}',
        mock={"result": '{"rows": 3}'},
    )
    assert (mocked["status"], json.loads(mocked["output"])) == (
        "SUCCEEDED",
        {"k": 1, "r": {"rows": 3}},
    )
    mocked_error = client.test_state(
        definition=json.dumps(task),
        mock={"errorOutput": {"error": "Mocked.Error", "cause": "as asked"}},
    )
    assert (mocked_error["status"], mocked_error["error"], mocked_error["cause"]) == (
        "FAILED",
        "Mocked.Error",
        "as asked",
    )
    for bad_mock in ({}, {"result": "{}", "errorOutput": {"error": "E"}}):
        with pytest.raises(client.exceptions.ValidationException):
            client.test_state(definition=json.dumps(task), mock=bad_mock)
    with pytest.raises(client.exceptions.ValidationException, match="secrets"):
        client.test_state(definition=json.dumps(task), revealSecrets=True)
    listed = [m["name"] for m in client.list_state_machines(maxResults=1000)["stateMachines"]]
    assert not any(name.startswith("stepwise-teststate-") for name in listed)
