"""Getting spans out: exporter configuration, OTLP JSON, and the live `TraceEmitter`.

Exporters are configured the OpenTelemetry way — ``OTEL_TRACES_EXPORTER``
(``otlp``, ``console``, ``none``, comma-separated), ``OTEL_EXPORTER_OTLP_ENDPOINT``
/ ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL``
(``http/protobuf`` or ``grpc``), ``OTEL_SERVICE_NAME`` — or by an explicit
``--otlp URL`` (OTLP/HTTP; a ``grpc://`` URL picks gRPC). Unlike the SDK's
default, nothing is exported unless something is configured: a durable engine
should not quietly post to localhost:4318. `TraceEmitter` turns committed
history events into spans (via `TraceBuilder`) and hands them to the
exporters; `to_otlp_json` renders spans in the OTLP/JSON protobuf mapping.
`bounded_shutdown` keeps the last flush from holding a process hostage: a
collector that is down costs at most ~2 s and one warning line at exit,
never the exporters' retry loop and a warning per attempt.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SdkEvent
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode

from engine.store import Event, ExecutionRecord
from engine.telemetry.ids import TASK
from engine.telemetry.spans import PayloadPolicy, SpanRecord, TraceBuilder

__all__ = [
    "SCOPE",
    "HistoryLoader",
    "TelemetryConfigError",
    "TraceEmitter",
    "bounded_shutdown",
    "make_resource",
    "otlp_endpoint",
    "span_exporters_from_env",
    "to_otlp_json",
    "to_readable_spans",
]

log = logging.getLogger("stepwise.telemetry")

SCOPE = InstrumentationScope("stepwise", "0.1.0")

HistoryLoader = Callable[[str], Sequence[Event]]

_SPAN_KINDS = {TASK: SpanKind.CLIENT}
_OTLP_KIND_NUMBERS = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3}


class TelemetryConfigError(ValueError):
    """The OTEL_* settings or --otlp URL ask for something that cannot be built."""


def make_resource(env: Mapping[str, str] | None = None) -> Resource:
    """The OTel resource of this process: service.name (OTEL_SERVICE_NAME, default stepwise)."""
    env = os.environ if env is None else env
    return Resource.create(
        {
            "service.name": env.get("OTEL_SERVICE_NAME") or "stepwise",
            "service.namespace": "stepwise",
        }
    )


def _nanos(when: datetime) -> int:
    # Integer arithmetic: a float timestamp loses the microseconds.
    return (int(when.timestamp()) * 1_000_000 + when.microsecond) * 1_000


def to_readable_spans(spans: Sequence[SpanRecord], resource: Resource) -> list[ReadableSpan]:
    """SDK `ReadableSpan`s for the finished `spans` (open ones are skipped), for any exporter."""
    result: list[ReadableSpan] = []
    for span in spans:
        if span.end is None:
            continue
        trace_id, span_id = int(span.trace_id, 16), int(span.span_id, 16)
        flags = trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED)
        context = trace_api.SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
        parent = (
            trace_api.SpanContext(
                trace_id, int(span.parent_span_id, 16), is_remote=False, trace_flags=flags
            )
            if span.parent_span_id
            else None
        )
        status = (
            Status(StatusCode.ERROR, span.status_message)
            if span.error is not None
            else Status(StatusCode.UNSET)
        )
        result.append(
            ReadableSpan(
                name=span.name,
                context=context,
                parent=parent,
                resource=resource,
                attributes=dict(span.attributes),
                events=[
                    SdkEvent(e.name, dict(e.attributes), timestamp=_nanos(e.timestamp))
                    for e in span.events
                ],
                kind=_SPAN_KINDS.get(span.kind, SpanKind.INTERNAL),
                status=status,
                start_time=_nanos(span.start),
                end_time=_nanos(span.end),
                instrumentation_scope=SCOPE,
            )
        )
    return result


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": _any_value(value)} for key, value in attributes.items()]


def to_otlp_json(spans: Sequence[SpanRecord], resource: Resource | None = None) -> dict[str, Any]:
    """The spans as one OTLP ExportTraceServiceRequest in the protobuf JSON mapping.

    Ids are hex strings and times unix-nanosecond strings, as OTLP/JSON requires;
    spans still open are left out.
    """
    resource = resource or make_resource()
    rendered: list[dict[str, Any]] = []
    for span in spans:
        if span.end is None:
            continue
        item: dict[str, Any] = {
            "traceId": span.trace_id,
            "spanId": span.span_id,
            "name": span.name,
            "kind": _OTLP_KIND_NUMBERS[_SPAN_KINDS.get(span.kind, SpanKind.INTERNAL)],
            "startTimeUnixNano": str(_nanos(span.start)),
            "endTimeUnixNano": str(_nanos(span.end)),
            "attributes": _key_values(span.attributes),
            "events": [
                {
                    "timeUnixNano": str(_nanos(e.timestamp)),
                    "name": e.name,
                    "attributes": _key_values(e.attributes),
                }
                for e in span.events
            ],
            "status": (
                {"code": 2, "message": span.status_message or ""} if span.error is not None else {}
            ),
        }
        if span.parent_span_id:
            item["parentSpanId"] = span.parent_span_id
        rendered.append(item)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _key_values(dict(resource.attributes))},
                "scopeSpans": [
                    {
                        "scope": {"name": SCOPE.name, "version": SCOPE.version or ""},
                        "spans": rendered,
                    }
                ],
            }
        ]
    }


# -- exporter configuration ------------------------------------------------------


def otlp_endpoint(url: str) -> str:
    """The OTLP/HTTP traces URL for `url`: a bare host gets ``/v1/traces`` appended.

    Raises TelemetryConfigError for a URL that is not http(s).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TelemetryConfigError(f"--otlp needs an http(s):// URL, got {url!r}")
    path = parts.path if parts.path not in ("", "/") else "/v1/traces"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _grpc_exporter(endpoint: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter as GrpcSpanExporter,
        )
    except ImportError as missing:
        raise TelemetryConfigError(
            "OTLP over gRPC needs the opentelemetry-exporter-otlp-proto-grpc package"
        ) from missing
    exporter: SpanExporter = GrpcSpanExporter(endpoint=endpoint)
    return exporter


