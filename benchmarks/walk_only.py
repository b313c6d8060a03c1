"""The interpreter alone: W3's and W1's machines walked with no store, for profiling.

``python benchmarks/walk_only.py [pass|pass-replay|task|map] [executions]``
walks the W3 chain (20 Pass/Choice states), the W1 chain (10 Tasks
calling the sync `increment` handler) or W2's machine (a Map of 100
iterations, each a Task calling `increment`, here registered inline so no
thread hop blurs the figure) `executions` times through
`engine.walk.run_scope`, each time on a fresh in-memory journal, and
prints the microseconds per transition (a Map iteration counts as one;
process CPU time, all threads, and wall time; on a shared machine the CPU
figure is the steadier one). Checkpoints commit nothing, so the
figure is the Python cost of a transition (or of a Task step apart from
its commit): what `benchmarks/PROFILE.md` breaks down. In `map` mode a
checkpoint drains the journal as the runner's does (the rows' encode is
part of an iteration's loop work); the iterations' checkpoints gather
into one, as in a real run. As the runner does,
`Walk.reads_context` is set from the definition (`mentions_context`):
neither machine reads `$$`, so no context object is built. ``pass-replay``
walks a fully recorded journal (the cost of replaying a step on resume).
Run it under a sampling profiler to see where the time goes::

    py-spy record -r 1000 --format raw -o walk.txt -- python benchmarks/walk_only.py pass 4000
"""

from __future__ import annotations

import gc
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from activities.registry import Registry  # noqa: E402
from benchmarks.workloads import (  # noqa: E402
    MAP_ITEMS,
    PASS_CHOICE_LENGTH,
    RESOURCE,
    TASK_CHAIN_LENGTH,
    increment,
    map_machine,
    pass_choice_chain,
    task_chain,
)
from engine.clock import SystemClock  # noqa: E402
from engine.journal import Journal, Thread  # noqa: E402
from engine.states import run_state  # noqa: E402
from engine.walk import Services, Variables, Walk, mentions_context, run_scope  # noqa: E402
from statemachine.build import load  # noqa: E402

__all__ = ["main", "walk_once"]

MODES = ("pass", "pass-replay", "task", "map")


async def _no_checkpoint(**_: Any) -> None:
    return None


_REGISTRY = Registry()
_REGISTRY.register(RESOURCE, increment)
_INLINE_REGISTRY = Registry()
_INLINE_REGISTRY.register(RESOURCE, increment, inline=True)
_DEFINITIONS = {"task": task_chain(), "pass": pass_choice_chain(), "map": map_machine()}
_MAP_INPUT = {"items": list(range(MAP_ITEMS))}
_MAP_OUTPUT = [{"v": item + 1} for item in range(MAP_ITEMS)]
_MACHINES = {mode: load(definition) for mode, definition in _DEFINITIONS.items()}
# As the runner decides it from the stored definition: neither machine reads `$$`.
_READS_CONTEXT = {
    mode: mentions_context(json.dumps(definition)) for mode, definition in _DEFINITIONS.items()
}


async def walk_once(mode: str, records: dict[str, str]) -> Journal:
    """Walk the mode's machine once over `records`; return the journal it left."""
    machine_name = mode if mode in _MACHINES else "pass"
    machine = _MACHINES[machine_name]
    reads_context = _READS_CONTEXT[machine_name]
    registry = _INLINE_REGISTRY if mode == "map" else _REGISTRY
    clock = SystemClock()
    journal = Journal("bench", dict(records), last_event_id=1, clock=clock)
    execution_input: Any = _MAP_INPUT if mode == "map" else {"v": 0}

    async def drain_checkpoint(**_: Any) -> None:
        journal.drain()

    services = Services(
        store=None,  # type: ignore[arg-type]  # a walk of these machines never reads the store
        run_db=None,  # type: ignore[arg-type]
        committer=None,  # type: ignore[arg-type]
        clock=clock,
        registry=registry,
        worker_id="bench",
        run_state=run_state,
    )
    walk = Walk(
        machine=machine,
        journal=journal,
        services=services,
        execution_id="arn:aws:states:local:000000000000:execution:bench:bench",
        execution_name="bench",
        machine_id="arn:aws:states:local:000000000000:stateMachine:bench",
        machine_name="bench",
        execution_input=execution_input,
        start_time=datetime.now(UTC),
        checkpoint=drain_checkpoint if mode == "map" else _no_checkpoint,
        random_source=random.random,
        reads_context=reads_context,
    )
    output = await run_scope(
        walk, machine.scope, execution_input, prefix="", thread=Thread(1), variables=Variables()
    )
    expected = _EXPECTED.get(mode, {"v": PASS_CHOICE_LENGTH // 2})
    if output != expected:
        raise AssertionError(f"walk returned {output!r}")
    if mode == "map":
        journal.drain(rows=False)  # as the runner's SUCCEEDED end: its events, no rows
    return journal


_EXPECTED: dict[str, Any] = {"task": {"v": TASK_CHAIN_LENGTH}, "map": _MAP_OUTPUT}
_STEPS = {"task": TASK_CHAIN_LENGTH, "map": MAP_ITEMS}


async def _measure(mode: str, executions: int) -> tuple[float, float]:
    records: dict[str, str] = {}
    if mode == "pass-replay":
        rows, _events = (await walk_once("pass", {})).drain()
        records = dict(rows)
    await walk_once(mode, records)  # warm-up
    if mode == "map":
        # As the first Engine started in a process does (`engine/api.py`): what
        # is loaded by now is frozen, so no full collection walks it; without
        # this, full collections were a third of an iteration's figure here.
        gc.freeze()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(executions):
        await walk_once(mode, records)
    return time.perf_counter() - started, time.process_time() - cpu


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else "pass"
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {', '.join(MODES)}")
    executions = int(argv[1]) if len(argv) > 1 else 2000
    wall, cpu = anyio.run(_measure, mode, executions)
    steps = executions * _STEPS.get(mode, PASS_CHOICE_LENGTH)
    print(
        f"WALK mode={mode} executions={executions} cpu_us_per_transition={cpu / steps * 1e6:.1f} "
        f"us_per_transition={wall / steps * 1e6:.1f} transitions_per_s={steps / wall:.0f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
