"""`stepwise serve` as a process: SigV4 with --auth, a safe bind, the AWS CLI, and a SIGKILL.

Each test starts its own `python -m engine.http` subprocess on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.http.support import ACCESS_KEY, ROOT, SECRET_KEY, Server, cli_env
from tests.http.test_api import ROLE, wait_for_end

PASS = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}


def _post(server: Server, target: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + "/",
        data=data,
        method="POST",
        headers={
            "X-Amz-Target": f"AWSStepFunctions.{target}",
            "Content-Type": "application/x-amz-json-1.0",
            **headers,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _signed_headers(
    server: Server, body: dict[str, Any], *, secret: str = SECRET_KEY, key: str = ACCESS_KEY
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=server.url + "/",
        data=json.dumps(body).encode(),
        headers={
            "X-Amz-Target": "AWSStepFunctions.ListStateMachines",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    SigV4Auth(Credentials(key, secret), "states", "us-east-1").add_auth(request)
    return {k: v for k, v in request.headers.items() if k.lower() != "content-type"}


@pytest.fixture
def authenticated(tmp_path: Path, sqlite_url: str) -> Any:
    keys = tmp_path / "keys"
    keys.write_text(f"# test keys\n{ACCESS_KEY}:{SECRET_KEY}\n")
    server = Server(sqlite_url, tmp_path / "server.log", "--auth", str(keys)).start()
    yield server
    server.stop()


def test_sigv4_lets_key_holders_in_and_refuses_everyone_else(
    authenticated: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = authenticated
    client = server.client()
    arn = client.create_state_machine(name="m", definition=json.dumps(PASS), roleArn=ROLE)[
        "stateMachineArn"
    ]
    assert [m["stateMachineArn"] for m in client.list_state_machines()["stateMachines"]] == [arn]

    wrong_secret = server.client(secret_key="not-the-secret")
    with pytest.raises(ClientError) as raised:
        wrong_secret.list_state_machines()
    assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    unknown_key = server.client(access_key="AKIDNOBODY")
    with pytest.raises(ClientError) as raised:
        unknown_key.list_state_machines()
    assert raised.value.response["Error"]["Code"] == "UnrecognizedClientException"

    status, answer = _post(server, "ListStateMachines", {}, {})
    assert (status, answer["__type"]) == (403, "MissingAuthenticationTokenException")

    # A signature made 20 minutes ago (a replayed request) is refused.
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: old)
    stale = _signed_headers(server, {})
    monkeypatch.undo()
    status, answer = _post(server, "ListStateMachines", {}, stale)
    assert (status, answer["__type"]) == (403, "InvalidSignatureException")
    assert "expired" in answer["message"]

    # A body changed after signing does not match its signature.
    fresh = _signed_headers(server, {})
    status, answer = _post(server, "ListStateMachines", {"maxResults": 1}, fresh)
    assert (status, answer["__type"]) == (403, "InvalidSignatureException")
    status, answer = _post(server, "ListStateMachines", {}, _signed_headers(server, {}))
    assert status == 200
    assert [m["name"] for m in answer["stateMachines"]] == ["m"]


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.http", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unsafe_bind_bad_keys_and_unreachable_database_are_one_line_errors(
    sqlite_url: str, tmp_path: Path
) -> None:
    refused = _serve("--host", "0.0.0.0", "--port", "0", "--db", sqlite_url)
    assert refused.returncode == 2
    assert "without --auth" in refused.stderr
    assert "Traceback" not in refused.stderr
    unreadable = _serve("--auth", str(tmp_path / "missing"), "--port", "0", "--db", sqlite_url)
    assert unreadable.returncode == 2
    assert "cannot read keys file" in unreadable.stderr
    unreachable = _serve("--port", "0", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert unreachable.returncode == 3
    assert unreachable.stderr.startswith("stepwise: error: database")
    assert "Traceback" not in unreachable.stderr


def test_aws_cli_lists_executions(sqlite_url: str, tmp_path: Path) -> None:
    server = Server(sqlite_url, tmp_path / "server.log").start()
    try:
        client = server.client()
        arn = client.create_state_machine(name="cli", definition=json.dumps(PASS), roleArn=ROLE)[
            "stateMachineArn"
        ]
        started = [
            client.start_execution(stateMachineArn=arn, name=f"e{i}")["executionArn"]
            for i in range(3)
        ]
        for execution in started:
            wait_for_end(client, execution)
        env = cli_env(tmp_path)
        listed = subprocess.run(
            [sys.executable, "-m", "awscli", "stepfunctions", "list-executions",
             "--state-machine-arn", arn, "--endpoint-url", server.url,
             "--page-size", "2", "--output", "json"],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        executions = json.loads(listed.stdout)["executions"]
        assert sorted(e["executionArn"] for e in executions) == sorted(started)
        assert {e["status"] for e in executions} == {"SUCCEEDED"}
        # AWS_ENDPOINT_URL_SFN points the CLI at the server without --endpoint-url.
        described = subprocess.run(
            [sys.executable, "-m", "awscli", "stepfunctions", "describe-execution",
             "--execution-arn", started[0], "--output", "json"],
            capture_output=True, text=True, timeout=120, check=False,
            env={**env, "AWS_ENDPOINT_URL_SFN": server.url},
        )  # fmt: skip
        assert described.returncode == 0, described.stderr
        assert json.loads(described.stdout)["name"] == "e0"
        missing = subprocess.run(
            [sys.executable, "-m", "awscli", "stepfunctions", "describe-execution",
             "--execution-arn", started[0] + "-gone", "--endpoint-url", server.url],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert missing.returncode != 0
        assert "ExecutionDoesNotExist" in missing.stderr
    finally:
        server.stop()
    # SIGTERM is a clean stop: the engine shuts down and the process exits 0.
    assert server.process is not None and server.process.returncode == 0


WAITS = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Wait", "Seconds": 1, "Next": "Second"},
        "Second": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "done", "End": True},
    },
}


@pytest.mark.slow
def test_sigkill_while_executions_run_loses_nothing(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = Server(db_url, log, "--lease-seconds", "2").start()
    client = server.client()
    arn = client.create_state_machine(name="waits", definition=json.dumps(WAITS), roleArn=ROLE)[
        "stateMachineArn"
    ]
    started = [
        client.start_execution(stateMachineArn=arn, name=f"run-{i}", input=json.dumps({"i": i}))[
            "executionArn"
        ]
        for i in range(20)
    ]
    assert client.describe_execution(executionArn=started[-1])["status"] == "RUNNING"
    server.kill()

    restarted = Server(db_url, log, "--lease-seconds", "2").start()
    try:
        client = restarted.client()
        deadline = time.monotonic() + 120
        for execution in started:
            described = wait_for_end(
                client, execution, timeout=max(1.0, deadline - time.monotonic())
            )
            assert (described["status"], described["output"]) == ("SUCCEEDED", '"done"')
            types = [
                e["type"]
                for e in client.get_execution_history(executionArn=execution, maxResults=1000)[
                    "events"
                ]
            ]
            assert types.count("ExecutionStarted") == 1
            assert types.count("ExecutionSucceeded") == 1
            assert types.count("WaitStateExited") == 2
        listed = client.list_executions(stateMachineArn=arn, maxResults=100)["executions"]
        assert sorted(e["executionArn"] for e in listed) == sorted(started)
    finally:
        restarted.stop()


def test_no_worker_server_with_a_separate_stepwise_worker(sqlite_url: str, tmp_path: Path) -> None:
    server = Server(sqlite_url, tmp_path / "server.log", "--no-worker").start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--db", sqlite_url, "worker"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = server.client()
        arn = client.create_state_machine(name="remote", definition=json.dumps(PASS), roleArn=ROLE)[
            "stateMachineArn"
        ]
        execution = client.start_execution(stateMachineArn=arn, input='{"v": 1}')["executionArn"]
        described = wait_for_end(client, execution)
        assert (described["status"], json.loads(described["output"])) == ("SUCCEEDED", {"v": 1})
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        server.stop()