def _http_exporter(endpoint: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )
    except ImportError as missing:
        raise TelemetryConfigError(
            "OTLP over HTTP needs the opentelemetry-exporter-otlp-proto-http package "
            "(pip install 'stepwise[otlp]')"
        ) from missing
    return HttpSpanExporter(endpoint=endpoint)


def span_exporters_from_env(
    otlp: str | None = None, env: Mapping[str, str] | None = None
) -> list[SpanExporter]:
    """The span exporters the settings ask for (empty: telemetry is off).

    `otlp` (the --otlp option) adds an OTLP exporter to that URL on top of
    OTEL_TRACES_EXPORTER. Raises TelemetryConfigError for an unknown exporter
    or protocol, or a missing exporter package.
    """
    env = os.environ if env is None else env
    exporters: list[SpanExporter] = []
    if otlp:
        if otlp.startswith("grpc://"):
            exporters.append(_grpc_exporter("http://" + otlp[len("grpc://") :]))
        else:
            exporters.append(_http_exporter(otlp_endpoint(otlp)))
    names_setting = env.get("OTEL_TRACES_EXPORTER")
    if names_setting is None:
        configured = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names_setting = "otlp" if configured and not otlp else ""
    for name in (n.strip().lower() for n in names_setting.split(",")):
        if name in ("", "none"):
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter(out=sys.stderr))
        elif name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            )
            if protocol == "grpc":
                exporters.append(_grpc_exporter(None))
            elif protocol == "http/protobuf":
                # The exporter reads the OTEL_EXPORTER_OTLP_* endpoint, headers
                # and timeout settings itself.
                exporters.append(_http_exporter(None))
            else:
                raise TelemetryConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported "
                    "(use http/protobuf or grpc)"
                )
        else:
            raise TelemetryConfigError(
                f"OTEL_TRACES_EXPORTER={name!r} is not supported (use otlp, console or none)"
            )
    return exporters


# -- live emission ---------------------------------------------------------------


