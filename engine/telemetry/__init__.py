"""Telemetry: OpenTelemetry traces and metrics as a view of the execution history.

One trace per execution (trace id recorded at ExecutionStarted), built from
the history events' own timestamps (`spans`), exported the OpenTelemetry way
(`export`), with engine metrics beside it (`metrics`) and the `stepwise
trace` command (`cli`). This module owns the process-wide switch: `configure`
turns telemetry on from OTEL_* settings or ``--otlp``; `on_commit` is the one
call the engine makes after each commit (a no-op while telemetry is off);
`shutdown` flushes every exporter before the process exits. The
OpenTelemetry SDK (`export`, `metrics`) loads only when `configure` finds an
exporter to build, or when one of their names is first used from here (PEP
562): a process with telemetry off never imports it. The trace builder
(`spans`) loads the same way; the ids a running task needs are in `ids`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.telemetry.ids import span_id_for, task_span_id, traceparent_for

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace.export import SpanExporter

    from engine.store import Event, ExecutionRecord
    from engine.telemetry.export import (
        HistoryLoader,
        TelemetryConfigError,
        TraceEmitter,
        to_otlp_json,
        to_readable_spans,
    )
    from engine.telemetry.metrics import EngineMetrics, record_commit_metrics
    from engine.telemetry.spans import (
        DEFAULT_SECRET_FIELDS,
        PayloadPolicy,
        SpanEvent,
        SpanRecord,
        TraceBuilder,
        build_spans,
    )

__all__ = [
    "DEFAULT_SECRET_FIELDS",
    "EngineMetrics",
    "PayloadPolicy",
    "SpanEvent",
    "SpanRecord",
    "Telemetry",
    "TelemetryConfigError",
    "TraceBuilder",
    "TraceEmitter",
    "active",
    "build_spans",
    "configure",
    "on_commit",
    "payload_policy",
    "record_claim",
    "record_commit_metrics",
    "shutdown",
    "span_id_for",
    "task_span_id",
    "to_otlp_json",
    "to_readable_spans",
    "traceparent_for",
    "watch_leases",
]


class Telemetry:
    """A configured pipeline: the trace emitter, and metrics when a reader is configured."""

    def __init__(
        self,
        emitter: TraceEmitter,
        metrics: EngineMetrics | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.emitter = emitter
        self.metrics = metrics
        self.meter_provider = meter_provider
        if metrics is not None:
            from engine.telemetry.metrics import record_commit_metrics

            emitter.on_emitted = lambda record, events, spans: record_commit_metrics(
                metrics, record, events, spans
            )

    def on_commit(
        self,
        record: ExecutionRecord,
        new_events: Sequence[Event],
        history: HistoryLoader | None = None,
    ) -> None:
        """Hand newly committed events to the background emitter (non-blocking)."""
        self.emitter.submit(record, new_events, history)

    def flush(self) -> None:
        """Export everything handed over so far."""
        self.emitter.flush()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()

    def shutdown(self) -> None:
        """Flush, then shut the exporters down."""
        self.emitter.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


_active: Telemetry | None = None
# The settings that can turn an exporter on (see `export.span_exporters_from_env`
# and `metrics.metric_readers_from_env`); with none of them set and no --otlp,
# `configure` has nothing to build.
_EXPORTER_SETTINGS = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
_lock = threading.Lock()


def payload_policy(
    trace_payloads: bool = False, env: Mapping[str, str] | None = None
) -> PayloadPolicy:
    """The payload policy: off unless `trace_payloads`; secret field names from
    $STEPWISE_SECRET_FIELDS (comma-separated) on top of the defaults."""
    from engine.telemetry.spans import DEFAULT_SECRET_FIELDS, PayloadPolicy

    env = os.environ if env is None else env
    extra = {
        f.strip().lower() for f in env.get("STEPWISE_SECRET_FIELDS", "").split(",") if f.strip()
    }
    return PayloadPolicy(enabled=trace_payloads, secret_fields=DEFAULT_SECRET_FIELDS | extra)


def configure(
    *,
    otlp: str | None = None,
    trace_payloads: bool = False,
    history: HistoryLoader | None = None,
    env: Mapping[str, str] | None = None,
    metrics: bool = True,
) -> Telemetry | None:
    """Switch process-wide telemetry on from the OTEL_* settings and `otlp`; returns it.

    Returns None (telemetry stays off) when no exporter is configured. A
    previous configuration is shut down first. Raises TelemetryConfigError for
    settings that cannot be honoured.
    """
    global _active
    settings = os.environ if env is None else env
    span_exporters: list[SpanExporter] = []
    readers: list[MetricReader] = []
    # With no --otlp and none of the settings, there is nothing to build: the
    # OpenTelemetry SDK is not even loaded.
    if otlp or any(settings.get(setting) for setting in _EXPORTER_SETTINGS):
        from engine.telemetry.export import span_exporters_from_env
        from engine.telemetry.metrics import metric_readers_from_env

        span_exporters = span_exporters_from_env(otlp, env)
        readers = metric_readers_from_env(otlp, env) if metrics else []
    with _lock:
        previous, _active = _active, None
    if previous is not None:
        previous.shutdown()
    if not span_exporters and not readers:
        return None
    from opentelemetry.sdk.metrics import MeterProvider

    from engine.telemetry.export import TraceEmitter, make_resource
    from engine.telemetry.metrics import EngineMetrics

    resource = make_resource(env)
    # No atexit shutdown of its own: `shutdown` bounds the last flush (see bounded_shutdown).
    meter_provider = (
        MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
        if readers
        else None
    )
    emitter = TraceEmitter(
        span_exporters,
        payloads=payload_policy(trace_payloads, env),
        history=history,
        resource=resource,
    )
    telemetry = Telemetry(
        emitter, EngineMetrics(meter_provider) if meter_provider else None, meter_provider
    )
    with _lock:
        _active = telemetry
    return telemetry


def active() -> Telemetry | None:
    """The configured telemetry, or None while it is off."""
    return _active


def on_commit(
    record: ExecutionRecord,
    new_events: Sequence[Event],
    history: HistoryLoader | None = None,
) -> None:
    """The engine's hook after each successful commit: emit the spans it completed.

    `history(execution_id)` loads the full history (e.g. ``store.history``); it
    is called, off the event loop, only when this process has not seen the
    earlier events (the first commit after a crash or a takeover). A no-op
    while telemetry is off; never raises.
    """
    telemetry = _active
    if telemetry is not None and new_events:
        telemetry.on_commit(record, new_events, history)


def record_claim(due_at: datetime | None, claimed_at: datetime) -> None:
    """The worker's hook when it claims work that was due at `due_at` (queue lag)."""
    telemetry = _active
    if telemetry is not None and telemetry.metrics is not None:
        telemetry.metrics.record_claim(due_at, claimed_at)


