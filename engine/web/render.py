"""HTML for the web view: the page layout and the fragments pages are built from.

Every value that comes from a user or a payload goes through `text` (HTML
escaping) or `json_island` (JSON in a ``<script type="application/json">``
with ``<``, ``>`` and ``&`` escaped), so a payload holding ``<script>``
shows as text and never runs. Pages load only the project's own static
files (the Content-Security-Policy the routes send allows nothing else,
and no inline script or style), so the view works offline.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from engine.alerts import shown_target
from engine.store import Event, ExecutionRecord

if TYPE_CHECKING:
    from engine.scheduling.service import ScheduleDescription
    from engine.store.map_runs import MapRunRecord
    from engine.store.outbox import AlertRecord, DeliveryRecord
    from engine.store.versions import AliasRecord, PublishedVersion

__all__ = [
    "STATIC",
    "delivery_table",
    "event_rows",
    "execution_href",
    "execution_rows",
    "json_island",
    "layout",
    "map_run_href",
    "map_runs_table",
    "pretty",
    "query",
    "rule_table",
    "schedule_section",
    "text",
    "timeline_svg",
    "versions_section",
]

STATIC = "/ui/static"


def text(value: object) -> str:
    """`value` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def json_island(element_id: str, value: Any) -> str:
    """`value` as a JSON data block the page's script reads (never executed)."""
    data = json.dumps(value, separators=(",", ":"), default=str)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{text(element_id)}">{data}</script>'


def pretty(payload: str | None) -> str:
    """A JSON payload indented in a ``<pre>`` (as text); ``—`` when there is none."""
    if payload is None:
        return '<pre class="payload empty">—</pre>'
    try:
        shown = json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        shown = payload
    return f'<pre class="payload">{text(shown)}</pre>'


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(timespec="milliseconds")


def execution_href(execution_id: str) -> str:
    """The execution page's path (the executionArn, quoted)."""
    return f"/ui/executions/{quote(execution_id, safe=':')}"


def layout(title: str, body: str, *, who: str | None, csrf: str | None) -> str:
    """A whole page: head, navigation (with sign-out when signed in) and `body`."""
    sign_out = ""
    if who is not None and who != "anonymous" and csrf is not None:
        sign_out = (
            '<form method="post" action="/ui/sign-out" class="inline">'
            f'<input type="hidden" name="csrf" value="{text(csrf)}">'
            f'<button type="submit">Sign out {text(who)}</button></form>'
        )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{text(title)} · Stepwise</title>"
        f'<link rel="stylesheet" href="{STATIC}/style.css">'
        f'<script src="{STATIC}/vendor/dagre-1.1.4.min.js" defer></script>'
        f'<script src="{STATIC}/app.js" defer></script>'
        "</head><body>"
        '<header><a class="brand" href="/">Stepwise</a>'
        '<nav><a href="/">Executions</a><a href="/ui/machines">State machines</a>'
        '<a href="/ui/schedules">Schedules</a><a href="/ui/alerts">Triggers and alerts</a></nav>'
        f"{sign_out}</header><main>{body}</main></body></html>"
    )


def execution_rows(records: list[ExecutionRecord]) -> str:
    """The executions table's rows: name (a link), machine, status, start and stop."""
    if not records:
        return '<tr><td colspan="5" class="empty">No executions</td></tr>'
    rows = []
    for record in records:
        rows.append(
            f'<tr data-status="{text(record.status)}">'
            f'<td><a href="{text(execution_href(record.execution_id))}">'
            f"{text(record.name)}</a></td>"
            f'<td><a href="/ui/machines/{text(quote(record.machine))}">{text(record.machine)}</a>'
            f" <small>v{record.version}</small></td>"
            f'<td><span class="status {text(record.status.lower())}">'
            f"{text(record.status)}</span></td>"
            f"<td>{text(when(record.start_date))}</td><td>{text(when(record.stop_date))}</td></tr>"
        )
    return "".join(rows)


