"""The durable runtime: interpreter, journal, store, workers, timers, telemetry and CLI.

`Engine` is the embedding API; `stepwise` (engine.cli) is the same engine
from the command line. The public names below are loaded on first use
(PEP 562), so that importing a light submodule — the CLI's, for ``stepwise
--help`` — does not load SQLAlchemy and the interpreter with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.lazy import lazy_names

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.clock import Clock, LoopClock, SystemClock
    from engine.store import Event, ExecutionRecord, MachineVersion

__all__ = [
    "Clock",
    "Engine",
    "Event",
    "ExecutionRecord",
    "LoopClock",
    "MachineVersion",
    "SystemClock",
]

_HOME = {
    "Clock": "engine.clock",
    "Engine": "engine.api",
    "Event": "engine.store",
    "ExecutionRecord": "engine.store",
    "LoopClock": "engine.clock",
    "MachineVersion": "engine.store",
    "SystemClock": "engine.clock",
}


__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__)
