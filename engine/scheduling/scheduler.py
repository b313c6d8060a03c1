"""The scheduler: the loop every worker runs that turns due schedule ticks into executions.

Each pass reads the earliest due time (`Store.next_schedule_due`) and, when
it has come, claims the schedules whose row is due (`Store.claim_due_schedules`,
under a lease, SKIP LOCKED on PostgreSQL) and advances each: the ticks that
came due since its last pass are either **missed** (older than the
schedule's catch-up window when first seen) or queued, and the queue is
persisted before any of it starts, so a crash loses no tick. Each queued
tick then starts through `Lifecycle.start` under a name derived from the
schedule and the tick (`tick_execution_name`), so however many workers,
restarts or backfills meet one tick, the executions table's unique key
starts it once; a tick whose execution exists already is recorded as
started by it. The overlap policy (Temporal's) decides what happens to a
tick while the schedule's previous run is still open: ``skip`` (the
default) records it SKIPPED; ``buffer_one`` keeps one and skips the rest;
``buffer_all`` keeps them all, in order; ``allow_all`` starts it anyway;
``cancel_other`` asks the open run to stop and starts the newest tick once
it has. Kept ticks stay in the schedule row and are looked at again every
`RECHECK`. Between ticks the schedule holds no worker: the loop sleeps on
the injected clock until the earliest due schedule, or `poll_seconds`
(schedules created by other processes), or a local `poke`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from engine.clock import Clock
from engine.lifecycle import Lifecycle, RunDb
from engine.runner import execution_arn
from engine.store import ExecutionRecord, ExecutionStatus, Store
from engine.store.errors import StoreUnavailable
from engine.store.schedules import ScheduleRecord, TickOutcome, TickRecord
from engine.worker import outage_of
from statemachine.errors import StepwiseError

if TYPE_CHECKING:
    from engine.scheduling.expressions import ScheduleExpression

__all__ = [
    "DEFAULT_CATCHUP_WINDOW",
    "MAX_TICKS_PER_PASS",
    "OVERLAP_POLICIES",
    "RECHECK",
    "Scheduler",
    "jitter_offset",
    "start_tick",
    "tick_execution_name",
    "tick_input",
]

log = logging.getLogger("stepwise.scheduler")

OVERLAP_POLICIES = ("skip", "buffer_one", "buffer_all", "allow_all", "cancel_other")
# Temporal's default: a tick up to a year late still runs when a scheduler comes back.
DEFAULT_CATCHUP_WINDOW = timedelta(days=365)
MAX_TICKS_PER_PASS = 1000
# How often ticks held back by an open run are looked at again.
RECHECK = timedelta(seconds=5)


def tick_execution_name(schedule: str, tick: datetime) -> str:
    """The execution name of `schedule`'s tick at `tick`: ``NAME-20261201T020000Z``."""
    return f"{schedule}-{tick:%Y%m%dT%H%M%SZ}"


def jitter_offset(schedule: ScheduleRecord, tick: datetime) -> timedelta:
    """How long after `tick` it fires: a fixed pseudo-random share of the jitter, per tick."""
    if schedule.jitter_seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule.name}|{tick.isoformat()}".encode()).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=int(share * schedule.jitter_seconds))


def tick_input(schedule: ScheduleRecord, tick: datetime) -> Any:
    """The input of the tick's execution: the schedule's, plus the tick time if asked for."""
    value = msgspec.json.decode(schedule.input)
    if schedule.scheduled_time_key and isinstance(value, dict):
        value = {**value, schedule.scheduled_time_key: f"{tick:%Y-%m-%dT%H:%M:%SZ}"}
    return value


async def start_tick(
    lifecycle: Lifecycle, schedule: ScheduleRecord, tick: datetime
) -> ExecutionRecord:
    """Start the tick's execution once and return its record.

    A tick whose execution exists (started by another worker, an earlier
    pass, a backfill) is returned as it is, whatever its input.
    """
    name = tick_execution_name(schedule.name, tick)
    existing = await _existing(lifecycle, schedule, name)
    if existing is not None:
        return existing
    try:
        return await lifecycle.start(schedule.machine, tick_input(schedule, tick), name=name)
    except StepwiseError:
        # Another worker started it between the look and the start.
        existing = await _existing(lifecycle, schedule, name)
        if existing is None:
            raise
        return existing


async def _existing(
    lifecycle: Lifecycle, schedule: ScheduleRecord, name: str
) -> ExecutionRecord | None:
    version = await lifecycle.resolve_machine(schedule.machine)
    try:
        return await lifecycle.describe(execution_arn(version.name, name))
    except StepwiseError:
        return None


