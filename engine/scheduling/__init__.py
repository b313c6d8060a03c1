"""Schedules: workflows that start on time, exactly once per tick, from every worker.

`expressions` reads cron, EventBridge ``cron(…)``, ``rate(…)`` and ``at(…)``
with time zones and EventBridge's daylight-saving rule; `scheduler` is the
loop each worker runs (claims due schedule rows, starts each tick's run
under a name derived from the tick, applies catch-up and overlap); `service`
is the face-neutral API (`Schedules`) the Engine and the CLI call. The
expressions and the service load on first use: a worker whose scheduler
finds no schedule due never imports them (nor zoneinfo).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine.scheduling.scheduler import (
    DEFAULT_CATCHUP_WINDOW,
    OVERLAP_POLICIES,
    Scheduler,
    tick_execution_name,
)
from engine.store.schedules import (
    InvalidScheduleExpression,
    ScheduleAlreadyExists,
    ScheduleDoesNotExist,
    ScheduleRecord,
    TickOutcome,
    TickRecord,
)

if TYPE_CHECKING:
    from engine.scheduling.expressions import ScheduleExpression, parse_expression
    from engine.scheduling.service import ScheduleDescription, Schedules

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

# Loaded on first use (PEP 562): every in-process worker runs the scheduler
# loop, but only a process that reads expressions or calls the schedule API
# needs them (and zoneinfo with them).
_HOME = {
    "ScheduleExpression": "engine.scheduling.expressions",
    "parse_expression": "engine.scheduling.expressions",
    "ScheduleDescription": "engine.scheduling.service",
    "Schedules": "engine.scheduling.service",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'engine.scheduling' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
