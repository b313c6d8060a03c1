"""Schedules: workflows that start on time, exactly once per tick, from every worker.

`expressions` reads cron, EventBridge ``cron(…)``, ``rate(…)`` and ``at(…)``
with time zones and EventBridge's daylight-saving rule; `scheduler` is the
loop each worker runs (claims due schedule rows, starts each tick's run
under a name derived from the tick, applies catch-up and overlap); `service`
is the face-neutral API (`Schedules`) the Engine and the CLI call.
"""

from __future__ import annotations

from engine.scheduling.expressions import (
    InvalidScheduleExpression,
    ScheduleExpression,
    parse_expression,
)
from engine.scheduling.scheduler import (
    DEFAULT_CATCHUP_WINDOW,
    OVERLAP_POLICIES,
    Scheduler,
    tick_execution_name,
)
from engine.scheduling.service import ScheduleDescription, Schedules
from engine.store.schedules import (
    ScheduleAlreadyExists,
    ScheduleDoesNotExist,
    ScheduleRecord,
    TickOutcome,
    TickRecord,
)

__all__ = [
    "DEFAULT_CATCHUP_WINDOW",
    "OVERLAP_POLICIES",
    "InvalidScheduleExpression",
    "ScheduleAlreadyExists",
    "ScheduleDescription",
    "ScheduleDoesNotExist",
    "ScheduleExpression",
    "ScheduleRecord",
    "Scheduler",
    "Schedules",
    "TickOutcome",
    "TickRecord",
    "parse_expression",
    "tick_execution_name",
]