@dataclass
class Scheduler:
    """Advances due schedules on one store; `run` is the worker's scheduling loop."""

    store: Store
    lifecycle: Lifecycle
    clock: Clock
    run_db: RunDb
    worker_id: str
    lease_seconds: float = 30.0
    poll_seconds: float = 5.0
    passes: int = 0
    _sleeping: anyio.CancelScope | None = field(default=None, repr=False)

    def poke(self) -> None:
        """Look at the schedules again now (one was created or changed in this process)."""
        if self._sleeping is not None:
            self._sleeping.cancel()

    async def run(self) -> None:
        """Advance due schedules until cancelled; a failing pass is logged and retried."""
        while True:
            asked = time.monotonic()
            claimed = 0
            due: datetime | None = None
            try:
                # The claim (a locking read and its statement, compiled and
                # kept) only when a schedule is due: most workers have none.
                due = await self.run_db(self.store.next_schedule_due)
                self.passes += 1
                if due is not None and due <= self.clock.now():
                    claimed = await self.run_once()
                outage_of(self.store).ok(asked)
            except StoreUnavailable as error:
                # The store is away: one line per outage (shared with the worker's loops).
                outage_of(self.store).failed(error)
            except Exception:
                log.exception("scheduler pass failed; trying again shortly")
            if claimed:
                continue
            now = self.clock.now()
            wake = now + timedelta(seconds=self.poll_seconds)
            if due is not None:
                # The earliest due time: sleep until it (a row held elsewhere:
                # look again in 0.25 s, not in a spin).
                wake = min(wake, max(due, now + timedelta(seconds=0.25)))
            with anyio.CancelScope() as scope:
                self._sleeping = scope
                await self.clock.sleep_until(wake)
            self._sleeping = None

    async def run_once(self) -> int:
        """One pass: claim the due schedules and advance each; returns how many were claimed."""
        now = self.clock.now()
        claimed = await self.run_db(
            self.store.claim_due_schedules,
            self.worker_id,
            now=now,
            lease_seconds=self.lease_seconds,
        )
        for schedule in claimed:
            try:
                await self.advance(schedule, now)
            except Exception:
                log.exception("schedule %s: pass failed; its lease will expire", schedule.name)
        return len(claimed)

    async def advance(self, schedule: ScheduleRecord, now: datetime) -> None:
        """Record the ticks due by `now`, start or hold them by the overlap policy, release."""
        # Loaded with the first schedule due (the loop runs on every worker;
        # most have no schedule): the expressions and zoneinfo stay unloaded.
        from engine.scheduling.expressions import parse_expression

        expression = parse_expression(schedule.expression, schedule.timezone)
        queue = list(schedule.buffered)
        missed: list[TickRecord] = []
        next_tick, more = self._due_ticks(schedule, expression, now, queue, missed)
        save = self._saver(schedule, now)
        if not await save(missed, next_tick, tuple(queue), schedule.last_execution_id):
            return
        last = schedule.last_execution_id
        kept: list[datetime] = []
        for index, tick in enumerate(queue):
            record, outcome, reason, last, keep = await self._decide(schedule, tick, last, kept)
            ticks = []
            if keep:
                kept = keep
            if outcome is not None:
                ticks.append(self._tick(schedule, tick, outcome, reason, record, now))
            remaining = tuple(kept) + tuple(queue[index + 1 :])
            if not await save(ticks, next_tick, remaining, last):
                return
        if kept:
            due: datetime | None = now + RECHECK
        elif more:
            due = now
        elif next_tick is not None:
            due = next_tick + jitter_offset(schedule, next_tick)
        else:
            due = None
        await save([], next_tick, tuple(kept), last, due=due, release=True)

    def _due_ticks(
        self,
        schedule: ScheduleRecord,
        expression: ScheduleExpression,
        now: datetime,
        queue: list[datetime],
        missed: list[TickRecord],
    ) -> tuple[datetime | None, bool]:
        """Move the ticks due by `now` into `queue` or `missed`; (the next tick, more due?)."""
        tick = schedule.next_tick
        if tick is None:
            return None, False
        window = timedelta(seconds=schedule.catchup_window_seconds)
        horizon = now + timedelta(days=3660)
        ticks = expression.ticks_between(tick, horizon, anchor=schedule.anchor)
        for seen, candidate in enumerate(ticks):
            if schedule.end_date is not None and candidate >= schedule.end_date:
                return None, False
            if candidate + jitter_offset(schedule, candidate) > now or seen >= MAX_TICKS_PER_PASS:
                return candidate, seen >= MAX_TICKS_PER_PASS
            if now - candidate > window:
                late = now - candidate
                missed.append(
                    self._tick(
                        schedule,
                        candidate,
                        TickOutcome.MISSED,
                        f"{late} late, over the catch-up window of {window}",
                        None,
                        now,
                    )
                )
            else:
                queue.append(candidate)
        return None, False

    async def _decide(
        self, schedule: ScheduleRecord, tick: datetime, last: str | None, kept: list[datetime]
    ) -> tuple[ExecutionRecord | None, str | None, str | None, str | None, list[datetime]]:
        """(execution, outcome, reason, the run to watch next, ticks to keep) for one tick."""
        name = tick_execution_name(schedule.name, tick)
        existing = await _existing(self.lifecycle, schedule, name)
        if existing is not None:
            return existing, TickOutcome.STARTED, None, existing.execution_id, kept
        policy = schedule.overlap
        open_run = await self._open_run(last)
        if (open_run is None and not kept) or policy == "allow_all":
            return await self._start(schedule, tick, last, kept)
        if policy == "skip":
            reason = f"overlap skip: {open_run.name if open_run else 'a run'} is still running"
            return None, TickOutcome.SKIPPED, reason, last, kept
        if policy == "buffer_all":
            return None, None, None, last, [*kept, tick]
        if policy == "buffer_one":
            if kept:
                return (
                    None,
                    TickOutcome.SKIPPED,
                    "overlap buffer_one: a tick is buffered",
                    last,
                    kept,
                )
            return None, None, None, last, [tick]
        # cancel_other: ask the open run to stop; the newest tick waits for it.
        if open_run is not None and not open_run.stop_requested:
            try:
                await self.lifecycle.stop(
                    open_run, error="States.Cancelled", cause=f"schedule {schedule.name}: overlap"
                )
            except StepwiseError:
                pass
        for older in kept:
            await self._record_superseded(schedule, older)
        return None, None, None, last, [tick]

    async def _record_superseded(self, schedule: ScheduleRecord, tick: datetime) -> None:
        now = self.clock.now()
        record = self._tick(
            schedule, tick, TickOutcome.SKIPPED, "overlap cancel_other: a newer tick", None, now
        )
        await self.run_db(self.store.record_ticks, [record])

    async def _start(
        self, schedule: ScheduleRecord, tick: datetime, last: str | None, kept: list[datetime]
    ) -> tuple[ExecutionRecord | None, str | None, str | None, str | None, list[datetime]]:
        try:
            record = await start_tick(self.lifecycle, schedule, tick)
        except StepwiseError as exc:
            return None, TickOutcome.SKIPPED, f"could not start: {exc}", last, kept
        return record, TickOutcome.STARTED, None, record.execution_id, kept

    async def _open_run(self, execution_id: str | None) -> ExecutionRecord | None:
        if execution_id is None:
            return None
        try:
            record = await self.lifecycle.describe(execution_id)
        except StepwiseError:
            return None
        return record if record.status == ExecutionStatus.RUNNING else None

    @staticmethod
    def _tick(
        schedule: ScheduleRecord,
        tick: datetime,
        outcome: str,
        reason: str | None,
        record: ExecutionRecord | None,
        now: datetime,
    ) -> TickRecord:
        return TickRecord(
            schedule=schedule.name,
            tick=tick,
            outcome=outcome,
            reason=reason,
            execution_id=record.execution_id if record else None,
            recorded_at=now,
        )

    def _saver(self, schedule: ScheduleRecord, now: datetime) -> Callable[..., Any]:
        async def save(
            ticks: list[TickRecord],
            next_tick: datetime | None,
            buffered: tuple[datetime, ...],
            last: str | None,
            *,
            due: datetime | None = None,
            release: bool = False,
        ) -> bool:
            held: bool = await self.run_db(
                self.store.advance_schedule,
                schedule.name,
                self.worker_id,
                ticks=ticks,
                next_tick=next_tick,
                buffered=buffered,
                last_execution_id=last,
                due_at=due if release else now,
                now=self.clock.now(),
                release=release,
                lease_seconds=self.lease_seconds,
            )
            if not held:
                log.warning(
                    "schedule %s: lease lost mid-pass; another worker goes on", schedule.name
                )
            return held

        return save
