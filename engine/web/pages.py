"""The web view's routes: executions, one execution, state machines, sign-in and actions.

`web_routes` returns the Starlette routes `engine.http.app` mounts beside
the API (``POST /`` stays the API; every page is a GET under ``/`` and
``/ui/...``). Pages are rendered on the server from the engine's lifecycle
and store methods (describe, history, list with paging) — no SQL here —
and a small script (`static/app.js`) draws graphs with the vendored dagre,
shows a clicked state's data and keeps lists live by short polling.
Actions (Stop, Redrive, Start again) are POSTs carrying the session's CSRF
token; payloads travel only in request bodies, never in URLs or logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from engine.api import Engine
from engine.http.protocol import error_for
from engine.store import ExecutionRecord, ExecutionStatus
from engine.store.map_run_hook import is_child
from engine.web.auth import SESSION_COOKIE, Sessions
from engine.web.graph import StateAggregate, machine_graph, state_outcomes
from engine.web.render import (
    STATIC,
    delivery_table,
    event_rows,
    execution_href,
    execution_rows,
    json_island,
    layout,
    map_run_href,
    map_runs_table,
    pretty,
    query,
    rule_table,
    schedule_section,
    text,
    timeline_svg,
    versions_section,
)

__all__ = ["EVENTS_PER_PAGE", "web_routes"]

log = logging.getLogger("stepwise.web")

EVENTS_PER_PAGE = 200
# A Map Run's page lists this many children (the CLI lists them all).
MAP_RUN_CHILDREN_SHOWN = 500
EXECUTIONS_PER_PAGE = 50
# Timeline rows drawn at most (a Map's iterations fold into their states' rows beyond it).
TIMELINE_ROWS = 200
_MAX_FORM_BYTES = 1024 * 1024
_STATUSES = [status.value for status in ExecutionStatus]
_REDRIVABLE = {ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

Handler = Callable[[Request], Awaitable[Response]]


class _Session:
    """The visitor's session: who they are, the cookie, and its CSRF token."""

    def __init__(self, who: str, cookie: str, csrf: str, fresh: bool) -> None:
        self.who = who
        self.cookie = cookie
        self.csrf = csrf
        self.fresh = fresh


# An action gets the form and answers with the path to go to next.
ActionHandler = Callable[[Request, _Session, Engine, dict[str, str]], Awaitable[str]]


def can_redrive(engine: Engine) -> bool:
    """True when the lifecycle offers redrive (issue 12); the button shows only then."""
    return callable(getattr(engine.lifecycle, "redrive", None))


async def redrive(engine: Engine, record: ExecutionRecord) -> ExecutionRecord:
    """Redrive `record` through the lifecycle: the one call the Redrive button makes."""
    result: ExecutionRecord = await engine.lifecycle.redrive(record)
    return result


