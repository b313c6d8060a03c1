"""The process's start-up heap, frozen once the first Engine has started (`gc.freeze`).

`freeze_started_heap` freezes it; `freezer_closed` notes that the Engine
that froze it has closed; `collect_leftovers` (a later Engine, before it
opens its store) frees what that Engine left frozen.
"""

from __future__ import annotations

import gc
import os

__all__ = ["collect_leftovers", "freeze_started_heap", "freezer_closed"]

# Whether `freeze_started_heap` has run in this process; whether it froze the
# heap, and nothing had been frozen before (not with STEPWISE_GC_FREEZE=0);
# whether the Engine that froze it is still open; whether what it left frozen
# after it closed has been collected.
_heap_frozen = False
_froze = False
_freezer_open = False
_leftovers_collected = False


def freeze_started_heap() -> bool:
    """Once per process, when the first Engine has started: `gc.freeze` what is alive.

    What is loaded and built by then (modules, SQLAlchemy, the store, the
    engine's machinery) lives as long as the process and holds next to no
    cyclic garbage, yet every full collection walked all of it: a Map's
    iterations or many executions at once promote enough objects to set one
    off every few runs (W2 on PostgreSQL: ~4 ms of a ~30 ms run's CPU, see
    benchmarks/PROFILE_STORE.md). Frozen objects are still freed by their
    reference counts; the CLI's start-up (`engine.cli.core.end_startup`)
    freezes what it loaded the same way. `STEPWISE_GC_FREEZE=0` turns it off.
    True when this call froze the heap (the caller is then the freezer).
    """
    global _heap_frozen, _froze, _freezer_open
    if _heap_frozen:
        return False
    _heap_frozen = True
    # An application that wants every cycle collected opts out.
    if os.environ.get("STEPWISE_GC_FREEZE", "1") == "0":
        return False
    # Objects frozen before ours are the host's (or the CLI's start-up): the
    # leftovers' collection would unfreeze them too, so it is then skipped.
    _froze = gc.get_freeze_count() == 0
    gc.freeze()
    _freezer_open = True
    return True


def freezer_closed() -> None:
    """The Engine that froze the heap has closed (see `collect_leftovers`)."""
    global _freezer_open
    _freezer_open = False


def collect_leftovers() -> None:
    """Before a later Engine opens its store: free what the closed freezer left frozen.

    The first Engine's own objects (its store, SQLAlchemy engine, pool,
    runtime) were alive at its freeze, and their reference cycles are never
    walked while frozen: closed, they would stay for the life of the process
    (~0.6 MB on PostgreSQL). Once per process, and only when a second Engine
    starts after the first closed (a test suite, a benchmark's second run; a
    service's one Engine and the CLI never pay it): unfreeze, collect fully
    (~25-50 ms), freeze again what lives on. Not when something else had
    frozen objects before the first Engine did (a host's `gc.freeze` before
    forking, the CLI's start-up): unfreezing would undo that too.
    """
    global _leftovers_collected
    if _froze and not _freezer_open and not _leftovers_collected:
        _leftovers_collected = True
        gc.unfreeze()
        gc.collect()
        gc.freeze()
