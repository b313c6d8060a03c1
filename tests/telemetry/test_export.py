"""Spans through the SDK's in-memory exporter, OTLP/JSON, exporter settings, and a real crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import engine.telemetry as telemetry
from engine import Engine, Event, ExecutionRecord
from engine.store import Store
from engine.telemetry import (
    Telemetry,
    TelemetryConfigError,
    TraceEmitter,
    build_spans,
    to_otlp_json,
)
from engine.telemetry.export import otlp_endpoint, span_exporters_from_env
from tests.telemetry import RICH, SECRET, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExecutionRecord, list[Event]]:
    path = tmp_path_factory.mktemp("rich") / "stepwise.db"
    return run(f"sqlite:///{path}", RICH)


def test_emitter_exports_sdk_spans_with_links(rich: tuple[ExecutionRecord, list[Event]]) -> None:
    record, events = rich
    memory = InMemorySpanExporter()
    emitter = TraceEmitter([memory], batch=False)
    emitter.emit_completed(record, events)
    emitter.shutdown()
    spans = memory.get_finished_spans()
    assert len(spans) == 20
    by_id = {s.context.span_id: s for s in spans}
    assert {s.context.trace_id for s in spans} == {int(record.trace_id, 16)}
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == f"execution {record.machine}"
    for span in spans:
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
        if span.parent is not None:
            parent = by_id[span.parent.span_id]
            assert parent.start_time <= span.start_time  # type: ignore[operator]
            assert span.end_time <= parent.end_time  # type: ignore[operator]
    tasks = [s for s in spans if s.name.startswith("task ")]
    assert {s.kind for s in tasks} == {SpanKind.CLIENT}
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert sorted(s.status.description or "" for s in failed) == ["Custom.Boom", "Custom.Flaky"]
    assert all(by_id[s.parent.span_id].name in ("A1", "B1") for s in failed if s.parent)
    retry = [e for s in spans for e in s.events if e.name == "stepwise.retry"]
    assert [e.attributes["error.type"] for e in retry if e.attributes] == ["Custom.Flaky"]
    assert root.resource.attributes["service.name"] == "stepwise"
    for span in spans:
        assert not any(SECRET in str(v) for v in (span.attributes or {}).values())


def test_commit_by_commit_through_telemetry_emits_each_span_once(
    rich: tuple[ExecutionRecord, list[Event]],
) -> None:
    record, events = rich
    memory = InMemorySpanExporter()
    live = Telemetry(TraceEmitter([memory]))
    for start in range(0, len(events), 5):  # commits of five events each
        live.on_commit(record, events[start : start + 5])
    live.shutdown()
    emitted = Counter(s.context.span_id for s in memory.get_finished_spans())
    assert set(emitted.values()) == {1}
    assert len(emitted) == len(build_spans(record, events))


def test_on_commit_is_a_no_op_while_telemetry_is_off(
    rich: tuple[ExecutionRecord, list[Event]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record, events = rich
    telemetry.shutdown()
    assert telemetry.configure(env={}) is None
    assert telemetry.active() is None
    capsys.readouterr()
    # Settings in the environment do not switch telemetry on behind the caller's back:
    # only configure() does.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert telemetry.on_commit(record, events) is None  # type: ignore[func-returns-value]
    assert telemetry.active() is None
    assert capsys.readouterr() == ("", "")


def test_configure_from_otel_settings(
    capsys: pytest.CaptureFixture[str], rich: tuple[ExecutionRecord, list[Event]]
) -> None:
    record, events = rich
    configured = telemetry.configure(
        env={"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"}
    )
    assert configured is not None and telemetry.active() is configured
    telemetry.on_commit(record, events)
    telemetry.shutdown()
    assert telemetry.active() is None
    err = capsys.readouterr().err
    assert err.count('"name": "task flaky"') == 2
    assert record.trace_id in err


def test_exporter_settings() -> None:
    assert span_exporters_from_env(env={}) == []
    assert span_exporters_from_env(env={"OTEL_TRACES_EXPORTER": "none"}) == []
    (http,) = span_exporters_from_env(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert type(http).__module__.endswith("http.trace_exporter")
    (explicit,) = span_exporters_from_env("http://127.0.0.1:9", env={})
    assert explicit._endpoint == "http://127.0.0.1:9/v1/traces"  # type: ignore[attr-defined]
    assert otlp_endpoint("http://h:6006/v1/traces") == "http://h:6006/v1/traces"
    assert otlp_endpoint("https://h/") == "https://h/v1/traces"
    with pytest.raises(TelemetryConfigError, match="http"):
        otlp_endpoint("ftp://h")
    with pytest.raises(TelemetryConfigError, match="zipkin"):
        span_exporters_from_env(env={"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TelemetryConfigError, match="http/json"):
        span_exporters_from_env(
            env={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
        )


def test_otlp_json_mapping(rich: tuple[ExecutionRecord, list[Event]]) -> None:
    record, events = rich
    document = to_otlp_json(build_spans(record, events))
    (resource_spans,) = document["resourceSpans"]
    (scope_spans,) = resource_spans["scopeSpans"]
    assert scope_spans["scope"]["name"] == "stepwise"
    spans = scope_spans["spans"]
    assert len(spans) == 20
    root = next(s for s in spans if "parentSpanId" not in s)
    assert root["traceId"] == record.trace_id and len(root["spanId"]) == 16
    assert int(root["startTimeUnixNano"]) == int(record.start_date.timestamp() * 1e6) * 1000
    assert isinstance(root["endTimeUnixNano"], str)
    attributes = {a["key"]: a["value"] for a in root["attributes"]}
    assert attributes["stepwise.machine.version"] == {"intValue": str(record.version)}
    failed = [s for s in spans if s["status"]]
    assert {s["status"]["code"] for s in failed} == {2}
    assert {s["kind"] for s in spans if s["name"].startswith("task ")} == {3}


WORKER = textwrap.dedent(
    """
    import sys, time
    from activities.registry import Registry
    from engine import Engine

    def slow(value):
        time.sleep(600)

    registry = Registry()
    registry.register("slow", slow)
    definition = {
        "StartAt": "Before",
        "States": {
            "Before": {"Type": "Pass", "Next": "Slow"},
            "Slow": {"Type": "Task", "Resource": "slow", "Next": "After"},
            "After": {"Type": "Pass", "End": True},
        },
    }
    with Engine(sys.argv[1], registry=registry, lease_seconds=1.0) as engine:
        engine.create_state_machine_sync("crashy", definition)
        record = engine.start_sync("crashy", {"n": 1}, name="crash-1")
        engine.wait_sync(record.execution_id)
    """
)


@pytest.mark.slow
def test_one_trace_across_a_sigkilled_worker_and_its_successor(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stepwise.db'}"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, str(script), url], cwd=ROOT, env=env)
    try:
        before: list[Event] = []
        deadline = time.monotonic() + 60
        while not any(e.type == "TaskStarted" for e in before):
            assert time.monotonic() < deadline, "the worker never started the task"
            time.sleep(0.1)
            try:
                store = Store(url)
                try:
                    record = store.get_execution("crash-1")
                    before = store.history(record.execution_id)
                finally:
                    store.close()
            except Exception:
                before = []
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    # What the killed worker committed is all it could ever have emitted.
    store = Store(url)
    try:
        record = store.get_execution("crash-1")
        before = store.history(record.execution_id)
    finally:
        store.close()

    with Engine(url, registry=None, lease_seconds=1.0) as successor:
        successor.register_activity("slow", lambda value: {"done": value})
        final = successor.wait_sync(record.execution_id, timeout=60)
        history = successor.history_sync(record.execution_id)
        assert final.status == "SUCCEEDED"

        first_worker, second_worker = InMemorySpanExporter(), InMemorySpanExporter()
        TraceEmitter([first_worker], batch=False).emit_completed(record, before)
        after = [e for e in history if e.event_id > before[-1].event_id]
        store_history = successor.store.history
        TraceEmitter([second_worker], batch=False, history=store_history).emit_completed(
            final, after
        )

    spans = [*first_worker.get_finished_spans(), *second_worker.get_finished_spans()]
    assert {s.context.trace_id for s in spans} == {int(record.trace_id, 16)}
    assert Counter(s.context.span_id for s in spans) == Counter(
        int(s.span_id, 16) for s in build_spans(record, history)
    )
    names = sorted(s.name for s in spans)
    assert names == sorted(["After", "Before", "Slow", "execution crashy", "task slow"])
    assert [s.name for s in first_worker.get_finished_spans()] == ["Before"]
    by_id = {s.context.span_id: s for s in spans}
    task = next(s for s in spans if s.name == "task slow")
    assert task.parent is not None and by_id[task.parent.span_id].name == "Slow"
    scheduled = next(e for e in history if e.type == "TaskScheduled")
    assert task.start_time == int(scheduled.timestamp.timestamp() * 1e6) * 1000