class TraceEmitter:
    """Exports the spans each commit completes, exactly once per span.

    It keeps a `TraceBuilder` per execution it has seen (a bounded cache). A
    commit whose first event does not follow what the builder has seen — the
    first commit after a crash, a lease taken over, an evicted cache entry —
    replays the earlier history from `history` silently first, so the spans
    emitted are only those whose END event is in this commit. Since a worker
    only reports events it committed itself, no span is emitted twice.
    """

    def __init__(
        self,
        exporters: Sequence[SpanExporter],
        *,
        payloads: PayloadPolicy | None = None,
        history: HistoryLoader | None = None,
        resource: Resource | None = None,
        batch: bool = True,
        max_cached: int = 1024,
        on_emitted: Callable[[ExecutionRecord, Sequence[Event], list[SpanRecord]], None]
        | None = None,
    ) -> None:
        self.payloads = payloads or PayloadPolicy()
        self.history = history
        self.resource = resource or make_resource()
        self.max_cached = max_cached
        # Metrics piggyback here: they see each commit's events and the spans they ended.
        self.on_emitted = on_emitted
        processor = BatchSpanProcessor if batch else SimpleSpanProcessor
        self._processors: list[SpanProcessor] = [processor(e) for e in exporters]
        self._builders: OrderedDict[str, TraceBuilder] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[ExecutionRecord, list[Event], HistoryLoader | None]] = (
            queue.Queue()
        )
        self._thread: threading.Thread | None = None

    def emit_completed(
        self,
        record: ExecutionRecord,
        events: Sequence[Event],
        *,
        history: HistoryLoader | None = None,
    ) -> list[SpanRecord]:
        """Export (and return) the spans whose end event is among `events`.

        `events` are newly committed events of one execution, in id order.
        `history` (else the emitter's loader) fetches the earlier history
        when this emitter has not seen it.
        """
        if not events:
            return []
        ordered = sorted(events, key=lambda e: e.event_id)
        with self._lock:
            builder = self._builder(record, ordered[0].event_id, history or self.history)
            completed = [] if builder is None else builder.feed(ordered)
            if builder is not None and builder.finished:
                self._builders.pop(record.execution_id, None)
        if completed and self._processors:
            for span in to_readable_spans(completed, self.resource):
                for processor in self._processors:
                    processor.on_end(span)
        if self.on_emitted is not None:
            self.on_emitted(record, ordered, completed)
        return completed

    def _builder(
        self, record: ExecutionRecord, first_new: int, history: HistoryLoader | None
    ) -> TraceBuilder | None:
        builder = self._builders.get(record.execution_id)
        if builder is not None:
            self._builders.move_to_end(record.execution_id)
            if builder.last_event_id == first_new - 1:
                return builder
        builder = TraceBuilder(record, payloads=self.payloads)
        if first_new > 1:
            if history is None:
                log.warning(
                    "telemetry: no history for %s before event %d; its spans are skipped",
                    record.execution_id,
                    first_new,
                )
                return None
            builder.feed(e for e in history(record.execution_id) if e.event_id < first_new)
            if builder.last_event_id != first_new - 1:
                log.warning("telemetry: history of %s has a gap", record.execution_id)
                return None
        self._builders[record.execution_id] = builder
        while len(self._builders) > self.max_cached:
            self._builders.popitem(last=False)
        return builder

    # -- the non-blocking path for the engine's commit loop ------------------
    def submit(
        self,
        record: ExecutionRecord,
        events: Sequence[Event],
        history: HistoryLoader | None = None,
    ) -> None:
        """Queue `emit_completed` on a background thread (never blocks, never raises)."""
        if not events:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._drain, name="stepwise-telemetry", daemon=True
                )
                self._thread.start()
        self._queue.put((record, list(events), history))

    def _drain(self) -> None:
        while True:
            record, events, history = self._queue.get()
            try:
                self.emit_completed(record, events, history=history)
            except Exception:  # telemetry must never break the engine
                log.exception("telemetry: emitting spans of %s failed", record.execution_id)
            finally:
                self._queue.task_done()

    def flush(self, timeout_millis: int = 30_000) -> bool:
        """Emit everything submitted so far and push it through the exporters."""
        if self._thread is not None:
            self._queue.join()
        return all(p.force_flush(timeout_millis) for p in self._processors)

    def shutdown(self) -> None:
        """Flush, then shut every exporter down (the emitter is unusable afterwards)."""
        self.flush()
        for processor in self._processors:
            processor.shutdown()


# -- a bounded last flush ----------------------------------------------------------

SHUTDOWN_SECONDS = 2.0


class _Counting(logging.Handler):
    """Counts the exporters' complaints during shutdown instead of printing each one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first = ""

    def emit(self, record: logging.LogRecord) -> None:
        if not self.count:
            self.first = record.getMessage().splitlines()[0][:200]
        self.count += 1


def bounded_shutdown(shutdown: Callable[[], None], *, seconds: float = SHUTDOWN_SECONDS) -> bool:
    """Run `shutdown` (flush and close exporters) for at most `seconds`; True when it finished.

    The OpenTelemetry exporters retry an unreachable collector with backoff
    for many seconds, logging a warning per attempt. Here that runs on a
    daemon thread with their log lines counted, not printed: if it has not
    finished in time, or complained, one warning line says what was dropped
    and the process goes on exiting.
    """
    otel_log = logging.getLogger("opentelemetry")
    counter = _Counting()
    propagate = otel_log.propagate
    otel_log.addHandler(counter)
    otel_log.propagate = False
    failure: list[BaseException] = []

    def run() -> None:
        try:
            shutdown()
        except Exception as exc:  # telemetry must never break the exit
            failure.append(exc)

    worker = threading.Thread(target=run, name="stepwise-telemetry-shutdown", daemon=True)
    worker.start()
    worker.join(seconds)
    finished = not worker.is_alive()
    if finished:
        otel_log.removeHandler(counter)
        otel_log.propagate = propagate
    # Else the exporters keep retrying on their daemon thread until the
    # process exits; their complaints stay counted, never printed.
    if not finished or failure or counter.count:
        reason = (
            f"{type(failure[0]).__name__}: {failure[0]}"
            if failure
            else counter.first or f"no answer within {seconds:g} s"
        )
        log.warning(
            "telemetry: could not deliver every span and metric at exit; dropped (%s)", reason
        )
    return finished and not failure