def watch_leases(source: Callable[[], int]) -> None:
    """Report `source()` as the active lease count (e.g. ``lambda: len(keeper.held)``)."""
    telemetry = _active
    if telemetry is not None and telemetry.metrics is not None:
        telemetry.metrics.watch_leases(source)


def shutdown() -> None:
    """Flush and shut down the configured exporters (call before the process exits)."""
    global _active
    with _lock:
        telemetry, _active = _active, None
    if telemetry is not None:
        from engine.telemetry.export import bounded_shutdown

        bounded_shutdown(telemetry.shutdown)  # ≤ 2 s and one warning when a collector is down


_EXPORT_NAMES = frozenset(
    {"HistoryLoader", "TelemetryConfigError", "TraceEmitter", "to_otlp_json", "to_readable_spans"}
)


_SPANS_NAMES = frozenset(
    {
        "DEFAULT_SECRET_FIELDS",
        "PayloadPolicy",
        "SpanEvent",
        "SpanRecord",
        "TraceBuilder",
        "build_spans",
    }
)


def __getattr__(name: str) -> Any:
    # The names whose modules load the OpenTelemetry SDK, loaded on first use;
    # the trace builder's (`spans`), which a process with telemetry off never uses.
    if name in _SPANS_NAMES:
        from engine.telemetry import spans

        value = getattr(spans, name)
    elif name in _EXPORT_NAMES:
        from engine.telemetry import export

        value = getattr(export, name)
    elif name in ("EngineMetrics", "record_commit_metrics"):
        from engine.telemetry import metrics

        value = getattr(metrics, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
