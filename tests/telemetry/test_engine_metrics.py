"""Metrics from a running engine: executions, task attempts and queue lag, recorded live.

Telemetry is switched on process-wide with an in-memory metric reader; an
Engine with its in-process worker then runs real executions, and the
counters and histograms the worker and the commits feed must show them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import engine.telemetry as telemetry
from activities import Registry
from engine import Engine
from engine.telemetry import EngineMetrics, Telemetry, TraceEmitter


@pytest.fixture
def live() -> Iterator[tuple[InMemoryMetricReader, Any]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    active = Telemetry(TraceEmitter([spans], batch=False), EngineMetrics(provider), provider)
    previous = telemetry._active
    telemetry._active = active
    try:
        yield reader, spans
    finally:
        telemetry._active = previous
        active.shutdown()


def _names(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_worker_records_queue_lag_executions_and_spans(
    sqlite_url: str, live: tuple[InMemoryMetricReader, Any]
) -> None:
    reader, spans = live
    registry = Registry()
    registry.register("double", lambda value: value * 2)
    machine = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "double", "End": True}}}
    with Engine(sqlite_url, registry=registry) as engine:
        engine.create_state_machine_sync("m", machine)
        started = [engine.start_sync("m", i) for i in range(3)]
        finished = [engine.wait_sync(s, timeout=30) for s in started]
        telemetry.active().flush()  # type: ignore[union-attr]
    assert [f.status for f in finished] == ["SUCCEEDED"] * 3
    found = _names(reader)
    assert sum(p.count for p in found["stepwise.queue.lag"]) == 3
    assert sum(p.value for p in found["stepwise.executions.started"]) == 3
    assert sum(p.value for p in found["stepwise.executions.finished"]) == 3
    # One trace per execution: its span, the state's under it, the task attempt's under that.
    traces: dict[int, dict[str, Any]] = {}
    for span in spans.get_finished_spans():
        traces.setdefault(span.context.trace_id, {})[span.name] = span
    assert len(traces) == 3
    for trace in traces.values():
        assert sorted(trace) == ["T", "execution m", "task double"]
        assert trace["execution m"].parent is None
        assert trace["T"].parent.span_id == trace["execution m"].context.span_id
        assert trace["task double"].parent.span_id == trace["T"].context.span_id
    # No payload reached any span attribute by default.
    for span in spans.get_finished_spans():
        assert not any("input" in key or "output" in key for key in span.attributes or {})