def web_routes(engine_of: Callable[[], Engine | None], keys: Any) -> list[BaseRoute]:
    """The web view's routes, reading and acting through the engine `engine_of` returns.

    `keys` are the access keys of ``--auth`` (empty: no sign-in needed).
    """
    sessions = Sessions(keys=dict(keys))

    def _page(title: str, body: str, session: _Session, status: int = 200) -> Response:
        return _finish(
            HTMLResponse(layout(title, body, who=session.who, csrf=session.csrf), status),
            session,
        )

    def _finish(response: Response, session: _Session | None) -> Response:
        response.headers.update(_SECURITY_HEADERS)
        if session is not None and session.fresh:
            response.set_cookie(
                SESSION_COOKIE,
                session.cookie,
                httponly=True,
                samesite="strict",
                path="/",
            )
        return response

    def _session(request: Request) -> _Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        who = sessions.who(cookie)
        if who is not None and cookie is not None:
            return _Session(who, cookie, sessions.csrf_token(cookie), fresh=False)
        if sessions.sign_in_required:
            return None
        cookie = sessions.issue("anonymous")
        return _Session("anonymous", cookie, sessions.csrf_token(cookie), fresh=True)

    def _engine() -> Engine:
        engine = engine_of()
        if engine is None:
            raise _Unavailable()
        return engine

    def page(handler: Callable[[Request, _Session, Engine], Awaitable[Response]]) -> Handler:
        async def guarded(request: Request) -> Response:
            session = _session(request)
            if session is None:
                target = request.url.path
                return _finish(RedirectResponse(f"/ui/sign-in?next={quote(target)}", 303), None)
            try:
                return await handler(request, session, _engine())
            except _Unavailable:
                return _finish(HTMLResponse("Starting or stopping; retry.", 503), None)
            except Exception as exc:
                error = error_for(exc)
                body = (
                    f'<h1>{text(error.code)}</h1><p class="error">{text(error.message)}</p>'
                    '<p><a href="/">Back to executions</a></p>'
                )
                return _page(error.code, body, session, error.status)

        return guarded

    def action(handler: ActionHandler) -> Handler:
        async def guarded(request: Request, session: _Session, engine: Engine) -> Response:
            form = await _form(request)
            if session.fresh or not sessions.check_csrf(session.cookie, form.get("csrf")):
                refused = (
                    '<h1>Forbidden</h1><p class="error">The form is stale (CSRF token '
                    "missing or wrong); reload the page.</p>"
                )
                return _page("Forbidden", refused, session, 403)
            target = await handler(request, session, engine, form)
            return _finish(RedirectResponse(target, 303), session)

        return page(guarded)

    # -- executions ----------------------------------------------------------
    async def _listing(
        request: Request, engine: Engine
    ) -> tuple[list[ExecutionRecord], str | None]:
        params = request.query_params
        machine = params.get("machine") or None
        status = params.get("status") or None
        if status not in _STATUSES:
            status = None
        name = (params.get("name") or "").strip()
        token = params.get("token") or None
        if not name:
            return await engine.lifecycle.list_executions(
                machine=machine, status=status, max_results=EXECUTIONS_PER_PAGE, next_token=token
            )
        # The name filter reads pages until a page of matches (or ten pages) is found.
        found: list[ExecutionRecord] = []
        for _ in range(10):
            records, token = await engine.lifecycle.list_executions(
                machine=machine, status=status, max_results=1000, next_token=token
            )
            found.extend(r for r in records if name.lower() in r.name.lower())
            if token is None or len(found) >= EXECUTIONS_PER_PAGE:
                break
        return found[:EXECUTIONS_PER_PAGE], None

    async def home(request: Request, session: _Session, engine: Engine) -> Response:
        params = request.query_params
        records, next_token = await _listing(request, engine)
        machines = sorted({m.name for m in await engine.list_state_machines()})
        machine_options = "".join(
            f"<option{' selected' if m == params.get('machine') else ''}>{text(m)}</option>"
            for m in machines
        )
        status_options = "".join(
            f"<option{' selected' if s == params.get('status') else ''}>{s}</option>"
            for s in _STATUSES
        )
        more = ""
        if next_token is not None:
            href = query(
                machine=params.get("machine"), status=params.get("status"), token=next_token
            )
            more = f'<p><a class="next" href="/{text(href)}">Older executions →</a></p>'
        live = query(
            machine=params.get("machine"),
            status=params.get("status"),
            name=params.get("name"),
            token=params.get("token"),
        )
        body = (
            "<h1>Executions</h1>"
            '<form class="filters" method="get" action="/">'
            f'<label>Machine <select name="machine"><option value="">any</option>{machine_options}'
            "</select></label>"
            f'<label>Status <select name="status"><option value="">any</option>{status_options}'
            "</select></label>"
            f'<label>Name <input name="name" value="{text(params.get("name"))}"></label>'
            '<button type="submit">Filter</button></form>'
            '<table class="executions"><thead><tr><th>Name</th><th>State machine</th>'
            "<th>Status</th><th>Started</th><th>Stopped</th></tr></thead>"
            f'<tbody id="execution-rows" data-live="/ui/rows{text(live)}">'
            f"{execution_rows(records)}</tbody></table>{more}"
        )
        return _page("Executions", body, session)

    async def rows(request: Request, session: _Session, engine: Engine) -> Response:
        records, _ = await _listing(request, engine)
        return _finish(HTMLResponse(execution_rows(records)), session)

    async def execution(request: Request, session: _Session, engine: Engine) -> Response:
        record = await engine.describe(request.path_params["execution"])
        events = await engine.history(record)
        machine = await _machine_version(engine, record)
        aggregates = state_outcomes(record, events)
        graph = machine_graph(machine)
        for node in graph["nodes"]:
            aggregate = aggregates.get(node["state"])
            node["outcome"] = aggregate.outcome if aggregate is not None else "not-reached"
        details = {name: _state_details(aggregate) for name, aggregate in aggregates.items()}
        body = _execution_body(request, record, events, aggregates, graph, details, session, engine)
        return _page(record.name, body + await _map_runs_of(engine, record), session)

    async def map_run(request: Request, session: _Session, engine: Engine) -> Response:
        arn = request.path_params["arn"]
        described = await engine.describe_map_run(arn)
        children = await engine.lifecycle.run_db(engine.store.list_map_run_children, arn)
        shown = [await engine.describe(child) for child in children[:MAP_RUN_CHILDREN_SHOWN]]
        more = ""
        if len(children) > len(shown):
            more = (
                f'<p class="more">The first {len(shown)} of {len(children)} children; '
                f"<code>stepwise list --map-run {text(arn)}</code> lists them all.</p>"
            )
        counts = described["executionCounts"]
        body = (
            f'<h1>Map Run <small>{text(arn.rsplit(":", 2)[-2])}</small> <span id="status" '
            f'class="status {text(described["status"].lower())}">{text(described["status"])}'
            f'</span></h1><p class="meta">Of execution <a href="'
            f'{text(execution_href(described["executionArn"]))}">'
            f"{text(described['executionArn'].rsplit(':', 1)[-1])}</a> · "
            f"max concurrency {described['maxConcurrency']} · tolerated failures "
            f"{described['toleratedFailurePercentage']:g}% or {described['toleratedFailureCount']}"
            f" · <code>{text(arn)}</code></p>"
            '<table class="counts"><thead><tr>'
            + "".join(f"<th>{text(k)}</th>" for k in counts)
            + "</tr></thead><tbody><tr>"
            + "".join(f'<td data-count="{text(k)}">{int(v)}</td>' for k, v in counts.items())
            + "</tr></tbody></table>"
            '<section><h2>Child executions</h2><table class="executions"><thead><tr><th>Name'
            "</th><th>State machine</th><th>Status</th><th>Started</th><th>Stopped</th></tr>"
            f"</thead><tbody>{execution_rows(shown)}</tbody></table>{more}</section>"
        )
        return _page("Map Run", body, session)

    async def execution_version(request: Request, session: _Session, engine: Engine) -> Response:
        record = await engine.describe(request.path_params["execution"])
        return _finish(
            JSONResponse({"status": record.status, "lastEventId": record.last_event_id}), session
        )

    async def stop(
        request: Request, session: _Session, engine: Engine, form: dict[str, str]
    ) -> str:
        record = await engine.describe(request.path_params["execution"])
        # As StopExecution does: the engine stops it (and drives it when no worker holds it).
        await engine.stop(record)
        log.info("web: %s stopped %s", session.who, record.execution_id)
        return execution_href(record.execution_id)

    async def redrive_action(
        request: Request, session: _Session, engine: Engine, form: dict[str, str]
    ) -> str:
        record = await engine.describe(request.path_params["execution"])
        await redrive(engine, record)
        log.info("web: %s redrove %s", session.who, record.execution_id)
        return execution_href(record.execution_id)

    async def start_again(
        request: Request, session: _Session, engine: Engine, form: dict[str, str]
    ) -> str:
        record = await engine.describe(request.path_params["execution"])
        raw = form.get("input")
        value: Any
        if raw is None or not raw.strip():
            value = json.loads(record.input)
        else:
            try:
                value = json.loads(raw)
            except ValueError as exc:
                from engine.errors import InvalidExecutionInput

                raise InvalidExecutionInput(f"Invalid execution input: {exc}") from None
        started = await engine.lifecycle.start(record.machine, value, queue=record.queue)
        log.info("web: %s started %s", session.who, started.execution_id)
        return execution_href(started.execution_id)

    # -- state machines ------------------------------------------------------
    async def machines(request: Request, session: _Session, engine: Engine) -> Response:
        rows = (
            "".join(
                f'<tr><td><a href="/ui/machines/{text(quote(m.name))}">{text(m.name)}</a></td>'
                f"<td>{text(m.machine_type)}</td><td>{m.version}</td>"
                f"<td>{text(m.created_at.isoformat(timespec='seconds'))}</td></tr>"
                for m in sorted(await engine.list_state_machines(), key=lambda m: m.name)
            )
            or '<tr><td colspan="4" class="empty">No state machines</td></tr>'
        )
        body = (
            "<h1>State machines</h1><table><thead><tr><th>Name</th><th>Type</th>"
            f"<th>Latest version</th><th>Created</th></tr></thead><tbody>{rows}</tbody></table>"
        )
        return _page("State machines", body, session)

    async def machine(request: Request, session: _Session, engine: Engine) -> Response:
        name = request.path_params["name"]
        latest = await engine.describe_state_machine(name)
        wanted = request.query_params.get("version")
        shown = latest
        if wanted and wanted.isdigit() and int(wanted) != latest.version:
            shown = await engine.lifecycle.run_db(engine.store.get_state_machine, name, int(wanted))
        versions = " ".join(
            f'<a href="/ui/machines/{text(quote(name))}?version={v}"'
            f"{' class=current' if v == shown.version else ''}>v{v}</a>"
            for v in range(latest.version, 0, -1)
        )
        recent, _ = await engine.lifecycle.list_executions(machine=name, max_results=20)
        published = versions_section(
            name, await engine.list_versions(name), await engine.list_aliases(name)
        )
        graph = machine_graph(shown.definition)
        for node in graph["nodes"]:
            node["outcome"] = "plain"
        body = (
            f"<h1>{text(name)} <small>{text(shown.machine_type)} · "
            f"version {shown.version}</small></h1>"
            f'<p class="versions">Versions: {versions}</p>'
            '<section><h2>Graph</h2><div class="graph" data-graph="machine-graph"></div>'
            f"{json_island('machine-graph', graph)}</section>"
            f"<section><h2>Definition</h2>{pretty(shown.definition)}</section>"
            f"{published}"
            "<section><h2>Recent executions</h2><table><thead><tr><th>Name</th>"
            "<th>State machine</th><th>Status</th><th>Started</th><th>Stopped</th></tr></thead>"
            f"<tbody>{execution_rows(recent)}</tbody></table></section>"
        )
        return _page(name, body, session)

    # -- schedules, triggers and alerts -------------------------------------
    async def schedules(request: Request, session: _Session, engine: Engine) -> Response:
        sections = []
        for record in await engine.schedules.list_all():
            described = await engine.schedules.describe(record.name)
            sections.append(schedule_section(described, session.csrf))
        body = "<h1>Schedules</h1>" + ("".join(sections) or '<p class="empty">No schedules</p>')
        return _page("Schedules", body, session)

    async def schedule_trigger(
        request: Request, session: _Session, engine: Engine, form: dict[str, str]
    ) -> str:
        started = await engine.schedules.trigger(request.path_params["name"])
        log.info("web: %s triggered %s", session.who, started.execution_id)
        return execution_href(started.execution_id)

    async def alerts(request: Request, session: _Session, engine: Engine) -> Response:
        body = (
            "<h1>Triggers and alerts</h1>"
            f"<section><h2>Triggers</h2>{rule_table(await engine.triggers.list_all())}</section>"
            f"<section><h2>Alerts</h2>{rule_table(await engine.alerts.list_all())}</section>"
            "<section><h2>Failed deliveries</h2>"
            f"{delivery_table(await engine.alerts.deliveries(failed=True), session.csrf)}"
            "</section>"
        )
        return _page("Triggers and alerts", body, session)

    async def replay(
        request: Request, session: _Session, engine: Engine, form: dict[str, str]
    ) -> str:
        delivery = await engine.alerts.replay(form.get("delivery", ""))
        log.info("web: %s replayed a delivery of alert %s", session.who, delivery.alert)
        return "/ui/alerts"

    # -- sign-in -------------------------------------------------------------
    async def sign_in(request: Request) -> Response:
        error = ""
        status = 200
        target = request.query_params.get("next", "/")
        if request.method == "POST":
            form = await _form(request)
            target = form.get("next", "/")
            key_id = form.get("accessKeyId", "")
            if sessions.check_key(key_id, form.get("secretAccessKey", "")):
                cookie = sessions.issue(key_id)
                if not target.startswith("/") or target.startswith("//") or "\\" in target:
                    target = "/"
                log.info("web: %s signed in", key_id)
                session = _Session(key_id, cookie, sessions.csrf_token(cookie), fresh=True)
                return _finish(RedirectResponse(target, 303), session)
            error = '<p class="error">Unknown access key or wrong secret.</p>'
            status = 401
        body = (
            f"<h1>Sign in</h1>{error}"
            '<form method="post" action="/ui/sign-in" class="sign-in">'
            f'<input type="hidden" name="next" value="{text(target)}">'
            '<label>Access key id <input name="accessKeyId" autocomplete="username"></label>'
            '<label>Secret access key <input name="secretAccessKey" type="password" '
            'autocomplete="current-password"></label><button type="submit">Sign in</button></form>'
        )
        response = HTMLResponse(layout("Sign in", body, who=None, csrf=None), status)
        return _finish(response, None)

    async def sign_out(
        request: Request, session: _Session, engine: Engine, form: dict[str, str]
    ) -> str:
        return "/ui/sign-in"

    async def signed_out(request: Request) -> Response:
        response = await action(sign_out)(request)
        if response.status_code == 303:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def _execution_body(
        request: Request,
        record: ExecutionRecord,
        events: list[Any],
        aggregates: dict[str, StateAggregate],
        graph: dict[str, Any],
        details: dict[str, Any],
        session: _Session,
        engine: Engine,
    ) -> str:
        return _execution_page(
            request,
            record,
            events,
            aggregates,
            graph,
            details,
            session,
            redrivable=can_redrive(engine) and record.status in _REDRIVABLE,
        )

    return [
        Route("/", page(home), methods=["GET"]),
        Route("/ui/rows", page(rows), methods=["GET"]),
        Route("/ui/executions/{execution:path}/version", page(execution_version), methods=["GET"]),
        Route("/ui/executions/{execution:path}/stop", action(stop), methods=["POST"]),
        Route("/ui/executions/{execution:path}/redrive", action(redrive_action), methods=["POST"]),
        Route("/ui/executions/{execution:path}/start", action(start_again), methods=["POST"]),
        Route("/ui/executions/{execution:path}", page(execution), methods=["GET"]),
        Route("/ui/machines", page(machines), methods=["GET"]),
        Route("/ui/machines/{name:path}", page(machine), methods=["GET"]),
        Route("/ui/map-runs/{arn:path}", page(map_run), methods=["GET"]),
        Route("/ui/schedules", page(schedules), methods=["GET"]),
        Route("/ui/schedules/{name}/trigger", action(schedule_trigger), methods=["POST"]),
        Route("/ui/alerts", page(alerts), methods=["GET"]),
        Route("/ui/alerts/replay", action(replay), methods=["POST"]),
        Route("/ui/sign-in", sign_in, methods=["GET", "POST"]),
        Route("/ui/sign-out", signed_out, methods=["POST"]),
        Mount(STATIC, StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]


class _Unavailable(Exception):
    """The engine is not open (the server is starting or stopping)."""


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body (last value of each field); empty when it is anything else."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return {}
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


async def _machine_version(engine: Engine, record: ExecutionRecord) -> str:
    version = await engine.lifecycle.run_db(
        engine.store.get_state_machine, record.machine, record.version
    )
    return version.definition


def _state_details(aggregate: StateAggregate) -> dict[str, Any]:
    """What a click on a state shows: counts, and the latest visits' data-flow steps."""
    visits = []
    for visit in aggregate.visits:
        visits.append(
            {
                "entered": visit.entered.isoformat(timespec="milliseconds"),
                "exited": visit.exited.isoformat(timespec="milliseconds") if visit.exited else None,
                "seconds": (visit.exited - visit.entered).total_seconds() if visit.exited else None,
                "input": visit.input,
                "output": visit.output,
                "errors": [{"error": e, "cause": c} for e, c in visit.errors],
                "attempts": [
                    {
                        "resource": a.resource,
                        "parameters": a.parameters,
                        "result": a.output,
                        "error": a.error,
                        "cause": a.cause,
                        "seconds": (a.ended - a.scheduled).total_seconds() if a.ended else None,
                    }
                    for a in visit.attempts
                ],
            }
        )
    return {
        "name": aggregate.name,
        "outcome": aggregate.outcome,
        "entered": aggregate.entered,
        "exited": aggregate.exited,
        "attempts": aggregate.attempts,
        "failures": aggregate.failures,
        "iterations": aggregate.iterations,
        "visits": visits,
    }


def _timeline(record: ExecutionRecord, aggregates: dict[str, StateAggregate]) -> str:
    bars: list[dict[str, Any]] = []
    for aggregate in aggregates.values():
        for visit in aggregate.visits:
            bars.append(
                {
                    "name": aggregate.name,
                    "outcome": aggregate.outcome,
                    "begin": visit.entered,
                    "end": visit.exited,
                    "attempts": [(a.scheduled, a.ended) for a in visit.attempts],
                }
            )
    bars.sort(key=lambda bar: bar["begin"])
    bars = bars[:TIMELINE_ROWS]
    if not bars:
        return '<p class="empty">No state has started yet.</p>'
    moments: list[datetime] = [bar["end"] or bar["begin"] for bar in bars]
    end = record.stop_date or max([*moments, record.start_date])
    return timeline_svg(bars, record.start_date, end)


async def _map_runs_of(engine: Engine, record: ExecutionRecord) -> str:
    """The Map Runs section of a parent's page, or a child's link to its Map Run."""
    runs = await engine.list_map_runs(record)
    if runs:
        return f"<section><h2>Map Runs</h2>{map_runs_table(runs)}</section>"
    if not is_child(record.execution_id):
        return ""
    arn = await engine.lifecycle.run_db(engine.store.map_run_of_child, record.execution_id)
    if arn is None:
        return ""
    return (
        '<section><h2>Map Run</h2><p class="meta">A child execution of '
        f'<a href="{text(map_run_href(arn))}">{text(arn)}</a></p></section>'
    )


def _execution_page(
    request: Request,
    record: ExecutionRecord,
    events: list[Any],
    aggregates: dict[str, StateAggregate],
    graph: dict[str, Any],
    details: dict[str, Any],
    session: _Session,
    *,
    redrivable: bool,
) -> str:
    href = execution_href(record.execution_id)
    csrf = f'<input type="hidden" name="csrf" value="{text(session.csrf)}">'
    buttons = []
    if record.status == ExecutionStatus.RUNNING:
        buttons.append(
            f'<form method="post" action="{text(href)}/stop" class="inline">{csrf}'
            '<button type="submit" id="stop" class="danger">Stop</button></form>'
        )
    if redrivable:
        buttons.append(
            f'<form method="post" action="{text(href)}/redrive" class="inline">{csrf}'
            '<button type="submit" id="redrive">Redrive</button></form>'
        )
    buttons.append(
        f'<form method="post" action="{text(href)}/start" class="inline">{csrf}'
        '<button type="submit" id="start-again">Start again</button></form>'
        f'<details class="inline"><summary>Start again with edited input</summary>'
        f'<form method="post" action="{text(href)}/start">{csrf}'
        f'<textarea name="input" rows="8" cols="60">{text(_indented(record.input))}</textarea>'
        '<button type="submit" id="start-edited">Start</button></form></details>'
    )
    params = request.query_params
    type_filter = params.get("type") or ""
    shown = sum(1 for e in events if type_filter.lower() in e.type.lower())
    page_number = int(params["page"]) if params.get("page", "").isdigit() else 1
    pages = max(1, -(-shown // EVENTS_PER_PAGE))
    page_number = min(max(page_number, 1), pages)
    pager = " ".join(
        f'<a href="{text(href + query(type=type_filter, page=str(n)))}#events"'
        f"{' class=current' if n == page_number else ''}>{n}</a>"
        for n in range(1, pages + 1)
        if pages <= 20 or n in (1, pages) or abs(n - page_number) <= 3
    )
    rows = event_rows(
        events,
        record.start_date,
        type_filter=type_filter,
        first=(page_number - 1) * EVENTS_PER_PAGE,
        count=EVENTS_PER_PAGE,
    )
    maps = "".join(
        f"<li>{text(name)}: "
        + ", ".join(f"{count} {text(phase.lower())}" for phase, count in a.iterations.items())
        + "</li>"
        for name, a in aggregates.items()
        if a.iterations
    )
    duration = ""
    if record.stop_date is not None:
        duration = f" · {(record.stop_date - record.start_date).total_seconds():.3f} s"
    error = ""
    if record.error or record.cause:
        error = (
            f'<section><h2>Error</h2><p class="error"><b>{text(record.error)}</b></p>'
            f"{pretty(json.dumps(record.cause)) if record.cause else ''}</section>"
        )
    return (
        f'<h1>{text(record.name)} <span id="status" class="status {text(record.status.lower())}">'
        f"{text(record.status)}</span></h1>"
        f'<p class="meta">State machine <a href="/ui/machines/{text(quote(record.machine))}">'
        f"{text(record.machine)}</a> v{record.version} · started "
        f"{text(record.start_date.isoformat(timespec='milliseconds'))}{text(duration)}"
        f" · <code>{text(record.execution_id)}</code></p>"
        f'<div class="actions">{"".join(buttons)}</div>'
        f'<div id="live" data-version="{text(href)}/version" data-status="{text(record.status)}"'
        f' data-last-event="{record.last_event_id}"></div>'
        '<section class="split"><div><h2>Graph</h2>'
        '<div class="graph" data-graph="execution-graph" data-details="state-details"></div>'
        '<p class="legend"><span class="succeeded">succeeded</span>'
        '<span class="failed">failed</span>'
        '<span class="caught">caught</span><span class="retried">retried</span>'
        '<span class="running">running</span><span class="aborted">aborted</span>'
        '<span class="not-reached">not reached</span></p></div>'
        '<aside id="state-panel"><h2>State</h2><p class="empty">Click a state in the graph.</p>'
        "</aside></section>"
        f"{json_island('execution-graph', graph)}{json_island('state-details', details)}"
        f"{'<section><h2>Map iterations</h2><ul>' + maps + '</ul></section>' if maps else ''}"
        f"<section><h2>Input</h2>{pretty(record.input)}</section>"
        f"<section><h2>Output</h2>{pretty(record.output)}</section>{error}"
        f"<section><h2>Timeline</h2>{_timeline(record, aggregates)}</section>"
        f'<section id="events"><h2>Events <small>{len(events)}</small></h2>'
        f'<form method="get" action="{text(href)}#events" class="filters">'
        f'<label>Type <input name="type" value="{text(type_filter)}"></label>'
        '<button type="submit">Filter</button></form>'
        f'<p class="pager">Page {page_number} of {pages}: {pager}</p>'
        '<table class="events"><thead><tr><th>ID</th><th>Type</th><th>Step</th>'
        "<th>Resource</th><th>Elapsed</th><th>Timestamp</th><th>Details</th></tr></thead>"
        f"<tbody>{rows}"
        "</tbody></table></section>"
    )


def _indented(payload: str) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload
