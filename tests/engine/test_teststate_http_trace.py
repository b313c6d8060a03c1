"""TestState at TRACE shows an HTTP Task's real request and response, secrets redacted.

A real HTTP server on 127.0.0.1 (reachable only because the operator's
allow-list says so) answers an ``arn:aws:states:::http:invoke`` Task run
through `Engine.test_state`, ``stepwise test-state`` and the HTTP API's
TestState; ``inspectionData.request`` and ``.response`` have AWS's shapes
(every member a string) and what was really sent and read, with the
connection's credentials and cookies shown only as redacted. DEBUG shows
neither, as on AWS.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from activities.http import REDACTED
from activities.netpolicy import HttpPolicy, parse_connection
from activities.registry import Registry
from engine import Engine
from tests.engine.test_cli import invoke
from tests.http.support import Server

ARN = "arn:aws:events:us-east-1:123456789012:connection/billing/5d9e7c1a-0000"
SECRET = "s3cret-token"


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        _Handler.seen.append({k.lower(): v for k, v in self.headers.items()})
        payload = json.dumps({"echo": body, "path": self.path}).encode()
        self.send_response(404 if self.path.startswith("/missing") else 201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "session=also-secret")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    _Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def http_task(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::http:invoke",
        "Parameters": {
            "ApiEndpoint": url,
            "Method": "POST",
            "Headers": {"X-Request": "visible"},
            "RequestBody": {"amount.$": "$.amount"},
            **extra,
        },
        "End": True,
    }


def test_trace_shows_the_real_request_and_response_without_secrets(endpoint: str) -> None:
    registry = Registry()
    registry.http_policy = HttpPolicy(
        allow=("127.0.0.1",),
        connections={"billing": parse_connection("billing", {"Bearer": SECRET})},
    )
    task = http_task(f"{endpoint}/pay", Authentication={"ConnectionArn": ARN})
    engine = Engine(worker=False, registry=registry)
    answer = anyio.run(lambda: engine.test_state(task, {"amount": 12}, inspection_level="TRACE"))
    assert answer["status"] == "SUCCEEDED"
    assert _Handler.seen[-1]["authorization"] == f"Bearer {SECRET}"  # really sent
    data = answer["inspectionData"]
    request, response = data["request"], data["response"]
    assert set(request) == {"protocol", "method", "url", "headers", "body"}
    assert set(response) == {"protocol", "statusCode", "statusMessage", "headers", "body"}
    assert all(isinstance(v, str) for v in [*request.values(), *response.values()])
    assert (request["protocol"], request["method"]) == ("http", "POST")
    assert request["url"] == f"{endpoint}/pay"
    assert json.loads(request["body"]) == {"amount": 12}
    assert "X-Request: visible" in request["headers"]
    assert f"Authorization: {REDACTED}" in request["headers"]
    assert (response["statusCode"], response["statusMessage"]) == ("201", "Created")
    assert json.loads(response["body"]) == {"echo": '{"amount": 12}', "path": "/pay"}
    assert f"Set-Cookie: {REDACTED}" in response["headers"]
    assert SECRET not in json.dumps(answer)
    # The Task's result carries the response headers, as on AWS; the inspection hides them.
    assert "also-secret" not in json.dumps([request, response])

    debug = anyio.run(lambda: engine.test_state(task, {"amount": 12}, inspection_level="DEBUG"))
    assert "request" not in debug["inspectionData"]
    assert "response" not in debug["inspectionData"]


def test_trace_shows_a_failed_call_and_obeys_the_allow_list(endpoint: str) -> None:
    registry = Registry()
    registry.allow_http_to("127.0.0.1")
    engine = Engine(worker=False, registry=registry)
    failed = anyio.run(
        lambda: engine.test_state(
            http_task(f"{endpoint}/missing"), {"amount": 1}, inspection_level="TRACE"
        )
    )
    assert (failed["status"], failed["error"]) == ("FAILED", "States.Http.StatusCode.404")
    assert failed["inspectionData"]["response"]["statusCode"] == "404"

    refused = anyio.run(
        lambda: Engine(worker=False).test_state(
            http_task(f"{endpoint}/pay"), {"amount": 1}, inspection_level="TRACE"
        )
    )
    assert refused["error"] == "Stepwise.Http.Forbidden"
    assert "request" not in refused["inspectionData"]  # nothing was sent
    assert len(_Handler.seen) == 1  # only the 404 call reached the server


def test_trace_from_the_command_line_and_the_http_api(
    endpoint: str, sqlite_url: str, tmp_path: Path
) -> None:
    definition = tmp_path / "task.json"
    definition.write_text(json.dumps(http_task(f"{endpoint}/pay")))
    args = ["test-state", str(definition), "--input", '{"amount": 3}', "--inspection-level"]
    result = invoke([*args, "trace", "--allow-http-to", "127.0.0.1"])
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "SUCCEEDED"
    assert answer["inspectionData"]["request"]["url"] == f"{endpoint}/pay"
    assert answer["inspectionData"]["response"]["statusCode"] == "201"

    server = Server(sqlite_url, tmp_path / "server.log", "--allow-http-to", "127.0.0.1")
    server.start()
    try:
        tested = server.client().test_state(
            definition=json.dumps(http_task(f"{endpoint}/pay")),
            roleArn="arn:aws:iam::123456789012:role/test",
            input='{"amount": 4}',
            inspectionLevel="TRACE",
        )
    finally:
        server.stop()
    assert tested["status"] == "SUCCEEDED"
    inspection = tested["inspectionData"]
    assert json.loads(inspection["request"]["body"]) == {"amount": 4}
    assert inspection["response"]["statusMessage"] == "Created"
