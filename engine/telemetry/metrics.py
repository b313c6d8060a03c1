"""Engine metrics through the OpenTelemetry metrics API, computed from committed history.

`EngineMetrics` owns the instruments: executions started and finished (by
status), execution, state (by state type) and task-attempt durations, task
attempts and failures (by resource), queue lag (how late work was claimed
after it was due) and active leases. Counts come from the events of each
commit (`record_commit_metrics`); durations from the spans those events
complete, so they use the events' own timestamps like the traces do.
Exporters follow ``OTEL_METRICS_EXPORTER`` / ``OTEL_EXPORTER_OTLP_*`` and
``--otlp`` like the span exporters (see `metric_readers_from_env`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)

from engine.store import Event, ExecutionRecord
from engine.telemetry.ids import EXECUTION, STATE, TASK
from engine.telemetry.spans import SpanRecord

__all__ = ["EngineMetrics", "metric_readers_from_env", "record_commit_metrics"]

_FINISHED = {
    "ExecutionSucceeded": "SUCCEEDED",
    "ExecutionFailed": "FAILED",
    "ExecutionTimedOut": "TIMED_OUT",
    "ExecutionAborted": "ABORTED",
}


class EngineMetrics:
    """The engine's instruments on one meter (from `meter_provider`, else the global one)."""

    def __init__(self, meter_provider: metrics_api.MeterProvider | None = None) -> None:
        provider = meter_provider or metrics_api.get_meter_provider()
        meter = provider.get_meter("stepwise", "0.1.0")
        self.executions_started = meter.create_counter(
            "stepwise.executions.started", unit="{execution}", description="Executions started."
        )
        self.executions_finished = meter.create_counter(
            "stepwise.executions.finished",
            unit="{execution}",
            description="Executions ended, by stepwise.execution.status.",
        )
        self.execution_duration = meter.create_histogram(
            "stepwise.execution.duration", unit="s", description="Execution start to end."
        )
        self.state_duration = meter.create_histogram(
            "stepwise.state.duration",
            unit="s",
            description="State entered to exited, by stepwise.state.type.",
        )
        self.task_attempts = meter.create_counter(
            "stepwise.task.attempts", unit="{attempt}", description="Task attempts scheduled."
        )
        self.task_failures = meter.create_counter(
            "stepwise.task.failures",
            unit="{attempt}",
            description="Task attempts that failed or timed out, by resource and error.type.",
        )
        self.task_duration = meter.create_histogram(
            "stepwise.task.duration", unit="s", description="Task attempt scheduled to outcome."
        )
        self.queue_lag = meter.create_histogram(
            "stepwise.queue.lag",
            unit="s",
            description="How long after it was due a worker claimed an execution.",
        )
        self.active_leases = meter.create_up_down_counter(
            "stepwise.leases.active", unit="{lease}", description="Executions leased right now."
        )
        self.store_outages = meter.create_counter(
            "stepwise.store.outages",
            unit="{outage}",
            description="Times this process lost its database (one per outage, retried).",
        )
        self.store_unavailable = meter.create_up_down_counter(
            "stepwise.store.unavailable",
            unit="{outage}",
            description="1 while this process cannot reach its database, else 0.",
        )
        self.store_outage_duration = meter.create_histogram(
            "stepwise.store.outage.duration",
            unit="s",
            description="How long each outage of the database lasted, as this process saw it.",
        )
        self._lease_sources: list[Callable[[], int]] = []
        meter.create_observable_gauge(
            "stepwise.leases.held",
            callbacks=[self._observe_leases],
            unit="{lease}",
            description="Leases held by this process (from watch_leases sources).",
        )

    # -- from history -------------------------------------------------------------
    def record_events(self, record: ExecutionRecord, events: Iterable[Event]) -> None:
        """Count what `events` (newly committed) record: starts, ends, task attempts, failures."""
        machine = {"stepwise.machine.name": record.machine}
        for event in events:
            kind = event.type
            if kind == "ExecutionStarted":
                self.executions_started.add(1, machine)
            elif kind in _FINISHED:
                self.executions_finished.add(
                    1, {**machine, "stepwise.execution.status": _FINISHED[kind]}
                )
            elif kind == "TaskScheduled":
                self.task_attempts.add(1, _resource(event.details))
            elif kind in ("TaskFailed", "TaskTimedOut"):
                default = "States.Timeout" if kind == "TaskTimedOut" else "States.TaskFailed"
                self.task_failures.add(
                    1,
                    {
                        **_resource(event.details),
                        "error.type": str(event.details.get("error") or default),
                    },
                )

    def record_spans(self, spans: Iterable[SpanRecord]) -> None:
        """Record the durations of completed spans (execution, state by type, task by resource)."""
        for span in spans:
            if span.end is None:
                continue
            seconds = max(0.0, (span.end - span.start).total_seconds())
            if span.kind == STATE:
                self.state_duration.record(
                    seconds, {"stepwise.state.type": str(span.attributes["stepwise.state.type"])}
                )
            elif span.kind == TASK:
                self.task_duration.record(
                    seconds,
                    {
                        "stepwise.task.resource": str(span.attributes["stepwise.task.resource"]),
                        "error.type": span.error or "",
                    }
                    if span.error
                    else {"stepwise.task.resource": str(span.attributes["stepwise.task.resource"])},
                )
            elif span.kind == EXECUTION:
                self.execution_duration.record(
                    seconds,
                    {
                        "stepwise.machine.name": str(span.attributes["stepwise.machine.name"]),
                        "stepwise.execution.status": str(
                            span.attributes.get("stepwise.execution.status", "")
                        ),
                    },
                )

    # -- from the worker -------------------------------------------------------
    def record_claim(self, due_at: datetime | None, claimed_at: datetime) -> None:
        """Record the queue lag of one claim: claimed_at - due_at (0 when claimed early)."""
        if due_at is None:
            return
        self.queue_lag.record(max(0.0, (claimed_at - due_at).total_seconds()))

    def lease_acquired(self, count: int = 1) -> None:
        """One more execution leased by this process."""
        self.active_leases.add(count)

    def lease_released(self, count: int = 1) -> None:
        """One execution's lease released (or lost) by this process."""
        self.active_leases.add(-count)

    def outage_started(self) -> None:
        """This process lost its database (it keeps retrying)."""
        self.store_outages.add(1)
        self.store_unavailable.add(1)

    def outage_ended(self, seconds: float) -> None:
        """This process reached its database again after `seconds` without it."""
        self.store_unavailable.add(-1)
        self.store_outage_duration.record(max(0.0, seconds))

    def watch_leases(self, source: Callable[[], int]) -> None:
        """Report `source()` (e.g. ``lambda: len(keeper.held)``) as stepwise.leases.held."""
        self._lease_sources.append(source)

    def _observe_leases(self, _options: CallbackOptions) -> Iterable[Observation]:
        if not self._lease_sources:
            return []
        return [Observation(sum(source() for source in self._lease_sources))]


