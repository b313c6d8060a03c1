"""Python's garbage collector while Engines run: the start-up heap frozen, young collections rarer.

Two process-wide settings, both made when an Engine has started. The first
Engine in a process calls `gc.freeze()` once: what is alive then (modules,
SQLAlchemy, the store, the engine's machinery) lives as long as the
process and holds next to no cyclic garbage, yet every full collection
walked all of it (W2 on PostgreSQL: ~4 ms of a ~30 ms run's CPU,
benchmarks/PROFILE_STORE.md). `STEPWISE_GC_FREEZE=0` turns it off.

While any Engine runs, generation 0's threshold is raised to
`YOUNG_THRESHOLD` (Python's default is 700 on 3.11, 2,000 from 3.12): a
walk keeps its journal, events and coroutines alive across its commits, so
a young collection mostly traverses live objects and promotes them (W2 on
PostgreSQL: 8 collections a run, 0.3 to 0.7 ms, nothing collected;
benchmarks/PROFILE.md, s19d). Only objects in reference cycles wait longer
to be freed (up to that many more allocations); reference counting frees
the rest as before. The last Engine to stop puts the threshold back unless
the application changed it meanwhile. `STEPWISE_GC_YOUNG` sets another
threshold; `0` leaves Python's as it is.
"""

from __future__ import annotations

import gc
import os
import threading

from engine.store.boundary import permanent

__all__ = ["YOUNG_THRESHOLD", "engine_started", "engine_stopped", "young_threshold"]

YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
# Whether the first Engine's start has frozen this process's heap.
_heap_frozen = False
# Engines started and not stopped, in any thread of this process.
_running = 0
# The thresholds before the first running Engine raised them, and what it set.
_saved: tuple[int, int, int] | None = None
_ours: tuple[int, int, int] | None = None


def young_threshold() -> int:
    """Generation 0's threshold while an Engine runs: $STEPWISE_GC_YOUNG, else YOUNG_THRESHOLD.

    0 means Python's own is left as it is. Anything but a whole number >= 0
    raises StoreUnavailable, not transient (a configuration error, as a
    misset STEPWISE_PG_POOL_SIZE: the CLI reports it in one line).
    """
    raw = os.environ.get("STEPWISE_GC_YOUNG", "").strip()
    if not raw:
        return YOUNG_THRESHOLD
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise permanent(f"STEPWISE_GC_YOUNG must be a whole number >= 0 (0: off), not {raw!r}")
    return value


def engine_started(young: int) -> None:
    """An Engine has started: freeze the heap (once a process), raise the young threshold.

    `young` is generation 0's threshold while Engines run (`young_threshold`:
    0 leaves Python's). Every call is to be matched by one `engine_stopped`.
    """
    global _heap_frozen, _running, _saved, _ours
    with _lock:
        if not _heap_frozen:
            _heap_frozen = True
            # An application that wants every cycle collected opts out.
            if os.environ.get("STEPWISE_GC_FREEZE", "1") != "0":
                gc.freeze()
        _running += 1
        current = gc.get_threshold()
        # Threshold 0 is a collector turned off: left so.
        if _running == 1 and young > current[0] > 0:
            _saved, _ours = current, (young, current[1], current[2])
            gc.set_threshold(*_ours)


def engine_stopped() -> None:
    """An Engine has stopped: the last one puts back the threshold it raised (if still its own)."""
    global _running, _saved, _ours
    with _lock:
        _running -= 1
        if _running == 0 and _saved is not None:
            if gc.get_threshold() == _ours:
                gc.set_threshold(*_saved)
            _saved = _ours = None
