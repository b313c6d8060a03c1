"""The Engine's schedule calls, and its alert and trigger operations.

`ScheduleApi` is a mixin of `engine.Engine`, which builds the `Alerts` and
`Triggers` objects when it is entered (they need its store, lifecycle and
clock) and the `Schedules` object on first use (`_open_schedules`: the
schedule service and the expressions, with zoneinfo, load only then);
before the Engine is entered, using them is a clear RuntimeError. The
in-process worker runs the scheduler and alert-delivery loops
(`engine.scheduling.Scheduler`, `engine.alerts.AlertDeliverer`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.mixins import entered

if TYPE_CHECKING:
    from engine.alerts import Alerts
    from engine.scheduling import ScheduleDescription, ScheduleRecord, Schedules
    from engine.store import ExecutionRecord
    from engine.triggers import Triggers

__all__ = ["ScheduleApi"]


class ScheduleApi:
    """Mixin for `Engine`: schedules, alerts and triggers (set up by `Engine.__aenter__`)."""

    _schedules: Schedules | None
    _alerts: Alerts | None
    _triggers: Triggers | None

    @property
    def schedules(self) -> Schedules:
        """The schedule operations (`engine.scheduling.Schedules`) on this engine's store."""
        if self._schedules is None:
            self._schedules = self._open_schedules()
        return self._schedules

    def _open_schedules(self) -> Schedules:
        """A new `Schedules` on the entered Engine's store (RuntimeError before it is entered)."""
        raise NotImplementedError  # the Engine's own

    async def create_schedule(
        self, name: str, machine: str, expression: str, **options: Any
    ) -> ScheduleRecord:
        """Create a schedule; `options` are `Schedules.create`'s (timezone, input, overlap, …)."""
        return await self.schedules.create(name, machine, expression, **options)

    async def update_schedule(self, name: str, **changes: Any) -> ScheduleRecord:
        """Change some of a schedule's settings (`Schedules.update`)."""
        return await self.schedules.update(name, **changes)

    async def describe_schedule(self, name: str) -> ScheduleDescription:
        """A schedule with its next fire times, last runs and skipped ticks."""
        return await self.schedules.describe(name)

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await self.schedules.list_all()

    async def pause_schedule(self, name: str) -> ScheduleRecord:
        return await self.schedules.pause(name)

    async def resume_schedule(self, name: str) -> ScheduleRecord:
        return await self.schedules.resume(name)

    async def delete_schedule(self, name: str) -> None:
        await self.schedules.delete(name)

    async def trigger_schedule(self, name: str) -> ExecutionRecord:
        """Start one run of the schedule now, even while it is paused."""
        return await self.schedules.trigger(name)

    async def backfill_schedule(
        self, name: str, start: datetime, end: datetime
    ) -> list[ExecutionRecord]:
        """Start one run per tick in [start, end), once each, whatever the overlap policy."""
        return await self.schedules.backfill(name, start, end)

    # -- alerts ----------------------------------------------------------------
    @property
    def alerts(self) -> Alerts:
        """The alert operations (`engine.alerts.Alerts`): create, list, test, deliveries, replay."""
        return entered(self._alerts)

    @property
    def triggers(self) -> Triggers:
        """The trigger operations (`engine.triggers.Triggers`): start B when A's run closes."""
        return entered(self._triggers)
