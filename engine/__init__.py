"""The durable runtime: interpreter, journal, store, workers, timers, telemetry and CLI.

`Engine` is the embedding API; `stepwise` (engine.cli) is the same engine
from the command line.
"""

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