def _resource(details: Mapping[str, Any]) -> dict[str, str]:
    return {"stepwise.task.resource": str(details.get("resource", ""))}


def record_commit_metrics(
    metrics: EngineMetrics,
    record: ExecutionRecord,
    events: Sequence[Event],
    spans: Sequence[SpanRecord] = (),
) -> None:
    """Record what one commit of `record`'s `events` (and the `spans` they ended) means."""
    metrics.record_events(record, events)
    metrics.record_spans(spans)


def _metrics_url(otlp: str) -> str:
    from engine.telemetry.export import otlp_endpoint

    traces = otlp_endpoint(otlp)
    if traces.endswith("/v1/traces"):
        return traces[: -len("/v1/traces")] + "/v1/metrics"
    return traces


def metric_readers_from_env(
    otlp: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    interval_millis: float = 60_000,
) -> list[MetricReader]:
    """Periodic readers for the metric exporters the settings ask for (empty: metrics off).

    ``OTEL_METRICS_EXPORTER`` (otlp, console, none); `otlp` adds OTLP/HTTP to
    that URL's ``/v1/metrics``. Raises TelemetryConfigError like the span side.
    """
    from engine.telemetry.export import TelemetryConfigError

    env = os.environ if env is None else env
    exporters: list[MetricExporter] = []
    names_setting = env.get("OTEL_METRICS_EXPORTER")
    if names_setting is None:
        configured = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names_setting = "otlp" if configured or otlp else ""
    for name in (n.strip().lower() for n in names_setting.split(",")):
        if name in ("", "none"):
            continue
        if name == "console":
            exporters.append(ConsoleMetricExporter(out=sys.stderr))
        elif name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            )
            exporters.append(_otlp_metric_exporter(protocol, otlp))
        else:
            raise TelemetryConfigError(
                f"OTEL_METRICS_EXPORTER={name!r} is not supported (use otlp, console or none)"
            )
    return [
        PeriodicExportingMetricReader(exporter, export_interval_millis=interval_millis)
        for exporter in exporters
    ]


def _otlp_metric_exporter(protocol: str, otlp: str | None) -> MetricExporter:
    from engine.telemetry.export import TelemetryConfigError

    use_grpc = otlp.startswith("grpc://") if otlp else protocol == "grpc"
    if not otlp and protocol not in ("http/protobuf", "grpc"):
        raise TelemetryConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported (use http/protobuf or grpc)"
        )
    try:
        if use_grpc:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPMetricExporter as GrpcMetricExporter,
            )

            endpoint = "http://" + otlp[len("grpc://") :] if otlp else None
            grpc_exporter: MetricExporter = GrpcMetricExporter(endpoint=endpoint)
            return grpc_exporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )
    except ImportError as missing:
        kind = "grpc" if use_grpc else "http"
        raise TelemetryConfigError(
            f"OTLP metrics need the opentelemetry-exporter-otlp-proto-{kind} package"
        ) from missing
    return HttpMetricExporter(endpoint=_metrics_url(otlp) if otlp else None)
