"""Schedules under an injected clock: each tick starts its run once, catch-up, overlap, DST.

The scheduler is driven pass by pass (`Scheduler.run_once`) on a clock the
test sets, on both stores, with no worker running the executions: a run
stays RUNNING until the test finishes it (`Engine.resume`), which is what
makes the overlap policies observable. One test runs the scheduler's own
loop on trio's MockClock, so two days of hourly ticks take milliseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import msgspec
import pytest
from trio.testing import MockClock

from engine import Engine, LoopClock
from engine.scheduling import (
    InvalidScheduleExpression,
    ScheduleAlreadyExists,
    Scheduler,
    parse_expression,
    tick_execution_name,
)

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    async def sleep_until(self, when: datetime) -> None:
        await anyio.sleep(0)


def ticks(expression: str, start: datetime, end: datetime, tz: str = "UTC") -> list[datetime]:
    return list(parse_expression(expression, tz).ticks_between(start, end, anchor=start))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- expressions --------------------------------------------------------------


def test_cron_rate_and_at_expressions() -> None:
    assert ticks("0 2 * * *", T0, T0 + timedelta(days=3)) == [
        utc("2026-12-01T02:00"),
        utc("2026-12-02T02:00"),
        utc("2026-12-03T02:00"),
    ]
    # EventBridge's 6 fields: days of the week 1-7 are SUN-SAT; MON-FRI by name.
    weekdays = ticks("cron(0 9 ? * MON-FRI *)", T0, T0 + timedelta(days=7))
    assert [t.strftime("%a") for t in weekdays] == ["Tue", "Wed", "Thu", "Fri", "Mon"]
    assert ticks("cron(0 9 ? * 2 *)", T0, T0 + timedelta(days=7)) == [utc("2026-12-07T09:00")]
    assert ticks("cron(0 0 1 * ? 2027)", T0, T0 + timedelta(days=90)) == [
        utc("2027-01-01T00:00"),
        utc("2027-02-01T00:00"),
    ]
    assert ticks("rate(6 hours)", T0, T0 + timedelta(days=1)) == [
        T0 + timedelta(hours=h) for h in (0, 6, 12, 18)
    ]
    assert parse_expression("rate(1 days)").text == "rate(1 day)"
    at = parse_expression("at(2026-12-24T18:00:00)", "Europe/Paris")
    assert at.at == utc("2026-12-24T17:00")
    for bad in ("0 2 * *", "cron(0 2 * * * *)", "rate(0 minutes)", "rate(5 weeks)", "nonsense"):
        with pytest.raises(InvalidScheduleExpression):
            parse_expression(bad)
    with pytest.raises(InvalidScheduleExpression):
        parse_expression("0 2 * * *", "Mars/Olympus")


def test_daylight_saving_follows_eventbridge_scheduler() -> None:
    tz = "America/New_York"
    # Spring forward (8 March 2026): 02:30 never happens that night, so it is skipped.
    spring = ticks("30 2 * * *", utc("2026-03-07T00:00"), utc("2026-03-10T00:00"), tz)
    assert spring == [utc("2026-03-07T07:30"), utc("2026-03-09T06:30")]
    # Fall back (1 November 2026): 01:30 happens twice and fires once, the first time.
    fall = ticks("30 1 * * *", utc("2026-10-31T00:00"), utc("2026-11-03T00:00"), tz)
    assert fall == [utc("2026-10-31T05:30"), utc("2026-11-01T05:30"), utc("2026-11-02T06:30")]
    # Every local hour on the fall-back night: 01:00 once, no double fire.
    night = ticks("0 * * * *", utc("2026-11-01T04:00"), utc("2026-11-01T08:00"), tz)
    assert night == [utc("2026-11-01T04:00"), utc("2026-11-01T05:00"), utc("2026-11-01T07:00")]


# -- the scheduler, pass by pass ------------------------------------------------


def scheduled(db_url: str, body: Callable[[Engine, ManualClock, Scheduler], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        clock = ManualClock(T0)
        async with Engine(db_url, worker=False, clock=clock) as engine:
            await engine.create_state_machine("nightly", PASS)
            scheduler = Scheduler(
                store=engine.store,
                lifecycle=engine.lifecycle,
                clock=clock,
                run_db=engine._run_db,
                worker_id="scheduler-a",
            )
            return await body(engine, clock, scheduler)

    return anyio.run(main)


async def names_of(engine: Engine) -> list[str]:
    return sorted(r.name for r in await engine.list_executions(machine="nightly"))


async def finish_all(engine: Engine) -> None:
    for record in await engine.list_executions(machine="nightly", status="RUNNING"):
        await engine.resume(record)


def test_nightly_schedule_starts_each_tick_once(db_url: str) -> None:
    async def body(engine: Engine, clock: ManualClock, scheduler: Scheduler) -> None:
        await engine.create_schedule(
            "etl", "nightly", "0 2 * * *", input={"table": "orders"}, scheduled_time_key="day"
        )
        other = Scheduler(
            store=engine.store,
            lifecycle=engine.lifecycle,
            clock=clock,
            run_db=engine._run_db,
            worker_id="scheduler-b",
        )
        for day in range(10):
            for hour in (1, 2, 3):
                clock.current = T0 + timedelta(days=day, hours=hour)
                await scheduler.run_once()
                await other.run_once()
                await scheduler.run_once()
            await finish_all(engine)
        expected = [f"etl-202612{d:02d}T020000Z" for d in range(1, 11)]
        assert await names_of(engine) == expected
        first = await engine.describe("etl-20261201T020000Z")
        assert msgspec.json.decode(first.input) == {
            "table": "orders",
            "day": "2026-12-01T02:00:00Z",
        }
        description = await engine.describe_schedule("etl")
        assert description.next_fire_times[:2] == [utc("2026-12-11T02:00"), utc("2026-12-12T02:00")]
        assert len(description.next_fire_times) == 5
        assert description.counts == {"STARTED": 10}
        assert [run.status for _tick, run in description.runs if run] == ["SUCCEEDED"] * 10
        with pytest.raises(ScheduleAlreadyExists):
            await engine.create_schedule("etl", "nightly", "0 3 * * *")

    scheduled(db_url, body)


def test_catch_up_within_the_window_after_downtime(db_url: str) -> None:
    async def body(engine: Engine, clock: ManualClock, scheduler: Scheduler) -> None:
        await engine.create_schedule("all", "nightly", "0 2 * * *", overlap="allow_all")
        await engine.create_schedule(
            "recent", "nightly", "0 2 * * *", overlap="allow_all", catchup_window=timedelta(days=2)
        )
        clock.current = T0 + timedelta(days=4, hours=12)  # nothing ran for five nights
        await scheduler.run_once()
        names = await names_of(engine)
        assert [n for n in names if n.startswith("all-")] == [
            f"all-202612{d:02d}T020000Z" for d in range(1, 6)
        ]
        # Only the ticks under two days late ran; the older ones are recorded as missed.
        assert [n for n in names if n.startswith("recent-")] == [
            "recent-20261204T020000Z",
            "recent-20261205T020000Z",
        ]
        description = await engine.describe_schedule("recent")
        assert description.counts == {"STARTED": 2, "MISSED": 3}
        missed = [t for t in description.recent_ticks if t.outcome == "MISSED"]
        assert all("catch-up window" in (t.reason or "") for t in missed)

    scheduled(db_url, body)


def test_overlap_skip_records_the_skipped_ticks(db_url: str) -> None:
    async def body(engine: Engine, clock: ManualClock, scheduler: Scheduler) -> None:
        await engine.create_schedule("hourly", "nightly", "rate(1 hour)")
        for hour in range(4):  # the first run never finishes
            clock.current = T0 + timedelta(hours=hour, minutes=1)
            await scheduler.run_once()
        assert await names_of(engine) == ["hourly-20261201T000000Z"]
        description = await engine.describe_schedule("hourly")
        assert description.counts == {"STARTED": 1, "SKIPPED": 3}
        skipped = [t for t in description.recent_ticks if t.outcome == "SKIPPED"]
        assert all("still running" in (t.reason or "") for t in skipped)
        await finish_all(engine)
        clock.current = T0 + timedelta(hours=4, minutes=1)
        await scheduler.run_once()
        assert "hourly-20261201T040000Z" in await names_of(engine)

    scheduled(db_url, body)


def test_overlap_buffer_one_and_buffer_all(db_url: str) -> None:
    async def body(engine: Engine, clock: ManualClock, scheduler: Scheduler) -> None:
        await engine.create_schedule("one", "nightly", "rate(1 hour)", overlap="buffer_one")
        await engine.create_schedule("every", "nightly", "rate(1 hour)", overlap="buffer_all")
        for hour in range(4):
            clock.current = T0 + timedelta(hours=hour, minutes=1)
            await scheduler.run_once()
        assert await names_of(engine) == ["every-20261201T000000Z", "one-20261201T000000Z"]
        # Each closed run lets the next buffered tick start, in tick order.
        for _round in range(4):
            await finish_all(engine)
            clock.current += timedelta(seconds=10)
            await scheduler.run_once()
        names = await names_of(engine)
        assert [n for n in names if n.startswith("one-")] == [
            "one-20261201T000000Z",
            "one-20261201T010000Z",
        ]
        assert [n for n in names if n.startswith("every-")] == [
            f"every-20261201T0{h}0000Z" for h in range(4)
        ]
        assert (await engine.describe_schedule("one")).counts == {"STARTED": 2, "SKIPPED": 2}

    scheduled(db_url, body)


def test_overlap_cancel_other_stops_the_open_run(db_url: str) -> None:
    async def body(engine: Engine, clock: ManualClock, scheduler: Scheduler) -> None:
        await engine.create_schedule("fresh", "nightly", "rate(1 hour)", overlap="cancel_other")
        clock.current = T0 + timedelta(minutes=1)
        await scheduler.run_once()
        clock.current = T0 + timedelta(hours=1, minutes=1)
        await scheduler.run_once()
        first = await engine.describe("fresh-20261201T000000Z")
        assert first.stop_requested
        await engine.resume(first)  # the stop is carried out
        assert (await engine.describe(first.execution_id)).status == "ABORTED"
        clock.current += timedelta(seconds=10)
        await scheduler.run_once()
        assert "fresh-20261201T010000Z" in await names_of(engine)

    scheduled(db_url, body)


def test_backfill_trigger_pause_and_resume(db_url: str) -> None:
    async def body(engine: Engine, clock: ManualClock, scheduler: Scheduler) -> None:
        await engine.create_schedule("etl", "nightly", "0 2 * * *", paused=True)
        start, end = utc("2026-11-01T00:00"), utc("2026-11-04T02:00")
        first = await engine.backfill_schedule("etl", start, end)
        again = await engine.backfill_schedule("etl", start, end)
        assert [r.name for r in first] == [
            "etl-20261101T020000Z",
            "etl-20261102T020000Z",
            "etl-20261103T020000Z",
        ]  # [from, to): 4 November 02:00 is not in it
        assert [r.execution_id for r in again] == [r.execution_id for r in first]
        # Paused: no tick runs; trigger runs one now anyway.
        clock.current = T0 + timedelta(days=2)
        await scheduler.run_once()
        triggered = await engine.trigger_schedule("etl")
        assert triggered.name == "etl-20261203T000000Z"
        assert len(await names_of(engine)) == 4
        # Resumed: ticks from now on; the nights it was paused are not run.
        await engine.resume_schedule("etl")
        clock.current = T0 + timedelta(days=3, hours=3)
        await scheduler.run_once()
        assert await names_of(engine) == sorted(
            [r.name for r in first] + ["etl-20261203T000000Z", "etl-20261203T020000Z"]
        )
        await engine.delete_schedule("etl")
        assert await engine.list_schedules() == []

    scheduled(db_url, body)


# -- the loop, on a mocked clock ----------------------------------------------------


def test_the_scheduler_loop_wakes_on_time(sqlite_url: str) -> None:
    async def main() -> list[str]:
        clock = LoopClock(T0)
        async with Engine(sqlite_url, worker=False, clock=clock, inline_store=True) as engine:
            # Nothing runs here to be stopped (worker=False): the stop watcher's
            # 1 s poll would only wake the mocked loop 172,800 times in two days.
            engine.runtime.stop_poll_seconds = 3600
            await engine.create_state_machine("nightly", PASS)
            await engine.create_schedule("hourly", "nightly", "rate(1 hour)", overlap="allow_all")
            scheduler = Scheduler(
                store=engine.store,
                lifecycle=engine.lifecycle,
                clock=clock,
                run_db=engine._run_db,
                worker_id="loop",
                poll_seconds=3600,
            )
            with anyio.move_on_after(48 * 3600 - 1):
                await scheduler.run()
            # Woken for each tick, not polling in between.
            assert scheduler.passes < 4 * 48
            return await names_of(engine)

    names = anyio.run(
        main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )
    assert names == [tick_execution_name("hourly", T0 + timedelta(hours=h)) for h in range(48)]
