"""The durable runtime: interpreter, journal, store, workers, timers, telemetry and CLI.

`Engine` is the embedding API; `stepwise` (engine.cli) is the same engine
from the command line. The public names below are loaded on first use
(PEP 562), so that importing a light submodule — the CLI's, for ``stepwise
--help`` — does not load SQLAlchemy and the interpreter with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
