"""OTLP over gRPC: `stepwise trace --otlp grpc://…` into a real gRPC collector on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from engine.cli.trace import trace
from tests.telemetry import RICH, run


class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def Export(self, request: Any, context: Any) -> Any:  # the gRPC method name, as generated
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(grace=None)


def test_trace_exports_over_grpc(tmp_path: Path, collector: tuple[Collector, int]) -> None:
    servicer, port = collector
    url = f"sqlite:///{tmp_path / 'stepwise.db'}"
    record, _events = run(url, RICH)
    result = CliRunner().invoke(
        trace, [record.name, "--db", url, "--otlp", f"grpc://127.0.0.1:{port}"], env={}
    )
    assert result.exit_code == 0, result.output
    spans = [
        span
        for request in servicer.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert len(spans) == 20
    assert {span.trace_id.hex() for span in spans} == {record.trace_id}
    assert sum(1 for span in spans if not span.parent_span_id) == 1