def _owner_names(events: list[Event]) -> dict[int, str]:
    owner: dict[int, str] = {}
    for event in events:
        name = event.details.get("name")
        named = event.type.endswith(("Entered", "Exited")) or event.type.startswith("MapIteration")
        if isinstance(name, str) and named:
            owner[event.event_id] = name
        elif event.previous_event_id in owner and not event.type.startswith("Execution"):
            owner[event.event_id] = owner[event.previous_event_id]
    return owner


def event_rows(
    events: list[Event], start: datetime, *, type_filter: str = "", first: int, count: int
) -> str:
    """Rows of the event table with AWS's columns: events whose type holds `type_filter`,
    the `count` of them from the `first`.

    Every event is folded for the step column, but only the page is rendered.
    """
    owner = _owner_names(events)
    wanted = type_filter.lower()
    shown = [event for event in events if wanted in event.type.lower()] if wanted else events
    rows = []
    for event in shown[first : first + count]:
        elapsed = int((event.timestamp - start).total_seconds() * 1000)
        details = {key: value for key, value in event.details.items() if key != "name"}
        resource = event.details.get("resource", "")
        rows.append(
            f'<tr data-type="{text(event.type)}">'
            f"<td>{event.event_id}</td><td>{text(event.type)}</td>"
            f"<td>{text(owner.get(event.event_id, ''))}</td><td>{text(resource)}</td>"
            f"<td>{elapsed} ms</td><td>{text(when(event.timestamp))}</td>"
            "<td><details><summary>details</summary>"
            f"{pretty(json.dumps(details, default=str)) if details else '—'}"
            "</details></td></tr>"
        )
    return "".join(rows)


def timeline_svg(bars: list[dict[str, Any]], start: datetime, end: datetime) -> str:
    """A Gantt chart: one row per state visit, task attempts drawn inside it.

    `bars` hold ``name``, ``outcome``, ``begin``, ``end`` (None while
    running) and ``attempts`` (pairs of begin and end). Widths are percent
    of the execution's duration, in SVG attributes, so no inline style is needed.
    """
    total = max((end - start).total_seconds(), 0.001)
    row = 22
    height = row * len(bars) + 4

    def pct(moment: datetime | None) -> float:
        at = end if moment is None else moment
        return max(0.0, min(100.0, (at - start).total_seconds() / total * 100))

    parts = [
        f'<svg class="timeline" width="100%" height="{height}" role="img" '
        'aria-label="Timeline of states and task attempts">'
    ]
    for index, bar in enumerate(bars):
        y = index * row + 2
        left = pct(bar["begin"])
        width = max(pct(bar["end"]) - left, 0.3)
        seconds = ((bar["end"] or end) - bar["begin"]).total_seconds()
        parts.append(
            f'<g class="bar {text(bar["outcome"])}"><title>{text(bar["name"])}: '
            f"{seconds:.3f} s</title>"
            f'<rect x="{left:.3f}%" y="{y}" width="{width:.3f}%" height="{row - 6}" rx="3"></rect>'
        )
        for begin, finish in bar["attempts"]:
            a_left = pct(begin)
            a_width = max(pct(finish) - a_left, 0.2)
            parts.append(
                f'<rect class="attempt" x="{a_left:.3f}%" y="{y + 5}" width="{a_width:.3f}%" '
                f'height="{row - 16}"></rect>'
            )
        parts.append(
            f'<text x="{min(left, 80):.3f}%" y="{y + row - 9}" dx="4">'
            f"{text(bar['name'])}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def versions_section(
    machine: str, versions: list[PublishedVersion], aliases: list[AliasRecord]
) -> str:
    """A machine's published versions (each links to its revision) and its aliases' routes."""
    base = f"/ui/machines/{text(quote(machine))}"
    version_rows = "".join(
        f'<tr data-version="{v.number}"><td>{v.number}</td>'
        f'<td><a href="{base}?version={v.revision}">revision {v.revision}</a></td>'
        f"<td>{text(v.description or '')}</td><td>{when(v.created_at)}</td></tr>"
        for v in versions
    )
    alias_rows = "".join(
        f'<tr data-alias="{text(a.name)}"><td>{text(a.name)}</td><td>'
        + " · ".join(f"version {number}: {weight}%" for number, weight in a.routes)
        + f"</td><td>{text(a.description or '')}</td><td>{when(a.updated_at)}</td></tr>"
        for a in aliases
    )
    empty = '<tr><td colspan="4" class="empty">{}</td></tr>'
    return (
        '<section class="published"><h2>Published versions</h2><table><thead><tr>'
        "<th>Version</th><th>Definition</th><th>Description</th><th>Published</th>"
        f"</tr></thead><tbody>{version_rows or empty.format('none published')}</tbody></table>"
        "<h2>Aliases</h2><table><thead><tr><th>Alias</th><th>Routes</th>"
        "<th>Description</th><th>Updated</th></tr></thead>"
        f"<tbody>{alias_rows or empty.format('none')}</tbody></table></section>"
    )


