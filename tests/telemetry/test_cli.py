"""`stepwise trace`: OTLP/JSON, the tree, and end to end into a real OTLP/HTTP receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from engine import Event, ExecutionRecord
from engine.cli.trace import trace
from tests.telemetry import RICH, SECRET, run


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ExecutionRecord, list[Event]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'stepwise.db'}"
    record, events = run(url, RICH)
    return url, record, events


class Receiver(ThreadingHTTPServer):
    """A tiny OTLP/HTTP collector: POST /v1/traces with protobuf, decoded and kept."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.paths.append(self.path)
        assert self.headers["Content-Type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append(request)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_trace_exports_to_a_real_otlp_http_receiver(
    executed: tuple[str, ExecutionRecord, list[Event]], receiver: Receiver
) -> None:
    url, record, _ = executed
    port = receiver.server_address[1]
    result = CliRunner().invoke(
        trace, [record.name, "--db", url, "--otlp", f"http://127.0.0.1:{port}"], env={}
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"exported 20 spans of trace {record.trace_id}"
    assert receiver.paths == ["/v1/traces"]
    spans = [
        span
        for request in receiver.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert len(spans) == 20
    assert {span.trace_id.hex() for span in spans} == {record.trace_id}
    by_id = {span.span_id: span for span in spans}
    (root,) = [s for s in spans if not s.parent_span_id]
    assert root.name == f"execution {record.machine}"
    assert {by_id[s.parent_span_id].name for s in spans if s.name.startswith("branch")} == {"Fan"}
    a1 = next(s for s in spans if s.name == "A1")
    assert by_id[a1.parent_span_id].name == "branch 0"
    for span in spans:
        assert span.start_time_unix_nano <= span.end_time_unix_nano
        if span.parent_span_id:
            parent = by_id[span.parent_span_id]
            assert parent.start_time_unix_nano <= span.start_time_unix_nano
            assert span.end_time_unix_nano <= parent.end_time_unix_nano
        for attribute in span.attributes:
            assert SECRET not in str(attribute.value)
    errors = sorted(s.status.message for s in spans if s.status.code == 2)
    assert errors == ["Custom.Boom", "Custom.Flaky"]


def test_trace_with_payloads_carries_redacted_input(
    executed: tuple[str, ExecutionRecord, list[Event]], receiver: Receiver
) -> None:
    url, record, _ = executed
    port = receiver.server_address[1]
    result = CliRunner().invoke(
        trace,
        [
            record.name,
            "--db",
            url,
            "--otlp",
            f"http://127.0.0.1:{port}/v1/traces",
            "--trace-payloads",
        ],
        env={},
    )
    assert result.exit_code == 0, result.output
    spans = [
        s
        for r in receiver.requests
        for rs in r.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    root = next(s for s in spans if not s.parent_span_id)
    inputs = [a.value.string_value for a in root.attributes if a.key == "stepwise.input"]
    assert inputs == ['{"password":"[REDACTED]","a":1}']


def test_trace_format_json_prints_otlp_json(
    executed: tuple[str, ExecutionRecord, list[Event]],
) -> None:
    url, record, _ = executed
    result = CliRunner().invoke(
        trace, [record.execution_id, "--db", url, "--format", "json"], env={}
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert len(spans) == 20
    assert {s["traceId"] for s in spans} == {record.trace_id}


def test_trace_format_tree(executed: tuple[str, ExecutionRecord, list[Event]]) -> None:
    url, record, _ = executed
    result = CliRunner().invoke(trace, [record.name, "--db", url, "--format", "tree"], env={})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"trace {record.trace_id}  {record.execution_id}  SUCCEEDED"
    assert lines[2].endswith(f"execution {record.machine}")
    assert any(line.endswith("│  │  ├─ A1 (Task)  [retry: Custom.Flaky]") for line in lines)
    assert any(line.endswith("├─ task flaky attempt 0  ✗ Custom.Flaky") for line in lines)
    assert any(
        line.endswith("└─ B1 (Task)  [caught: Custom.Boom]")
        or "B1 (Task)  [caught: Custom.Boom]" in line
        for line in lines
    )
    assert lines[-1].endswith("└─ Done (Succeed)")


def test_trace_errors(executed: tuple[str, ExecutionRecord, list[Event]], tmp_path: Path) -> None:
    url, record, _ = executed
    missing = CliRunner().invoke(trace, ["no-such-execution", "--db", url], env={})
    assert missing.exit_code == 2
    assert "ExecutionDoesNotExist" in missing.output
    unconfigured = CliRunner().invoke(trace, [record.name, "--db", url], env={})
    assert unconfigured.exit_code == 2
    assert "no trace exporter configured" in unconfigured.output
    bad_url = CliRunner().invoke(trace, [record.name, "--db", url, "--otlp", "ftp://x"], env={})
    assert bad_url.exit_code == 2
    down = CliRunner().invoke(
        trace, [record.name, "--db", url, "--otlp", "http://127.0.0.1:1/v1/traces"], env={}
    )
    assert down.exit_code == 3
