"""`stepwise trace EXEC`: an execution's trace rebuilt from its history.

The default exports the trace to the configured exporters (OTEL_* settings
or ``--otlp URL``) — for executions that ran before telemetry was switched
on, or to send one to a viewer on demand. ``--format json`` prints it as
OTLP/JSON on stdout; ``--format tree`` prints the span tree with offsets and
durations for a terminal. Exporters are flushed and shut down before exit.
Exit codes follow the CLI's: 2 usage, 3 store or exporter failure.
OpenTelemetry is imported only when the command runs. The history is read
a page at a time into one `TraceBuilder` (`_span_batches`); exporting sends
each page's finished spans as they come, so no event list is ever held
whole, and the builder keeps only what is still open.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from engine.cli.core import StepwiseCommand, database_url, global_options, json_output
from engine.cli.output import CliError, InfrastructureFailure

if TYPE_CHECKING:
    from engine.store import ExecutionRecord
    from engine.telemetry.spans import PayloadPolicy, SpanRecord

__all__ = ["render_tree", "trace"]

_EXPORT_BATCH = 512


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 120:
        return f"{seconds:.3f}s"
    return f"{seconds / 60:.1f}m"


def render_tree(spans: Sequence[SpanRecord]) -> str:
    """The span tree as text: start offset, duration, name, state type and outcome per line."""
    if not spans:
        return "(no spans)"
    children: dict[str | None, list[SpanRecord]] = {}
    ids = {span.span_id for span in spans}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: (s.start, s.start_event_id))
    origin = min(span.start for span in spans)
    lines = [f"{'start':>10}  {'duration':>10}  span"]

    def describe(span: SpanRecord) -> str:
        label = span.name
        state_type = span.attributes.get("stepwise.state.type")
        if state_type is not None:
            label += f" ({state_type})"
        if "stepwise.task.attempt" in span.attributes:
            label += f" attempt {span.attributes['stepwise.task.attempt']}"
        if span.end is None:
            label += "  … running"
        elif span.error is not None:
            label += f"  ✗ {span.error}"
        elif span.attributes.get("stepwise.cancelled"):
            label += "  (cancelled)"
        for event in span.events:
            if event.name in ("stepwise.retry", "stepwise.caught", "stepwise.evaluation_failed"):
                what = event.name.removeprefix("stepwise.").replace("_", " ")
                label += f"  [{what}: {event.attributes.get('error.type', '?')}]"
        return label

    def visit(span: SpanRecord, prefix: str, last: bool, depth: int) -> None:
        offset = (span.start - origin).total_seconds()
        duration = "" if span.end is None else _duration((span.end - span.start).total_seconds())
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        lines.append(
            f"{'+' + _duration(offset):>10}  {duration:>10}  {prefix}{branch}{describe(span)}"
        )
        nested = prefix if depth == 0 else prefix + ("   " if last else "│  ")
        kids = children.get(span.span_id, [])
        for index, child in enumerate(kids):
            visit(child, nested, index == len(kids) - 1, depth + 1)

    roots = children.get(None, [])
    for index, root in enumerate(roots):
        visit(root, "", index == len(roots) - 1, 0)
    return "\n".join(lines)


class _Trace:
    """One execution's spans, read from its history a page at a time."""

    def __init__(self, url: str, execution: str, payloads: PayloadPolicy) -> None:
        # Store errors (unknown execution: exit 2; unreachable: exit 3) reach the reporter.
        from engine.store import Store

        # A read command: it creates nothing.
        self.store = Store(url, create=False)
        self._closed = False
        try:
            self.record: ExecutionRecord = self.store.get_execution(execution)
        except BaseException:
            self.close()
            raise
        self.payloads = payloads
        self.running = 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.store.close()

    def batches(self) -> Iterator[list[SpanRecord]]:
        """The finished spans, a page of history at a time, then those still open."""
        from engine.telemetry.spans import TraceBuilder

        builder = TraceBuilder(self.record, payloads=self.payloads)
        try:
            for page in self.store.iter_history(self.record.execution_id):
                completed = builder.feed(page)
                if completed:
                    yield completed
        finally:
            self.close()
        still_open = builder.open_spans()
        self.running = len(still_open)
        if still_open:
            yield still_open


def _export(batches: Iterable[list[SpanRecord]], otlp: str | None) -> int:
    from opentelemetry.sdk.trace.export import SpanExportResult

    from engine.telemetry.export import (
        TelemetryConfigError,
        make_resource,
        span_exporters_from_env,
        to_readable_spans,
    )

    try:
        exporters = span_exporters_from_env(otlp)
    except TelemetryConfigError as error:
        raise CliError(str(error)) from None
    if not exporters:
        raise CliError(
            "no trace exporter configured: pass --otlp URL, or set OTEL_TRACES_EXPORTER / "
            "OTEL_EXPORTER_OTLP_ENDPOINT (or use --format json|tree)"
        )
    resource = make_resource()
    failed = False
    exported = 0
    try:
        for batch in batches:
            readable = to_readable_spans(batch, resource)
            for start in range(0, len(readable), _EXPORT_BATCH):
                chunk = readable[start : start + _EXPORT_BATCH]
                for exporter in exporters:
                    result = exporter.export(chunk)
                    failed = failed or result is not SpanExportResult.SUCCESS
            exported += len(readable)
        for exporter in exporters:
            exporter.force_flush()
    finally:
        for exporter in exporters:
            exporter.shutdown()
    if failed:
        raise InfrastructureFailure("the trace exporter reported a failure (is the collector up?)")
    return exported


@click.command("trace", cls=StepwiseCommand)
@click.argument("execution")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["export", "json", "otlp-json", "tree"], case_sensitive=False),
    default="export",
    show_default=True,
    help="export: send to the configured exporters; json/otlp-json: print OTLP/JSON; "
    "tree: print the span tree.",
)
@click.option("--otlp", metavar="URL", default=None, help="Also export over OTLP/HTTP to URL.")
@click.option(
    "--trace-payloads",
    is_flag=True,
    default=False,
    help="Put inputs/outputs in span attributes (capped at 4 KiB, secret fields redacted).",
)
@global_options
def trace(execution: str, output_format: str, otlp: str | None, trace_payloads: bool) -> None:
    """Rebuild EXECUTION's trace from its history and export or print it."""
    from engine.cli.core import retry_transient
    from engine.telemetry import payload_policy
    from engine.telemetry.export import to_otlp_json

    output_format = output_format.lower()
    url, payloads = database_url(), payload_policy(trace_payloads)
    # Opening rides out a short outage, as every read command does.
    source = retry_transient(lambda _attempt: _Trace(url, execution, payloads))
    record = source.record
    try:
        if output_format in ("json", "otlp-json", "tree"):
            spans = [span for batch in source.batches() for span in batch]
            if output_format == "tree":
                click.echo(f"trace {record.trace_id}  {record.execution_id}  {record.status}")
                click.echo(render_tree(spans))
            else:
                click.echo(json.dumps(to_otlp_json(spans), indent=2))
            return
        exported = _export(source.batches(), otlp)
    finally:
        source.close()
    running = source.running
    summary: dict[str, Any] = {"traceId": record.trace_id, "exportedSpans": exported}
    if json_output():
        click.echo(json.dumps(summary))
    else:
        click.echo(f"exported {exported} spans of trace {record.trace_id}")
    if running:
        click.echo(f"{running} spans are still running and were not exported", err=True)
