"""Schedules in the store: each schedule is a due row that workers claim, and its ticks' record.

A schedule row holds its definition (machine, expression, time zone, input,
overlap policy, catch-up window, jitter, dates, paused) and its progress:
`next_tick`, the first tick not yet looked at; `buffered`, the ticks the
overlap policy holds back; `last_execution_id`, the run the overlap policy
watches; and `due_at`, when a scheduler should next look at it. Workers
claim due rows under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so
one scheduler at a time advances a schedule, and every advance checks the
lease in the same transaction that records the tick. `schedule_ticks` keeps
what each tick did (STARTED, SKIPPED, MISSED) under the unique key
(schedule, tick): the first outcome recorded stands. The schedule input is
sealed like every payload (`codec`). Exactly once per tick does not rest on
the lease alone: a tick's execution name is derived from the tick, so the
executions table's unique key refuses a second start.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from engine.store.base import StoreBase
from engine.store.schema import schedule_ticks, schedules
from statemachine.errors import StepwiseError

__all__ = [
    "InvalidScheduleExpression",
    "ScheduleAlreadyExists",
    "ScheduleDoesNotExist",
    "ScheduleRecord",
    "ScheduleStore",
    "TickOutcome",
    "TickRecord",
]


class InvalidScheduleExpression(StepwiseError):
    """A schedule expression, time zone, time or setting that cannot be used.

    Raised by `engine.scheduling` (defined here, beside the schedules' other
    errors, so that `engine.errors` re-exports them all without an import
    cycle). EventBridge Scheduler calls it ValidationException.
    """

    aws_code = "ValidationException"


class ScheduleDoesNotExist(StepwiseError):
    """No schedule by that name (EventBridge Scheduler: ResourceNotFoundException)."""

    aws_code = "ResourceNotFoundException"


class ScheduleAlreadyExists(StepwiseError):
    """A schedule by that name exists already (EventBridge Scheduler: ConflictException)."""

    aws_code = "ConflictException"


class TickOutcome:
    """What became of a tick."""

    STARTED = "STARTED"
    SKIPPED = "SKIPPED"  # the overlap policy dropped it
    MISSED = "MISSED"  # older than the catch-up window when a scheduler saw it


class ScheduleRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule: its definition and its progress (see the module docstring)."""

    name: str
    machine: str
    expression: str
    timezone: str
    input: str
    overlap: str
    catchup_window_seconds: float
    jitter_seconds: float
    start_date: datetime | None
    end_date: datetime | None
    scheduled_time_key: str | None
    paused: bool
    anchor: datetime
    next_tick: datetime | None
    buffered: tuple[datetime, ...] = ()
    last_execution_id: str | None = None
    due_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class TickRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One tick of a schedule and what it did."""

    schedule: str
    tick: datetime
    outcome: str
    reason: str | None = None
    execution_id: str | None = None
    recorded_at: datetime


_DEFINITION = (
    "machine",
    "expression",
    "timezone",
    "input",
    "overlap",
    "catchup_window_seconds",
    "jitter_seconds",
    "start_date",
    "end_date",
    "scheduled_time_key",
    "paused",
    "anchor",
    "next_tick",
    "buffered",
    "last_execution_id",
    "due_at",
    "updated_at",
)


class ScheduleStore(StoreBase):
    """The store's calls for schedules and their ticks (a part of `Store`)."""

    def _schedule_values(self, record: ScheduleRecord) -> dict[str, Any]:
        values = {field: getattr(record, field) for field in record.__struct_fields__}
        values["input"] = self._codec.seal(record.input)
        values["buffered"] = json.dumps([tick.isoformat() for tick in record.buffered])
        return values

    def _schedule_record(self, row: Any) -> ScheduleRecord:
        values = {field: getattr(row, field) for field in ScheduleRecord.__struct_fields__}
        values["input"] = self._codec.open(row.input)
        values["buffered"] = tuple(datetime.fromisoformat(t) for t in json.loads(row.buffered))
        return ScheduleRecord(**values)

    def create_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        """Store a new schedule. Raises ScheduleAlreadyExists when the name is taken."""
        try:
            with self._write() as conn:
                conn.execute(sa.insert(schedules).values(**self._schedule_values(record)))
        except sa_exc.IntegrityError:
            raise ScheduleAlreadyExists(f"Schedule {record.name} already exists.") from None
        return record

    def get_schedule(self, name: str) -> ScheduleRecord:
        """The schedule called `name`. Raises ScheduleDoesNotExist."""
        with self._read() as conn:
            row = conn.execute(sa.select(schedules).where(schedules.c.name == name)).first()
        if row is None:
            raise ScheduleDoesNotExist(f"Schedule {name} does not exist.")
        return self._schedule_record(row)

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        with self._read() as conn:
            rows = conn.execute(sa.select(schedules).order_by(schedules.c.name)).all()
        return [self._schedule_record(row) for row in rows]

    def update_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        """Replace a schedule's definition and progress. Raises ScheduleDoesNotExist."""
        values = self._schedule_values(record)
        with self._write() as conn:
            done = conn.execute(
                sa.update(schedules)
                .where(schedules.c.name == record.name)
                .values(**{field: values[field] for field in _DEFINITION})
            )
        if done.rowcount == 0:
            raise ScheduleDoesNotExist(f"Schedule {record.name} does not exist.")
        return record

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule and its ticks' record. Raises ScheduleDoesNotExist."""
        with self._write() as conn:
            done = conn.execute(sa.delete(schedules).where(schedules.c.name == name))
            conn.execute(sa.delete(schedule_ticks).where(schedule_ticks.c.schedule == name))
        if done.rowcount == 0:
            raise ScheduleDoesNotExist(f"Schedule {name} does not exist.")

    def claim_due_schedules(
        self, worker_id: str, *, now: datetime, lease_seconds: float, limit: int = 16
    ) -> list[ScheduleRecord]:
        """Lease up to `limit` unpaused schedules that are due and not leased by another worker."""
        free = sa.or_(schedules.c.lease_expires_at.is_(None), schedules.c.lease_expires_at <= now)
        query = (
            sa.select(schedules)
            .where(schedules.c.due_at <= now, schedules.c.paused.is_(False), free)
            .order_by(schedules.c.due_at, schedules.c.name)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            rows = conn.execute(query).all()
            names = [row.name for row in rows]
            if names:
                conn.execute(
                    sa.update(schedules)
                    .where(schedules.c.name.in_(names))
                    .values(
                        lease_owner=worker_id,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                    )
                )
        return [self._schedule_record(row) for row in rows]

    def advance_schedule(
        self,
        name: str,
        worker_id: str,
        *,
        ticks: list[TickRecord],
        next_tick: datetime | None,
        buffered: tuple[datetime, ...],
        last_execution_id: str | None,
        due_at: datetime | None,
        now: datetime,
        release: bool = False,
        lease_seconds: float | None = None,
    ) -> bool:
        """Record `ticks` and the schedule's progress, if `worker_id` still holds its lease.

        `release` gives the lease back; otherwise `lease_seconds` extends it
        from `now` (a long catch-up pass keeps its schedule). Returns False
        (writing nothing) when the lease is lost or the schedule was deleted.
        """
        with self._write() as conn:
            row = conn.execute(
                sa.select(schedules.c.lease_owner, schedules.c.lease_expires_at)
                .where(schedules.c.name == name)
                .with_for_update()
            ).first()
            if row is None or row.lease_owner != worker_id or row.lease_expires_at <= now:
                return False
            self._insert_ticks(conn, ticks)
            values: dict[str, Any] = {
                "next_tick": next_tick,
                "buffered": json.dumps([tick.isoformat() for tick in buffered]),
                "last_execution_id": last_execution_id,
                "due_at": due_at,
            }
            if release:
                values.update(lease_owner=None, lease_expires_at=None)
            elif lease_seconds is not None:
                values["lease_expires_at"] = now + timedelta(seconds=lease_seconds)
            conn.execute(sa.update(schedules).where(schedules.c.name == name).values(**values))
        return True

    def record_ticks(self, ticks: list[TickRecord]) -> None:
        """Record ticks started outside the scheduler (backfill, trigger); first record stands."""
        with self._write() as conn:
            self._insert_ticks(conn, ticks)

    def _insert_ticks(self, conn: sa.Connection, ticks: list[TickRecord]) -> None:
        for tick in ticks:
            conn.execute(
                self._backend.insert_ignoring_duplicates(
                    schedule_ticks,
                    {field: getattr(tick, field) for field in tick.__struct_fields__},
                    key=("schedule", "tick"),
                )
            )

    def list_ticks(
        self, name: str, *, limit: int = 20, outcome: str | None = None
    ) -> list[TickRecord]:
        """The schedule's latest recorded ticks, newest first (only `outcome` ones if given)."""
        query = sa.select(schedule_ticks).where(schedule_ticks.c.schedule == name)
        if outcome is not None:
            query = query.where(schedule_ticks.c.outcome == outcome)
        query = query.order_by(schedule_ticks.c.tick.desc()).limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            TickRecord(**{field: getattr(row, field) for field in TickRecord.__struct_fields__})
            for row in rows
        ]

    def count_ticks(self, name: str) -> dict[str, int]:
        """How many of the schedule's ticks ended each way, by outcome."""
        query = (
            sa.select(schedule_ticks.c.outcome, sa.func.count())
            .where(schedule_ticks.c.schedule == name)
            .group_by(schedule_ticks.c.outcome)
        )
        with self._read() as conn:
            return {outcome: int(count) for outcome, count in conn.execute(query)}

    def next_schedule_due(self) -> datetime | None:
        """The earliest due time of an unpaused schedule (leased or not), or None."""
        with self._read() as conn:
            value: datetime | None = conn.execute(
                sa.select(schedules.c.due_at)
                .where(schedules.c.paused.is_(False), schedules.c.due_at.is_not(None))
                .order_by(schedules.c.due_at)
                .limit(1)
            ).scalar()
        return value
