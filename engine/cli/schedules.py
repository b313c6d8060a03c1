"""`stepwise schedules …`: workflows that start on time, run by every `stepwise worker`.

``create NAME --machine M (--cron EXPR | --rate EXPR | --at TIMESTAMP)``
with ``--timezone``, ``--input``, ``--overlap``, ``--catchup-window``,
``--jitter``, ``--start-date``, ``--end-date``, ``--paused`` and
``--scheduled-time-key``; ``update`` takes the same options; ``list``,
``describe`` (next 5 fire times, last runs, skipped ticks), ``pause``,
``resume``, ``delete``, ``trigger`` (one run now) and ``backfill --from
--to`` (one run per tick of [from, to)). Durations are like ``90s``,
``15m``, ``2h``, ``1d12h``, ``1w``; a timestamp without an offset is UTC,
except ``--at``, which is a wall time in ``--timezone`` as AWS's ``at()``.
JSON output uses camelCase keys after EventBridge Scheduler's.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from engine.cli.core import StepwiseGroup, global_options, json_output, with_client
from engine.cli.output import CliError, emit_json, print_table, read_json_argument

if TYPE_CHECKING:
    from engine.scheduling import ScheduleDescription, ScheduleRecord

__all__ = ["schedules"]

_OVERLAPS = click.Choice(["skip", "buffer_one", "buffer_all", "allow_all", "cancel_other"])
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, what: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d12h``, ``1w`` (or plain seconds) as a timedelta."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return timedelta(seconds=float(text))
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise CliError(f"{what}: {text!r} is not a duration like 90s, 15m, 2h, 1d12h or 1w")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def parse_timestamp(text: str, *, what: str) -> datetime:
    """An ISO 8601 timestamp; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CliError(f"{what}: {text!r} is not an ISO 8601 timestamp") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _expression(cron: str | None, rate: str | None, at: str | None) -> str | None:
    given = [value for value in (cron, rate, at) if value is not None]
    if len(given) > 1:
        raise CliError("give one of --cron, --rate and --at")
    if cron is not None:
        return cron
    if rate is not None:
        return rate if rate.strip().startswith("rate(") else f"rate({rate.strip()})"
    if at is not None:
        return at if at.strip().startswith("at(") else f"at({at.strip()})"
    return None


