"""Engine metrics through the SDK's InMemoryMetricReader, computed from a real history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from engine import Event, ExecutionRecord
from engine.telemetry import (
    EngineMetrics,
    Telemetry,
    TraceEmitter,
    build_spans,
    record_commit_metrics,
)
from engine.telemetry.metrics import metric_readers_from_env
from tests.telemetry import FAILING, RICH, run


@pytest.fixture(scope="module")
def histories(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[tuple[ExecutionRecord, list[Event]]]:
    path = tmp_path_factory.mktemp("metrics") / "stepwise.db"
    return [run(f"sqlite:///{path}", RICH), run(f"sqlite:///{path}", FAILING)]


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = (point.count, point.sum)  # type: ignore[union-attr]
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return found


def test_counts_and_durations_from_history(
    histories: list[tuple[ExecutionRecord, list[Event]]],
) -> None:
    reader = InMemoryMetricReader()
    metrics = EngineMetrics(MeterProvider(metric_readers=[reader]))
    for record, events in histories:
        record_commit_metrics(metrics, record, events, build_spans(record, events))
    found = points(reader)
    started = {a["stepwise.machine.name"]: v for a, v in found["stepwise.executions.started"]}
    assert sorted(started.values()) == [1, 1]
    finished = sorted(
        (a["stepwise.execution.status"], v) for a, v in found["stepwise.executions.finished"]
    )
    assert finished == [("FAILED", 1), ("SUCCEEDED", 1)]
    attempts = {a["stepwise.task.resource"]: v for a, v in found["stepwise.task.attempts"]}
    assert attempts == {"flaky": 2, "boom": 2, "echo": 2}
    failures = {
        (a["stepwise.task.resource"], a["error.type"]): v
        for a, v in found["stepwise.task.failures"]
    }
    assert failures == {("flaky", "Custom.Flaky"): 1, ("boom", "Custom.Boom"): 2}
    states = {a["stepwise.state.type"]: v[0] for a, v in found["stepwise.state.duration"]}
    assert states == {"Pass": 3, "Parallel": 1, "Map": 1, "Task": 5, "Succeed": 1}
    (retry_state,) = [
        v for a, v in found["stepwise.state.duration"] if a["stepwise.state.type"] == "Parallel"
    ]
    assert retry_state[1] >= 1.0  # the branch waited out a one-second retry interval
    assert sum(v[0] for _, v in found["stepwise.execution.duration"]) == 2


def test_queue_lag_and_leases() -> None:
    reader = InMemoryMetricReader()
    metrics = EngineMetrics(MeterProvider(metric_readers=[reader]))
    due = datetime(2030, 1, 1, tzinfo=UTC)
    metrics.record_claim(due, due + timedelta(seconds=2.5))
    metrics.record_claim(due, due - timedelta(seconds=1))  # claimed before due: no lag
    metrics.record_claim(None, due)
    held = {"a": 1, "b": 2, "c": 3}
    metrics.watch_leases(lambda: len(held))
    metrics.lease_acquired()
    metrics.lease_acquired()
    metrics.lease_released()
    found = points(reader)
    assert found["stepwise.queue.lag"] == [({}, (2, 2.5))]
    assert found["stepwise.leases.held"] == [({}, 3)]
    assert found["stepwise.leases.active"] == [({}, 1)]


def test_live_pipeline_records_metrics_per_commit(
    histories: list[tuple[ExecutionRecord, list[Event]]],
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    live = Telemetry(TraceEmitter([]), EngineMetrics(provider), provider)
    record, events = histories[0]
    for start in range(0, len(events), 3):
        live.on_commit(record, events[start : start + 3])
    live.flush()
    found = points(reader)
    assert [v for _, v in found["stepwise.executions.finished"]] == [1]
    assert sum(v[0] for _, v in found["stepwise.state.duration"]) == 10
    live.shutdown()


def test_metric_reader_settings() -> None:
    assert metric_readers_from_env(env={}) == []
    assert metric_readers_from_env(env={"OTEL_METRICS_EXPORTER": "none"}) == []
    readers = metric_readers_from_env("http://127.0.0.1:9", env={})
    assert len(readers) == 1
    exporter = readers[0]._exporter  # type: ignore[attr-defined]
    assert exporter._endpoint == "http://127.0.0.1:9/v1/metrics"
    for reader in readers:
        reader.shutdown()
