"""Schedules for every face: create, update, pause, resume, delete, describe, trigger, backfill.

`Schedules` is what `Engine` (and through it the CLI) calls; it checks a
schedule's definition (name, expression, time zone, overlap policy, input)
before the store keeps it, and works out where its ticks begin. A new
schedule's first tick is its first at or after the later of now and its
start date. Resuming a paused schedule starts again from now: the ticks that
fell while it was paused are not run (`backfill` runs them). `trigger`
starts one run now, named like a tick at the current second; `backfill`
starts one run per tick of a half-open interval [from, to), regardless of
the overlap policy and of pause, under the ticks' own names, so a tick
already run (by the scheduler or an earlier backfill) is not run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from engine.clock import Clock
from engine.lifecycle import Lifecycle, RunDb
from engine.names import check_name
from engine.scheduling.expressions import (
    InvalidScheduleExpression,
    ScheduleExpression,
    parse_expression,
)
from engine.scheduling.scheduler import (
    DEFAULT_CATCHUP_WINDOW,
    OVERLAP_POLICIES,
    jitter_offset,
    start_tick,
)
from engine.store import ExecutionRecord, Store
from engine.store.schedules import ScheduleRecord, TickOutcome, TickRecord

__all__ = ["MAX_SCHEDULE_NAME", "ScheduleDescription", "Schedules"]

# A tick's execution name adds "-YYYYMMDDTHHMMSSZ" (17 characters) and must stay within 80.
MAX_SCHEDULE_NAME = 63
# At most this many runs from one backfill call.
MAX_BACKFILL = 10_000


@dataclass(frozen=True)
class ScheduleDescription:
    """A schedule, its next fire times, its last runs and its skipped or missed ticks."""

    schedule: ScheduleRecord
    next_fire_times: list[datetime]
    recent_ticks: list[TickRecord]
    runs: list[tuple[TickRecord, ExecutionRecord | None]]
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedules:
    """The schedule operations on one store; `poke` wakes this process's scheduler."""

    store: Store
    lifecycle: Lifecycle
    clock: Clock
    run_db: RunDb
    poke: Any = None

    async def create(
        self,
        name: str,
        machine: str,
        expression: str,
        *,
        timezone: str = "UTC",
        input: Any = None,
        overlap: str = "skip",
        catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW,
        jitter: timedelta = timedelta(0),
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        paused: bool = False,
        scheduled_time_key: str | None = None,
    ) -> ScheduleRecord:
        """Create schedule `name` starting `machine` on `expression` in `timezone`.

        Raises InvalidName, InvalidScheduleExpression (also for a bad overlap
        policy, window, dates or input), StateMachineDoesNotExist and
        ScheduleAlreadyExists.
        """
        check_name(name, what="schedule")
        if len(name) > MAX_SCHEDULE_NAME:
            raise InvalidScheduleExpression(
                f"schedule name {name!r} is over {MAX_SCHEDULE_NAME} characters (its runs' "
                "names add the tick time)"
            )
        await self.lifecycle.resolve_machine(machine)
        now = self.clock.now().replace(microsecond=0)
        record = ScheduleRecord(
            name=name,
            machine=machine,
            expression=expression,
            timezone=timezone,
            input=_encode_input(input, scheduled_time_key),
            overlap=overlap,
            catchup_window_seconds=catchup_window.total_seconds(),
            jitter_seconds=jitter.total_seconds(),
            start_date=start_date,
            end_date=end_date,
            scheduled_time_key=scheduled_time_key,
            paused=paused,
            anchor=start_date or now,
            next_tick=None,
            created_at=now,
            updated_at=now,
        )
        record = self._positioned(_checked(record), now)
        created = await self.run_db(self.store.create_schedule, record)
        self._wake()
        return created

    async def update(self, name: str, **changes: Any) -> ScheduleRecord:
        """Change some of a schedule's settings (the keyword names of `create`).

        A new expression, time zone or start date makes the ticks begin again
        from now. Raises what `create` raises, and ScheduleDoesNotExist.
        """
        current = await self.describe_record(name)
        now = self.clock.now().replace(microsecond=0)
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "catchup_window":
                values["catchup_window_seconds"] = value.total_seconds()
            elif key == "jitter":
                values["jitter_seconds"] = value.total_seconds()
            elif key != "input":
                values[key] = value
        if "machine" in values:
            await self.lifecycle.resolve_machine(values["machine"])
        time_key: str | None = values.get("scheduled_time_key", current.scheduled_time_key)
        if "input" in changes:
            values["input"] = _encode_input(changes["input"], time_key)
        else:
            _encode_input(msgspec.json.decode(current.input), time_key)
        record = msgspec.structs.replace(current, **values, updated_at=now)
        record = _checked(record)
        if {"expression", "timezone", "start_date"} & changes.keys():
            if "start_date" in changes:
                record = msgspec.structs.replace(record, anchor=changes["start_date"] or now)
            record = self._positioned(record, now)
        elif "end_date" in changes:
            record = self._positioned(record, now, keep=True)
        updated = await self.run_db(self.store.update_schedule, record)
        self._wake()
        return updated

    async def pause(self, name: str) -> ScheduleRecord:
        """Pause a schedule: no tick starts a run until it is resumed."""
        return await self.update(name, paused=True)

    async def resume(self, name: str) -> ScheduleRecord:
        """Resume a paused schedule from now (ticks that fell while paused are not run)."""
        current = await self.describe_record(name)
        if not current.paused:
            return current
        now = self.clock.now().replace(microsecond=0)
        record = self._positioned(
            msgspec.structs.replace(current, paused=False, updated_at=now), now
        )
        updated = await self.run_db(self.store.update_schedule, record)
        self._wake()
        return updated

    async def delete(self, name: str) -> None:
        """Delete a schedule and the record of its ticks (its runs stay). ScheduleDoesNotExist."""
        await self.run_db(self.store.delete_schedule, name)

    async def describe_record(self, name: str) -> ScheduleRecord:
        """The stored schedule. Raises ScheduleDoesNotExist."""
        return await self.run_db(self.store.get_schedule, name)

    async def list_all(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        return await self.run_db(self.store.list_schedules)

    async def describe(self, name: str, *, runs: int = 10) -> ScheduleDescription:
        """The schedule with its next 5 fire times, its last runs and skipped or missed ticks."""
        record = await self.describe_record(name)
        expression = parse_expression(record.expression, record.timezone)
        upcoming: list[datetime] = []
        if not record.paused and record.next_tick is not None:
            ticks = expression.next_ticks(record.next_tick, 5, anchor=record.anchor)
            upcoming = [
                tick + jitter_offset(record, tick)
                for tick in ticks
                if record.end_date is None or tick < record.end_date
            ]
        recent = await self.run_db(self.store.list_ticks, name, limit=50)
        started = await self.run_db(
            self.store.list_ticks, name, limit=runs, outcome=TickOutcome.STARTED
        )
        described: list[tuple[TickRecord, ExecutionRecord | None]] = []
        for tick in started:
            execution = None
            if tick.execution_id is not None:
                try:
                    execution = await self.lifecycle.describe(tick.execution_id)
                except Exception:  # its record was deleted: show the tick anyway
                    execution = None
            described.append((tick, execution))
        counts = await self.run_db(self.store.count_ticks, name)
        return ScheduleDescription(record, upcoming, recent, described, counts)

    async def trigger(self, name: str) -> ExecutionRecord:
        """Start one run of the schedule now (even while paused), named for the current second."""
        record = await self.describe_record(name)
        tick = self.clock.now().replace(microsecond=0)
        execution = await start_tick(self.lifecycle, record, tick)
        await self._record_started(record, tick, execution, "triggered")
        return execution

    async def backfill(self, name: str, start: datetime, end: datetime) -> list[ExecutionRecord]:
        """Start one run per tick in [start, end), whatever the overlap policy or pause.

        A tick that already has its run is not run again; its record is
        returned. Raises InvalidScheduleExpression for an empty or reversed
        interval or one of more than 10,000 ticks.
        """
        if end <= start:
            raise InvalidScheduleExpression("backfill: --to must be after --from")
        record = await self.describe_record(name)
        expression = parse_expression(record.expression, record.timezone)
        ticks = []
        for tick in expression.ticks_between(start, end, anchor=record.anchor):
            ticks.append(tick)
            if len(ticks) > MAX_BACKFILL:
                raise InvalidScheduleExpression(f"backfill: over {MAX_BACKFILL} ticks; split it")
        started = []
        for tick in ticks:
            execution = await start_tick(self.lifecycle, record, tick)
            await self._record_started(record, tick, execution, "backfill")
            started.append(execution)
        return started

    async def _record_started(
        self, record: ScheduleRecord, tick: datetime, execution: ExecutionRecord, reason: str
    ) -> None:
        await self.run_db(
            self.store.record_ticks,
            [
                TickRecord(
                    schedule=record.name,
                    tick=tick,
                    outcome=TickOutcome.STARTED,
                    reason=reason,
                    execution_id=execution.execution_id,
                    recorded_at=self.clock.now(),
                )
            ],
        )

    def _positioned(
        self, record: ScheduleRecord, now: datetime, *, keep: bool = False
    ) -> ScheduleRecord:
        """The record with its next tick (the first at or after now and its start) and due time."""
        expression = parse_expression(record.expression, record.timezone)
        begin = now if record.start_date is None else max(now, record.start_date)
        if keep and record.next_tick is not None:
            begin = record.next_tick
        upcoming = _first_tick(expression, record, begin)
        due = None if upcoming is None else upcoming + jitter_offset(record, upcoming)
        if record.buffered and due is not None:
            due = min(due, now)
        return msgspec.structs.replace(record, next_tick=upcoming, due_at=due)

    def _wake(self) -> None:
        if self.poke is not None:
            self.poke()


def _first_tick(
    expression: ScheduleExpression, record: ScheduleRecord, begin: datetime
) -> datetime | None:
    ticks = expression.next_ticks(begin, 1, anchor=record.anchor)
    if not ticks or (record.end_date is not None and ticks[0] >= record.end_date):
        return None
    return ticks[0]


def _checked(record: ScheduleRecord) -> ScheduleRecord:
    """The record with its expression in canonical form; InvalidScheduleExpression if unusable."""
    expression = parse_expression(record.expression, record.timezone)
    if record.overlap not in OVERLAP_POLICIES:
        raise InvalidScheduleExpression(
            f"overlap policy {record.overlap!r}: use one of {', '.join(OVERLAP_POLICIES)}"
        )
    if record.catchup_window_seconds < 0 or record.jitter_seconds < 0:
        raise InvalidScheduleExpression("the catch-up window and the jitter cannot be negative")
    for moment in (record.start_date, record.end_date):
        if moment is not None and moment.tzinfo is None:
            raise InvalidScheduleExpression("start and end dates need a time zone (or Z)")
    if record.start_date and record.end_date and record.end_date <= record.start_date:
        raise InvalidScheduleExpression("the end date must be after the start date")
    if record.scheduled_time_key is not None:
        check_name(record.scheduled_time_key, what="scheduled-time key")
    return msgspec.structs.replace(record, expression=expression.text)


def _encode_input(value: Any, scheduled_time_key: str | None) -> str:
    if scheduled_time_key is not None and not isinstance(value, dict | None):
        raise InvalidScheduleExpression(
            "--scheduled-time-key needs the schedule input to be a JSON object"
        )
    try:
        return msgspec.json.encode({} if value is None else value).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidScheduleExpression(f"schedule input is not JSON: {exc}") from None
