"""Schedule expressions: when a schedule ticks, as EventBridge Scheduler and cron read them.

A schedule's expression is one of: a standard 5-field cron string
(``0 2 * * *``); EventBridge Scheduler's ``cron(min hour day-of-month month
day-of-week year)`` (6 fields, one of the two day fields ``?``, days of the
week 1-7 = SUN-SAT); ``rate(N minute|minutes|hour|hours|day|days)``; or
``at(yyyy-mm-ddThh:mm:ss)``, one tick. Cron fields are evaluated by croniter
on the wall clock of the schedule's IANA time zone (zoneinfo), then turned
into UTC with EventBridge Scheduler's daylight-saving rule: a wall time the
spring-forward transition skips does not exist and is **skipped** (recorded
as nothing: there was no such time), and a wall time the fall-back
transition repeats fires **once**, at its first occurrence. A rate counts
fixed intervals from the schedule's anchor (its start date, else its
creation), so it is blind to time zones: ``rate(1 day)`` is every 24 hours.
`ticks_between` lists the ticks of a half-open UTC interval; every tick is
a whole-second UTC datetime.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.store.schedules import InvalidScheduleExpression

__all__ = ["InvalidScheduleExpression", "ScheduleExpression", "parse_expression"]


_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")


@dataclass(frozen=True)
class ScheduleExpression:
    """A parsed expression in its time zone; `text` is its canonical spelling."""

    text: str
    timezone: str
    kind: str  # "cron", "rate" or "at"
    cron: str | None = None  # croniter's 7-field form (min hour dom mon dow sec year)
    interval: timedelta | None = None
    at: datetime | None = None  # UTC

    def ticks_between(
        self, start: datetime, end: datetime, *, anchor: datetime
    ) -> Iterator[datetime]:
        """The ticks t with start <= t < end (UTC), in order; `anchor` aligns a rate."""
        if self.kind == "at":
            assert self.at is not None
            if start <= self.at < end:
                yield self.at
            return
        if self.kind == "rate":
            assert self.interval is not None
            step = self.interval.total_seconds()
            count = max(0, -(-int((start - anchor).total_seconds()) // int(step)))
            tick = anchor + timedelta(seconds=count * step)
            while tick < end:
                if tick >= start:
                    yield tick
                tick += self.interval
            return
        yield from self._cron_ticks(start, end)

    def next_ticks(self, after: datetime, count: int, *, anchor: datetime) -> list[datetime]:
        """Up to `count` ticks at or after `after`, looking at most ten years ahead."""
        found: list[datetime] = []
        horizon = after + timedelta(days=3660)
        for tick in self.ticks_between(after, horizon, anchor=anchor):
            found.append(tick)
            if len(found) == count:
                break
        return found

    def _cron_ticks(self, start: datetime, end: datetime) -> Iterator[datetime]:
        from croniter import croniter  # loaded by the first cron schedule, not at startup

        assert self.cron is not None
        zone = ZoneInfo(self.timezone)
        # Walk the wall clock from a little before `start` (a fall-back hour
        # can put a wall time's first occurrence before its UTC instant).
        local = (start - timedelta(hours=3)).astimezone(zone).replace(tzinfo=None)
        walker = croniter(self.cron, local - timedelta(seconds=1))
        while True:
            wall: datetime = walker.get_next(datetime)
            first = wall.replace(tzinfo=zone, fold=0)
            utc = first.astimezone(UTC)
            if utc.astimezone(zone).replace(tzinfo=None) != wall:
                continue  # skipped by spring-forward: that wall time never happens
            if utc >= end:
                return
            if utc >= start:
                yield utc


def parse_expression(text: str, timezone: str = "UTC") -> ScheduleExpression:
    """Parse a cron, ``cron(…)``, ``rate(…)`` or ``at(…)`` expression in `timezone`.

    Raises InvalidScheduleExpression, naming what is wrong.
    """
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidScheduleExpression(f"unknown time zone {timezone!r}") from None
    text = " ".join(text.split())
    if match := _RATE.match(text):
        value, unit = int(match[1]), match[2].rstrip("s")
        if value <= 0:
            raise InvalidScheduleExpression(f"{text!r}: a rate must be at least 1 {unit}")
        return ScheduleExpression(
            text=f"rate({value} {unit}{'' if value == 1 else 's'})",
            timezone=timezone,
            kind="rate",
            interval=timedelta(seconds=value * _UNITS[unit]),
        )
    if match := _AT.match(text):
        try:
            wall = datetime.fromisoformat(match[1])
        except ValueError:
            raise InvalidScheduleExpression(f"{text!r} is not a valid time") from None
        return ScheduleExpression(
            text=text,
            timezone=timezone,
            kind="at",
            at=wall.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC),
        )
    if text.startswith("cron(") and text.endswith(")"):
        cron = _aws_cron(text[5:-1])
    elif text.startswith(("rate(", "at(")):
        raise InvalidScheduleExpression(
            f"{text!r}: write rate(N minutes|hours|days) or at(yyyy-mm-ddThh:mm:ss)"
        )
    else:
        fields = text.split(" ")
        if len(fields) != 5:
            raise InvalidScheduleExpression(
                f"{text!r}: a cron expression has 5 fields (minute hour day month weekday), "
                "or write cron(min hour day month weekday year)"
            )
        cron = " ".join([*fields, "0", "*"])
    from croniter import CroniterBadCronError, croniter

    try:
        croniter(cron, datetime(2026, 1, 1)).get_next(datetime)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise InvalidScheduleExpression(f"{text!r}: {exc}") from None
    return ScheduleExpression(text=text, timezone=timezone, kind="cron", cron=cron)


def _aws_cron(body: str) -> str:
    """EventBridge's 6 fields as croniter's 7, renumbering days of the week (AWS: 1 = SUN)."""
    fields = body.split(" ")
    if len(fields) != 6:
        raise InvalidScheduleExpression(
            f"cron({body}): EventBridge cron has 6 fields: minutes hours day-of-month month "
            "day-of-week year"
        )
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise InvalidScheduleExpression(
            f"cron({body}): exactly one of day-of-month and day-of-week must be '?'"
        )
    dow = _renumber_weekdays(dow)
    return " ".join([minute, hour, dom, month, dow, "0", year])


def _renumber_weekdays(field: str) -> str:
    if field in ("?", "*"):
        return "*"

    def shift(part: str) -> str:
        day, sep, nth = part.partition("#")
        day = re.sub(r"(?<![/\d])\d+", lambda m: str((int(m[0]) - 1) % 7), day)
        return day + sep + nth

    return ",".join(shift(part) for part in field.split(","))
