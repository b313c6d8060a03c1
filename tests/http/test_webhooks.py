"""Webhook triggers through a real `stepwise serve`: signed or bearer requests start executions.

A trigger is made with the CLI (``stepwise triggers create NAME --machine M
--webhook``) on the server's database, then ``POST /triggers/NAME`` is sent
with http.client, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import time
from typing import Any

from engine.http.webhooks import signature
from tests.http.support import ROOT, Server
from tests.http.test_api import ROLE, wait_for_end

ECHO = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
WHSEC = "whsec_" + base64.b64encode(b"a test key of thirty-two bytes!!").decode()
BEARER = "bearer-secret-for-tests"


def stepwise(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args, "--db", server.db_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def post(
    server: Server, name: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST",
            f"/triggers/{name}",
            body=body,
            headers={"Content-Type": "application/json", **headers},
        )
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        connection.close()


def signed(body: bytes, *, secret: str = WHSEC, message_id: str = "msg_1") -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def _setup(server: Server, machine: str, trigger: str, secret: str) -> Any:
    client = server.client()
    client.create_state_machine(name=machine, definition=json.dumps(ECHO), roleArn=ROLE)
    made = stepwise(
        server, "triggers", "create", trigger, "--machine", machine, "--webhook",
        "--secret", secret, "-o", "json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert secret not in made.stdout
    return client


def test_a_signed_request_starts_one_execution_per_idempotency_key(server: Server) -> None:
    client = _setup(server, "hooked", "on-order", WHSEC)
    body = json.dumps({"order": 7}).encode()
    headers = {**signed(body), "Idempotency-Key": "order-7"}

    status, first = post(server, "on-order", body, headers)
    assert status == 202, first
    assert set(first) == {"executionArn", "startDate"}
    done = wait_for_end(client, first["executionArn"])
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["input"]) == {"order": 7}

    # A retry of the same request (even after it finished) names the same execution.
    status, again = post(server, "on-order", body, {**signed(body), "Idempotency-Key": "order-7"})
    assert (status, again["executionArn"]) == (200, first["executionArn"])
    listed = client.list_executions(stateMachineArn=done["stateMachineArn"])["executions"]
    assert len(listed) == 1

    # The same key with another body is refused, and starts nothing.
    other = json.dumps({"order": 8}).encode()
    status, refused = post(
        server, "on-order", other, {**signed(other), "Idempotency-Key": "order-7"}
    )
    assert status == 409, refused
    assert len(client.list_executions(stateMachineArn=done["stateMachineArn"])["executions"]) == 1


def test_refusals_answer_without_starting_anything(server: Server) -> None:
    client = _setup(server, "guarded", "guarded-hook", WHSEC)
    body = b'{"a": 1}'
    assert post(server, "guarded-hook", body, signed(body, secret="whsec_" + "QUJD" * 8))[0] == 401
    assert post(server, "guarded-hook", body, {})[0] == 401
    stale = signed(body)
    stale["webhook-timestamp"] = str(int(time.time()) - 3600)
    stale["webhook-signature"] = signature(WHSEC, "msg_1", stale["webhook-timestamp"], body)
    status, answer = post(server, "guarded-hook", body, stale)
    assert status == 401
    assert WHSEC not in json.dumps(answer)
    assert post(server, "no-such-hook", body, signed(body))[0] == 404
    bad = b"{not json"
    status, answer = post(server, "guarded-hook", bad, signed(bad))
    assert status == 400 and "message" in answer
    huge = json.dumps({"x": "y" * (256 * 1024)}).encode()
    assert post(server, "guarded-hook", huge, signed(huge))[0] == 413

    paused = stepwise(server, "triggers", "pause", "guarded-hook", "-o", "json")
    assert json.loads(paused.stdout)["state"] == "DISABLED"
    assert post(server, "guarded-hook", body, signed(body))[0] == 409
    assert stepwise(server, "triggers", "resume", "guarded-hook").returncode == 0
    machines = client.list_state_machines()["stateMachines"]
    guarded = next(m["stateMachineArn"] for m in machines if m["name"] == "guarded")
    assert client.list_executions(stateMachineArn=guarded)["executions"] == []


def test_a_bearer_secret_and_the_cli_views_of_a_webhook_trigger(server: Server) -> None:
    client = _setup(server, "beared", "bearer-hook", BEARER)
    body = b'{"from": "bearer"}'
    status, answer = post(server, "bearer-hook", body, {"Authorization": f"Bearer {BEARER}"})
    assert status == 202, answer
    assert wait_for_end(client, answer["executionArn"])["status"] == "SUCCEEDED"
    assert post(server, "bearer-hook", body, {"Authorization": "Bearer wrong-secret-123"})[0] == 401

    described = stepwise(server, "triggers", "describe", "bearer-hook", "-o", "json")
    document = json.loads(described.stdout)
    assert document["webhook"] == "/triggers/bearer-hook"
    assert document["stateMachine"] == "beared"
    assert BEARER not in described.stdout
    listed = stepwise(server, "triggers", "list")
    assert "bearer-hook" in listed.stdout and BEARER not in listed.stdout
    assert stepwise(server, "triggers", "delete", "bearer-hook").returncode == 0
    assert post(server, "bearer-hook", body, {"Authorization": f"Bearer {BEARER}"})[0] == 404
    log = server.log.read_text()
    assert BEARER not in log and WHSEC not in log


def test_create_without_a_secret_prints_a_new_one_once(server: Server) -> None:
    client = server.client()
    client.create_state_machine(name="fresh", definition=json.dumps(ECHO), roleArn=ROLE)
    made = stepwise(
        server, "triggers", "create", "fresh-hook", "--machine", "fresh", "--webhook", "-o", "json"
    )
    secret = json.loads(made.stdout)["secret"]
    assert secret.startswith("whsec_")
    assert secret not in stepwise(server, "triggers", "describe", "fresh-hook").stdout
    body = b"{}"
    status, answer = post(server, "fresh-hook", body, signed(body, secret=secret))
    assert status == 202, answer