def map_run_href(arn: str) -> str:
    """The web view's page of a Map Run."""
    return f"/ui/map-runs/{quote(arn, safe=':/')}"


def map_runs_table(runs: list[MapRunRecord]) -> str:
    """A Distributed Map's runs: each links to its page, with its children's counts."""
    rows = "".join(
        f'<tr data-map-run="{text(run.arn)}"><td><a href="{text(map_run_href(run.arn))}">'
        f"{text(run.arn.rsplit(':', 2)[-2])}</a></td>"
        f'<td class="status {text(run.status.lower())}">{text(run.status)}</td>'
        f"<td>{run.succeeded}</td><td>{run.failed}</td><td>{run.running}</td>"
        f"<td>{run.pending}</td><td>{run.aborted}</td><td>{run.total}</td>"
        f"<td>{when(run.start_date)}</td><td>{when(run.stop_date)}</td></tr>"
        for run in runs
    )
    return (
        '<table class="map-runs"><thead><tr><th>Map Run</th><th>Status</th>'
        "<th>Succeeded</th><th>Failed</th><th>Running</th><th>Pending</th><th>Aborted</th>"
        f"<th>Total</th><th>Started</th><th>Stopped</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def query(**params: str | None) -> str:
    """A query string of the non-empty `params` (filters and page tokens, never payloads)."""
    kept = {key: value for key, value in params.items() if value}
    return ("?" + urlencode(kept)) if kept else ""


def _csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{text(csrf)}">'


def schedule_section(described: ScheduleDescription, csrf: str) -> str:
    """One schedule: its settings, next fire times, last runs, skipped ticks, Trigger now."""
    record = described.schedule
    fires = "".join(f"<li>{text(when(moment))}</li>" for moment in described.next_fire_times)
    runs = "".join(
        f"<tr><td>{text(when(tick.tick))}</td><td>{text(tick.reason)}</td><td>"
        + (
            f'<a href="{text(execution_href(execution.execution_id))}">{text(execution.name)}</a>'
            f'</td><td><span class="status {text(execution.status.lower())}">'
            f"{text(execution.status)}</span>"
            if execution is not None
            else f"{text(tick.execution_id)}</td><td>—"
        )
        + "</td></tr>"
        for tick, execution in described.runs
    )
    skipped = "".join(
        f'<tr data-outcome="{text(tick.outcome)}"><td>{text(when(tick.tick))}</td>'
        f"<td>{text(tick.outcome)}</td><td>{text(tick.reason)}</td></tr>"
        for tick in described.recent_ticks
        if tick.outcome != "STARTED"
    )
    state = "paused" if record.paused else "active"
    return (
        f'<section class="schedule" data-schedule="{text(record.name)}">'
        f'<h2>{text(record.name)} <span class="status {state}">{state}</span></h2>'
        f'<p class="meta">State machine <a href="/ui/machines/{text(quote(record.machine))}">'
        f"{text(record.machine)}</a> · <code>{text(record.expression)}</code> · time zone "
        f"{text(record.timezone)} · overlap {text(record.overlap)}</p>"
        f'<form method="post" action="/ui/schedules/{text(quote(record.name))}/trigger" '
        f'class="inline">{_csrf_field(csrf)}<button type="submit">Trigger now</button></form>'
        f"<h3>Input</h3>{pretty(record.input)}"
        '<h3>Next fire times</h3><ol class="fires">'
        f"{fires or '<li class=empty>none (paused or ended)</li>'}</ol>"
        "<h3>Last runs</h3><table><thead><tr><th>Tick</th><th>Why</th><th>Execution</th>"
        f"<th>Status</th></tr></thead><tbody>"
        f"{runs or '<tr><td colspan=4 class=empty>No runs</td></tr>'}</tbody></table>"
        "<h3>Skipped and missed ticks</h3><table><thead><tr><th>Tick</th><th>Outcome</th>"
        "<th>Why</th></tr></thead><tbody>"
        f"{skipped or '<tr><td colspan=3 class=empty>None</td></tr>'}</tbody></table></section>"
    )


def _shown(target: str) -> str:
    """A rule's target without credentials: a webhook URL keeps its scheme and host only."""
    if "://" in target:
        return shown_target(target)
    return target


def rule_table(records: list[AlertRecord]) -> str:
    """Alerts or triggers: name, kind, machine, statuses, target (no secret), paused."""
    rows = "".join(
        f'<tr data-rule="{text(record.name)}"><td>{text(record.name)}</td>'
        f"<td>{text(record.kind)}</td><td>{text(record.machine or 'any')}</td>"
        f"<td>{text(', '.join(record.statuses))}</td><td><code>{text(_shown(record.target))}"
        f"</code></td><td>{'paused' if record.paused else 'active'}</td></tr>"
        for record in records
    )
    return (
        "<table><thead><tr><th>Name</th><th>Kind</th><th>Machine</th><th>Statuses</th>"
        "<th>Target</th><th>State</th></tr></thead><tbody>"
        f"{rows or '<tr><td colspan=6 class=empty>None</td></tr>'}</tbody></table>"
    )


def _delivery_execution(delivery: DeliveryRecord) -> str:
    """The status change a delivery announces, linked to its execution (none for a test)."""
    if not delivery.execution_id:
        return f"{text(delivery.status)} <small>(test)</small>"
    return (
        f'<a href="{text(execution_href(delivery.execution_id))}">'
        f"{text(delivery.execution_id.rpartition(':')[2])}</a> {text(delivery.status)}"
    )


def delivery_table(deliveries: list[DeliveryRecord], csrf: str) -> str:
    """Failed deliveries (dead, or pending after a failed attempt), each with Replay."""
    rows = "".join(
        f'<tr data-delivery="{text(d.delivery_id)}" data-state="{text(d.state)}">'
        f"<td>{text(d.alert)}</td><td>{_delivery_execution(d)}</td>"
        f'<td class="state">{text(d.state)}</td><td>{d.attempts}</td>'
        f"<td>{text(d.last_error)}</td><td>{text(when(d.next_attempt_at))}</td>"
        f"<td>{text(when(d.created_at))}</td><td>"
        '<form method="post" action="/ui/alerts/replay" class="inline">'
        f'{_csrf_field(csrf)}<input type="hidden" name="delivery" value="{text(d.delivery_id)}">'
        '<button type="submit">Replay</button></form></td></tr>'
        for d in deliveries
    )
    return (
        '<table class="deliveries"><thead><tr><th>Alert</th><th>Execution</th><th>State</th>'
        "<th>Attempts</th><th>Last error</th><th>Next attempt</th><th>Created</th><th></th>"
        f"</tr></thead><tbody>{rows or '<tr><td colspan=8 class=empty>None</td></tr>'}"
        "</tbody></table>"
    )
