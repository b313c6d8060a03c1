"""AWS's input constraints at the HTTP API: what AWS refuses is refused, what it accepts is not.

The constraints come from botocore's service model, copied into
`engine.http.shapes`; the first test pins the copy to the installed model
(fully under the botocore it was generated from).
The rest drive a real `stepwise serve` with boto3, raw requests (for what
botocore's own client-side checks would stop first) and the AWS CLI.
Validation happens before any store is touched, so one SQLite server serves
the module.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore
import pytest
from botocore.exceptions import ClientError

from engine.http.app import OPERATIONS
from engine.http.shapes import BOTOCORE_VERSION, INPUTS, SHAPES
from tests.http.aws_model import extract, model, relied_on_but_missing, render
from tests.http.support import Server, cli_env

ROLE = "arn:aws:iam::123456789012:role/service-role/StepFunctions-orders"
PASS = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
MACHINE = "arn:aws:states:us-east-1:000000000000:stateMachine:m"
EXECUTION = "arn:aws:states:us-east-1:000000000000:execution:m:e"
LONGEST = "Member must have length less than or equal to"
WAIT = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}


def test_shapes_are_botocores_model_for_every_served_operation() -> None:
    """`engine.http.shapes` against the installed botocore's model.

    Under the botocore it was generated from (`BOTOCORE_VERSION`) the copy
    must equal the model; under any other release (boto3 is unpinned) every
    member the server relies on must still be there with its type, so a new
    release does not turn CI red but drift in what we use does. Regenerate
    with ``.venv/bin/python -m tests.http.aws_model > engine/http/shapes.py``
    then ``.venv/bin/ruff format engine/http/shapes.py``.
    """
    assert sorted(INPUTS) == sorted(OPERATIONS), "served operations changed: regenerate shapes.py"
    assert relied_on_but_missing(INPUTS, SHAPES, model()) == []
    if botocore.__version__ != BOTOCORE_VERSION:
        return
    inputs, shapes = extract(OPERATIONS)
    assert (inputs, shapes) == (INPUTS, SHAPES), (
        "engine/http/shapes.py is out of date; regenerate it (see tests/http/aws_model.py):\n"
        + render(inputs, shapes)[:2000]
    )


def test_the_drift_check_finds_a_member_gone_or_retyped() -> None:
    service = copy.deepcopy(model())
    del service["shapes"]["StartExecutionInput"]["members"]["traceHeader"]
    service["shapes"]["TagList"]["member"] = {"shape": "TagKey"}  # a list of strings now
    problems = relied_on_but_missing(INPUTS, SHAPES, service)
    assert "StartExecution.traceHeader: missing" in problems
    # Each shape is walked once: the first path to reach TagList reports it.
    retyped = [p for p in problems if p.endswith(".tags.member: string, not structure")]
    assert len(problems) == 2 and len(retyped) == 1, problems


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("validation")
    instance = Server(f"sqlite:///{folder / 'stepwise.db'}", folder / "server.log").start()
    yield instance
    instance.stop()
    log = (folder / "server.log").read_text()
    assert "Traceback" not in log


def _raw(server: Server, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.url + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"AWSStepFunctions.{operation}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _refused(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response["Error"]
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(error["Code"]), str(error["Message"])


def _machine(client: Any, name: str, definition: dict[str, Any] = PASS, **extra: Any) -> str:
    answer = client.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=ROLE, **extra
    )
    return str(answer["stateMachineArn"])


def test_what_aws_accepts_at_the_limits_is_accepted(server: Server) -> None:
    client = server.client()
    tags = [
        {"key": "k" * 128, "value": "v" * 256},
        {"key": "équipe paiements", "value": ""},  # Unicode letters, a space, an empty value
        {"key": "cost_centre.2:a/b=c+d-e@f", "value": "値 ٣ _.:/=+-@"},
        {"key": "AWSome", "value": "not the reserved prefix"},
        {"key": "team:aws:x", "value": "aws:inside is fine"},
        *({"key": f"k{i}", "value": "v"} for i in range(45)),
    ]
    assert len(tags) == 50
    name = "m" * 79 + "é"  # 80 characters, one of them not ASCII
    arn = _machine(client, name, WAIT, tags=tags, publish=True, versionDescription="d" * 256)
    assert len(client.list_tags_for_resource(resourceArn=arn)["tags"]) == 50
    for role in (
        ROLE,
        "arn:aws-cn:iam::123456789012:role/r",
        "arn:aws-us-gov:iam::000000000000:role/a/b/c",
    ):
        client.update_state_machine(stateMachineArn=arn, roleArn=role)
    version = client.publish_state_machine_version(stateMachineArn=arn, description="p" * 256)
    alias = client.create_state_machine_alias(
        name="prod_1.x-Y",
        description="a" * 256,
        routingConfiguration=[
            {"stateMachineVersionArn": version["stateMachineVersionArn"], "weight": 100}
        ],
    )["stateMachineAliasArn"]
    client.update_state_machine_alias(stateMachineAliasArn=alias, description="")
    execution = client.start_execution(
        stateMachineArn=arn,
        name="e" * 80,
        traceHeader="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )["executionArn"]
    client.start_execution(stateMachineArn=arn, traceHeader="~" * 256)
    client.start_execution(stateMachineArn=arn, traceHeader="")
    for size in (0, 1000):
        client.list_executions(stateMachineArn=arn, maxResults=size)
        client.list_state_machines(maxResults=size)
        client.get_execution_history(executionArn=execution, maxResults=size)
    client.validate_state_machine_definition(definition=json.dumps(PASS), maxResults=100)
    # Tokens at the model's longest are not ours: InvalidToken, not a ValidationException.
    assert _refused(lambda: client.list_state_machines(nextToken="t" * 1024))[0] == "InvalidToken"
    assert (
        _refused(lambda: client.list_executions(stateMachineArn=arn, nextToken="t" * 3096))[0]
        == "InvalidToken"
    )
    # A clientToken of 64 printable ASCII characters, '!' and '~' included, passes validation
    # (the running execution is not redrivable: AWS's next check).
    code, _message = _refused(
        lambda: client.redrive_execution(executionArn=execution, clientToken="!" + "a" * 62 + "~")
    )
    assert code == "ExecutionNotRedrivable"
    client.stop_execution(executionArn=execution, error="e" * 256, cause="c" * 32768)


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # (operation, body, code, what the message says)
    (
        "CreateStateMachine",
        {"name": "n" * 81, "definition": json.dumps(PASS), "roleArn": ROLE},
        "ValidationException",
        "1 validation error detected: Value '" + "n" * 81 + "' at 'name' failed to satisfy "
        "constraint: Member must have length less than or equal to 80",
    ),
    (
        "StartExecution",
        {"stateMachineArn": MACHINE, "name": "x" * 81},
        "ValidationException",
        "at 'name' failed to satisfy constraint: " + f"{LONGEST} 80",
    ),
    (
        "CreateActivity",
        {"name": "a" * 81},
        "ValidationException",
        "Member must have length less than or equal to 80",
    ),
    (
        "CreateStateMachine",
        {"name": "n", "definition": json.dumps(PASS), "roleArn": ROLE,
         "tags": [{"key": "k" * 129, "value": "v"}, {"key": "k", "value": "v" * 257}]},
        "ValidationException",
        "2 validation errors detected: Value '" + "k" * 100 + "…' at 'tags.1.member.key' failed "
        "to satisfy constraint: Member must have length less than or equal to 128; Value '"
        + "v" * 100 + "…' at 'tags.2.member.value' failed to satisfy constraint: Member must "
        "have length less than or equal to 256",
    ),
    (
        "CreateStateMachine",
        {"name": "n", "definition": json.dumps(PASS), "roleArn": ROLE, "tags": [{"key": ""}]},
        "ValidationException",
        "Value '' at 'tags.1.member.key' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
    ),
    (
        "CreateStateMachine",
        {"name": "n", "definition": json.dumps(PASS), "roleArn": ROLE,
         "tags": [{"key": "a#b", "value": "v"}, {"key": "k", "value": "tab\there"}]},
        "ValidationException",
        "2 validation errors detected: Value 'a#b' at 'tags.1.member.key' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: "
        r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$",
    ),
    (
        "CreateActivity",
        {"name": "act", "tags": [{"key": "AWS:cloudformation:stack-name", "value": "s"}]},
        "ValidationException",
        "Value 'AWS:cloudformation:stack-name' at 'tags.1.member.key' failed to satisfy "
        "constraint: Member must not start with 'aws:'",
    ),
    (
        "CreateStateMachineAlias",
        {"name": "123", "description": "d" * 257,
         "routingConfiguration": [{"stateMachineVersionArn": MACHINE + ":1", "weight": 101}]},
        "ValidationException",
        "3 validation errors detected: Value at 'description' failed to satisfy constraint: "
        "Member must have length less than or equal to 256; Value '123' at 'name' failed to "
        "satisfy constraint: Member must satisfy regular expression pattern: "
        r"^(?=.*[a-zA-Z_\-\.])[a-zA-Z0-9_\-\.]+$; Value '101' at "
        "'routingConfiguration.1.member.weight' failed to satisfy constraint: Member must have "
        "value less than or equal to 100",
    ),
    (
        "CreateStateMachineAlias",
        {"name": "a b", "routingConfiguration": []},
        "ValidationException",
        "2 validation errors detected",
    ),
    (
        "PublishStateMachineVersion",
        {"stateMachineArn": MACHINE, "description": "d" * 257},
        "ValidationException",
        "1 validation error detected: Value at 'description' failed to satisfy constraint: "
        "Member must have length less than or equal to 256",
    ),
    (
        "UpdateStateMachine",
        {"stateMachineArn": MACHINE,
         "publish": True, "versionDescription": "d" * 257},
        "ValidationException",
        "Value at 'versionDescription' failed to satisfy constraint",
    ),
    (
        "RedriveExecution",
        {"executionArn": EXECUTION, "clientToken": "t" * 65},
        "ValidationException",
        "at 'clientToken' failed to satisfy constraint: " + f"{LONGEST} 64",
    ),
    (
        "RedriveExecution",
        {"executionArn": EXECUTION, "clientToken": "a b"},
        "ValidationException",
        "Value 'a b' at 'clientToken' failed to satisfy constraint: Member must satisfy regular "
        "expression pattern: [!-~]+",
    ),
    (
        "StartExecution",
        {"stateMachineArn": MACHINE, "traceHeader": "t" * 257},
        "ValidationException",
        "at 'traceHeader' failed to satisfy constraint: " + f"{LONGEST} 256",
    ),
    (
        "StartSyncExecution",
        {"stateMachineArn": MACHINE, "traceHeader": "Root=é"},
        "ValidationException",
        r"Value 'Root=é' at 'traceHeader' failed to satisfy constraint: Member must satisfy "
        r"regular expression pattern: \p{ASCII}*",
    ),
    (
        "ListStateMachines",
        {"maxResults": -1},
        "ValidationException",
        "Value '-1' at 'maxResults' failed to satisfy constraint: Member must have value greater "
        "than or equal to 0",
    ),
    (
        "ValidateStateMachineDefinition",
        {"definition": json.dumps(PASS), "maxResults": 101},
        "ValidationException",
        "Member must have value less than or equal to 100",
    ),
    (
        "ListStateMachines",
        {"nextToken": "t" * 1025},
        "ValidationException",
        "at 'nextToken' failed to satisfy constraint: " + f"{LONGEST} 1024",
    ),
    (
        "ListExecutions",
        {"stateMachineArn": MACHINE, "nextToken": "t" * 3097},
        "ValidationException",
        "Member must have length less than or equal to 3096",
    ),
    (
        "ListActivities",
        {"nextToken": ""},
        "ValidationException",
        "Value '' at 'nextToken' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
    ),
    (
        "DescribeExecution",
        {"executionArn": EXECUTION + "e" * 210},
        "ValidationException",
        "at 'executionArn' failed to satisfy constraint: " + f"{LONGEST} 256",
    ),
    (
        "DescribeMapRun",
        {"mapRunArn": "a" * 2001},
        "ValidationException",
        "at 'mapRunArn' failed to satisfy constraint: " + f"{LONGEST} 2000",
    ),
    (
        "CreateStateMachine",
        {"name": "n", "definition": json.dumps(PASS), "roleArn": "not-a-role"},
        "InvalidArn",
        "Invalid Role Arn: 'not-a-role'",
    ),
    (
        "UpdateStateMachine",
        {"stateMachineArn": MACHINE,
         "roleArn": "arn:aws:iam::123456789012:user/alice"},
        "InvalidArn",
        "Invalid Role Arn: 'arn:aws:iam::123456789012:user/alice'",
    ),
    (
        "CreateStateMachine",
        {"name": "n", "definition": json.dumps(PASS), "roleArn": ROLE, "type": "BATCH",
         "loggingConfiguration": {"level": "LOUD"},
         "encryptionConfiguration": {"kmsDataKeyReusePeriodSeconds": 30}},
        "ValidationException",
        "4 validation errors detected: Value 'BATCH' at 'type' failed to satisfy constraint: "
        "Member must satisfy enum value set: [STANDARD, EXPRESS]; Value 'LOUD' at "
        "'loggingConfiguration.level' failed to satisfy constraint: Member must satisfy enum "
        "value set: [ALL, ERROR, FATAL, OFF]; Value '30' at "
        "'encryptionConfiguration.kmsDataKeyReusePeriodSeconds' failed to satisfy constraint: "
        "Member must have value greater than or equal to 60; Value null at "
        "'encryptionConfiguration.type' failed to satisfy constraint: Member must not be null",
    ),
    (
        "StopExecution",
        {"executionArn": EXECUTION, "cause": "c" * 32769},
        "ValidationException",
        "1 validation error detected: Value at 'cause' failed to satisfy constraint: "
        "Member must have length less than or equal to 32768",
    ),
    (
        "UpdateMapRun",
        {"mapRunArn": "arn:aws:states:us-east-1:000000000000:mapRun:m/l:1",
         "toleratedFailurePercentage": 100.5, "toleratedFailureCount": -1},
        "ValidationException",
        "2 validation errors detected",
    ),
    (
        "TagResource",
        {"resourceArn": MACHINE},
        "ValidationException",
        "1 validation error detected: Value null at 'tags' failed to satisfy constraint: "
        "Member must not be null",
    ),
    # A tag's key is required though the model leaves it optional; AWS names it by its path.
    *(
        (operation, {**body, "tags": [{"key": "k", "value": "v"}, {"value": "x"}]},
         "ValidationException",
         "1 validation error detected: Value null at 'tags.2.member.key' failed to satisfy "
         "constraint: Member must not be null")
        for operation, body in (
            ("CreateActivity", {"name": "keyless"}),
            ("CreateStateMachine", {"name": "n", "definition": json.dumps(PASS), "roleArn": ROLE}),
            ("TagResource", {"resourceArn": MACHINE}),
        )
    ),
    (
        "CreateActivity",
        {"name": "keyless", "tags": [{"key": None, "value": "v"}, {"key": "aws:x"}]},
        "ValidationException",
        "2 validation errors detected: Value null at 'tags.1.member.key' failed to satisfy "
        "constraint: Member must not be null; Value 'aws:x' at 'tags.2.member.key' failed to "
        "satisfy constraint: Member must not start with 'aws:'",
    ),
    (
        "CreateStateMachine",
        {"name": "n", "definition": json.dumps(PASS), "roleArn": ROLE,
         "loggingConfiguration": {"level": "ALL", "destinations": [
             {"cloudWatchLogsLogGroup": {"logGroupArn": "a"}},
             {"cloudWatchLogsLogGroup": {"logGroupArn": ""}}]},
         "tracingConfiguration": {"enabled": True}},
        "ValidationException",
        "1 validation error detected: Value '' at "
        "'loggingConfiguration.destinations.2.member.cloudWatchLogsLogGroup.logGroupArn' failed "
        "to satisfy constraint: Member must have length greater than or equal to 1",
    ),
    (
        "CreateStateMachine",
        {"name": "n", "definition": json.dumps(PASS), "roleArn": ROLE,
         "tracingConfiguration": {"enabled": "yes"}},
        "SerializationException",
        "'tracingConfiguration.enabled' must be a boolean",
    ),
    # Numbers are compared exactly however large, within their type's range (Java's).
    (
        "ListStateMachines",
        {"maxResults": 10**400},
        "ValidationException",
        "1 validation error detected: Value '" + str(10**400)[:100] + "…' at 'maxResults' failed "
        "to satisfy constraint: Member must have value less than or equal to 1000",
    ),
    (
        "ListActivities",
        {"maxResults": -(10**400)},
        "ValidationException",
        "Member must have value greater than or equal to 0",
    ),
    (
        "UpdateMapRun",
        {"mapRunArn": "arn:aws:states:us-east-1:000000000000:mapRun:m/l:1",
         "maxConcurrency": 2**31, "toleratedFailureCount": 2**63,
         "toleratedFailurePercentage": 1e300},
        "ValidationException",
        "3 validation errors detected: Value '2147483648' at 'maxConcurrency' failed to satisfy "
        "constraint: Member must have value less than or equal to 2147483647; Value "
        "'1e+300' at 'toleratedFailurePercentage' failed to satisfy constraint: Member must have "
        "value less than or equal to 100; Value '9223372036854775808' at 'toleratedFailureCount' "
        "failed to satisfy constraint: Member must have value less than or equal to "
        "9223372036854775807",
    ),
    # Lengths in UTF-16 code units, as AWS (Java) counts them: an emoji counts 2.
    (
        "CreateActivity",
        {"name": "\N{GRINNING FACE}" * 41},
        "ValidationException",
        "at 'name' failed to satisfy constraint: " + f"{LONGEST} 80",
    ),
    (
        "CreateActivity",
        {"name": "act", "tags": [{"key": "k", "value": "\U00020000" * 129}]},
        "ValidationException",
        "at 'tags.1.member.value' failed to satisfy constraint: " + f"{LONGEST} 256",
    ),
    (
        "CreateStateMachine",
        {"name": "n", "definition": json.dumps(PASS), "roleArn": ROLE, "tags": "team=a"},
        "SerializationException",
        "'tags' must be a list",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("operation", "body", "code", "message"), CASES)
def test_what_aws_refuses_is_refused_in_its_words(
    server: Server, operation: str, body: dict[str, Any], code: str, message: str
) -> None:
    status, answer = _raw(server, operation, body)
    assert (status, answer["__type"]) == (400, code), answer
    if message[0].isdigit() or message.startswith("Invalid"):
        assert answer["message"].startswith(message), answer["message"]
    else:
        assert message in answer["message"], answer["message"]


def test_a_message_counts_every_problem_and_lists_the_first_ten(server: Server) -> None:
    tags = [{"key": f"aws:{i}", "value": "v"} for i in range(5000)]
    status, answer = _raw(server, "CreateActivity", {"name": "capped", "tags": tags})
    assert (status, answer["__type"]) == (400, "ValidationException")
    message = answer["message"]
    assert message.startswith("5000 validation errors detected: Value 'aws:0' at ")
    assert message.count("failed to satisfy constraint") == 10
    assert "'tags.10.member.key'" in message and "'tags.11.member.key'" not in message


def test_a_keyless_tag_is_named_by_its_path_for_boto3_too(server: Server) -> None:
    # botocore's model leaves a tag's key optional, so boto3 sends the request as it is.
    client = server.client()
    code, message = _refused(lambda: client.create_activity(name="kl", tags=[{"value": "x"}]))
    assert (code, message) == (
        "ValidationException",
        "1 validation error detected: Value null at 'tags.1.member.key' failed to satisfy "
        "constraint: Member must not be null",
    )
    assert "kl" not in [a["name"] for a in client.list_activities()["activities"]]


def test_lengths_count_utf16_code_units(server: Server) -> None:
    client = server.client()
    # 128 characters above U+FFFF are 256 UTF-16 code units: AWS's longest tag value.
    answer = client.create_activity(name="utf16", tags=[{"key": "k", "value": "\U00020000" * 128}])
    tags = client.list_tags_for_resource(resourceArn=answer["activityArn"])["tags"]
    assert tags == [{"key": "k", "value": "\U00020000" * 128}]


def test_too_many_tags_names_the_resource(server: Server) -> None:
    client = server.client()
    too_many = [{"key": f"k{i}", "value": "v"} for i in range(51)]
    arn = _machine(client, "tag-target")
    attempts = [
        (lambda: client.tag_resource(resourceArn=arn, tags=too_many), arn),
        (
            lambda: client.create_state_machine(
                name="too-many", definition=json.dumps(PASS), roleArn=ROLE, tags=too_many
            ),
            arn.replace("tag-target", "too-many"),
        ),
        (
            lambda: client.create_activity(name="too-many", tags=too_many),
            arn.replace("stateMachine:tag-target", "activity:too-many"),
        ),
    ]
    for call, resource in attempts:
        with pytest.raises(client.exceptions.TooManyTags) as raised:
            call()
        assert raised.value.response["resourceName"] == resource


def test_refused_requests_change_nothing(server: Server) -> None:
    client = server.client()
    too_many = [{"key": f"k{i}", "value": "v"} for i in range(51)]
    code, _message = _refused(
        lambda: client.create_state_machine(
            name="tagged-too-much", definition=json.dumps(PASS), roleArn=ROLE, tags=too_many
        )
    )
    assert code == "TooManyTags"
    code, _message = _refused(
        lambda: client.create_state_machine(
            name="reserved", definition=json.dumps(PASS), roleArn=ROLE,
            tags=[{"key": "aws:owner", "value": "me"}],
        )
    )  # fmt: skip
    assert code == "ValidationException"
    names = {m["name"] for m in client.list_state_machines()["stateMachines"]}
    assert not names & {"tagged-too-much", "reserved"}
    arn = _machine(client, "kept-tags", tags=[{"key": "team", "value": "a"}])
    code, _message = _refused(
        lambda: client.tag_resource(resourceArn=arn, tags=[{"key": "aws:x", "value": "1"}])
    )
    assert code == "ValidationException"
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "team", "value": "a"}]
    code, _message = _refused(lambda: client.start_execution(stateMachineArn=arn, name="n" * 81))
    assert code == "ValidationException"
    assert client.list_executions(stateMachineArn=arn)["executions"] == []


def _cli(server: Server, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "awscli", "stepfunctions", *args, "--endpoint-url", server.url,
         "--output", "json"],
        capture_output=True, text=True, env=cli_env(tmp_path), timeout=120, check=False,
    )  # fmt: skip


def test_aws_cli_gets_the_same_answers(server: Server, tmp_path: Path) -> None:
    created = _cli(
        server, tmp_path, "create-state-machine", "--name", "cli-validated",
        "--definition", json.dumps(PASS), "--role-arn", ROLE,
        "--tags", json.dumps([{"key": "équipe", "value": "a b:c"}]),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    arn = json.loads(created.stdout)["stateMachineArn"]
    started = _cli(
        server, tmp_path, "start-execution", "--state-machine-arn", arn, "--name", "n" * 81
    )
    assert started.returncode != 0
    assert "ValidationException" in started.stderr
    assert "Member must have length less than or equal to 80" in started.stderr
    tagged = _cli(
        server, tmp_path, "tag-resource", "--resource-arn", arn,
        "--tags", json.dumps([{"key": "aws:team", "value": "x"}]),
    )  # fmt: skip
    assert tagged.returncode != 0
    assert "ValidationException" in tagged.stderr and "aws:" in tagged.stderr
    assert "Traceback" not in started.stderr + tagged.stderr