def _settings_options(fn: Any) -> Any:
    """The options `create` and `update` share."""
    options = [
        click.option(
            "--machine", metavar="M", help="State machine (NAME, NAME:VERSION, NAME:ALIAS)."
        ),
        click.option(
            "--cron", metavar="EXPR", help="'0 2 * * *' or EventBridge 'cron(0 2 * * ? *)'."
        ),
        click.option("--rate", metavar="EXPR", help="'rate(1 day)' or '15 minutes'."),
        click.option("--at", metavar="TIMESTAMP", help="One run at this wall time in --timezone."),
        click.option("--timezone", metavar="TZ", help="IANA time zone of the expression (UTC)."),
        click.option("--input", "input_", metavar="JSON", help="Input of each run (-, file://)."),
        click.option("--overlap", type=_OVERLAPS, help="While a run is open (default skip)."),
        click.option("--catchup-window", metavar="DURATION", help="Late ticks run (default 365d)."),
        click.option("--jitter", metavar="DURATION", help="Fire up to this much after each tick."),
        click.option("--start-date", metavar="TS", help="No ticks before this time."),
        click.option("--end-date", metavar="TS", help="No ticks at or after this time."),
        click.option(
            "--scheduled-time-key",
            metavar="KEY",
            help="Add the tick time to each run's input under KEY (the data interval).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _settings(**given: Any) -> dict[str, Any]:
    """The Engine keyword arguments for the options given (None: not given)."""
    settings: dict[str, Any] = {}
    if given["timezone"] is not None:
        settings["timezone"] = given["timezone"]
    if given["input_"] is not None:
        settings["input"] = read_json_argument(given["input_"], what="--input")
    if given["overlap"] is not None:
        settings["overlap"] = given["overlap"]
    if given["catchup_window"] is not None:
        settings["catchup_window"] = parse_duration(
            given["catchup_window"], what="--catchup-window"
        )
    if given["jitter"] is not None:
        settings["jitter"] = parse_duration(given["jitter"], what="--jitter")
    for key in ("start_date", "end_date"):
        if given[key] is not None:
            settings[key] = parse_timestamp(given[key], what=f"--{key.replace('_', '-')}")
    if given["scheduled_time_key"] is not None:
        settings["scheduled_time_key"] = given["scheduled_time_key"]
    return settings


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule_to_json(record: ScheduleRecord) -> dict[str, Any]:
    """A schedule as JSON, keys after EventBridge Scheduler's GetSchedule."""
    import json

    return {
        "name": record.name,
        "stateMachine": record.machine,
        "scheduleExpression": record.expression,
        "scheduleExpressionTimezone": record.timezone,
        "state": "DISABLED" if record.paused else "ENABLED",
        "input": json.loads(record.input),
        "overlapPolicy": record.overlap,
        "catchupWindowSeconds": record.catchup_window_seconds,
        "jitterSeconds": record.jitter_seconds,
        "startDate": _iso(record.start_date),
        "endDate": _iso(record.end_date),
        "scheduledTimeKey": record.scheduled_time_key,
        "nextTick": None if record.paused else _iso(record.next_tick),
        "bufferedTicks": [_iso(tick) for tick in record.buffered],
        "creationDate": _iso(record.created_at),
        "lastModificationDate": _iso(record.updated_at),
    }


def description_to_json(description: ScheduleDescription) -> dict[str, Any]:
    document = schedule_to_json(description.schedule)
    document["nextFireTimes"] = [_iso(t) for t in description.next_fire_times]
    document["recentRuns"] = [
        {
            "scheduledTime": _iso(tick.tick),
            "executionArn": tick.execution_id,
            "name": run.name if run else None,
            "status": run.status if run else None,
            "startedBy": tick.reason or "schedule",
        }
        for tick, run in description.runs
    ]
    document["skippedTicks"] = [
        {"scheduledTime": _iso(tick.tick), "outcome": tick.outcome, "reason": tick.reason}
        for tick in description.recent_ticks
        if tick.outcome != "STARTED"
    ]
    document["tickCounts"] = description.counts
    return document


def _show(record: ScheduleRecord) -> None:
    if json_output():
        emit_json(schedule_to_json(record))
        return
    state = "paused" if record.paused else f"next tick {_iso(record.next_tick) or 'none'}"
    click.echo(f"{record.name}  {record.expression} ({record.timezone})  {state}")


@click.group("schedules", cls=StepwiseGroup)
@global_options
def schedules() -> None:
    """Create and manage schedules: runs that start on time, once per tick."""


@schedules.command("create")
@click.argument("name")
@_settings_options
@click.option("--paused", is_flag=True, help="Create it paused.")
@global_options
def schedules_create(
    name: str,
    machine: str | None,
    cron: str | None,
    rate: str | None,
    at: str | None,
    paused: bool,
    **given: Any,
) -> None:
    """Create schedule NAME: start --machine M on each tick of --cron, --rate or --at."""
    if machine is None:
        raise CliError("schedules create needs --machine")
    expression = _expression(cron, rate, at)
    if expression is None:
        raise CliError("schedules create needs one of --cron, --rate and --at")
    settings = _settings(**given)
    record = with_client(
        lambda engine: engine.create_schedule(name, machine, expression, paused=paused, **settings)
    )
    _show(record)


@schedules.command("update")
@click.argument("name")
@_settings_options
@global_options
def schedules_update(
    name: str, machine: str | None, cron: str | None, rate: str | None, at: str | None, **given: Any
) -> None:
    """Change some settings of schedule NAME (a new expression ticks from now)."""
    changes = _settings(**given)
    expression = _expression(cron, rate, at)
    if expression is not None:
        changes["expression"] = expression
    if machine is not None:
        changes["machine"] = machine
    if not changes:
        raise CliError("schedules update: give at least one setting to change")
    _show(with_client(lambda engine: engine.update_schedule(name, **changes)))


@schedules.command("list")
@global_options
def schedules_list() -> None:
    """List the schedules."""
    found = with_client(lambda engine: engine.list_schedules())
    if json_output():
        emit_json({"schedules": [schedule_to_json(record) for record in found]})
        return
    print_table(
        ["NAME", "MACHINE", "EXPRESSION", "TIMEZONE", "STATE", "NEXT TICK"],
        [
            [
                r.name,
                r.machine,
                r.expression,
                r.timezone,
                "DISABLED" if r.paused else "ENABLED",
                "" if r.paused else _iso(r.next_tick) or "",
            ]
            for r in found
        ],
    )


@schedules.command("describe")
@click.argument("name")
@global_options
def schedules_describe(name: str) -> None:
    """Show schedule NAME: its next 5 fire times, its last runs and its skipped ticks."""
    document = description_to_json(with_client(lambda engine: engine.describe_schedule(name)))
    if json_output():
        emit_json(document)
        return
    for key in ("name", "stateMachine", "scheduleExpression", "scheduleExpressionTimezone"):
        click.echo(f"{key}: {document[key]}")
    for key in ("state", "overlapPolicy", "catchupWindowSeconds", "scheduledTimeKey"):
        click.echo(f"{key}: {document[key]}")
    click.echo("next fire times:")
    for moment in document["nextFireTimes"]:
        click.echo(f"  {moment}")
    click.echo("last runs:")
    for run in document["recentRuns"]:
        click.echo(
            f"  {run['scheduledTime']}  {run['status']}  {run['name']}  ({run['startedBy']})"
        )
    click.echo("skipped ticks:")
    for tick in document["skippedTicks"]:
        click.echo(f"  {tick['scheduledTime']}  {tick['outcome']}  {tick['reason']}")


@schedules.command("pause")
@click.argument("name")
@global_options
def schedules_pause(name: str) -> None:
    """Pause schedule NAME: no tick starts a run until it is resumed."""
    _show(with_client(lambda engine: engine.pause_schedule(name)))


@schedules.command("resume")
@click.argument("name")
@global_options
def schedules_resume(name: str) -> None:
    """Resume schedule NAME from now (ticks while it was paused are not run; see backfill)."""
    _show(with_client(lambda engine: engine.resume_schedule(name)))


@schedules.command("delete")
@click.argument("name")
@global_options
def schedules_delete(name: str) -> None:
    """Delete schedule NAME (its runs stay)."""
    with_client(lambda engine: engine.delete_schedule(name))
    if json_output():
        emit_json({})


@schedules.command("trigger")
@click.argument("name")
@global_options
def schedules_trigger(name: str) -> None:
    """Start one run of schedule NAME now, even while it is paused."""
    record = with_client(lambda engine: engine.trigger_schedule(name))
    if json_output():
        emit_json({"executionArn": record.execution_id, "name": record.name})
    else:
        click.echo(record.execution_id)


@schedules.command("backfill")
@click.argument("name")
@click.option("--from", "start", metavar="TS", required=True, help="First tick time (included).")
@click.option("--to", "end", metavar="TS", required=True, help="Last tick time (excluded).")
@global_options
def schedules_backfill(name: str, start: str, end: str) -> None:
    """Start one run per tick of NAME in [--from, --to), once each, even if paused."""
    begin, stop = parse_timestamp(start, what="--from"), parse_timestamp(end, what="--to")
    started = with_client(lambda engine: engine.backfill_schedule(name, begin, stop))
    if json_output():
        emit_json(
            {"executions": [{"executionArn": r.execution_id, "name": r.name} for r in started]}
        )
        return
    for record in started:
        click.echo(record.execution_id)
