"""The first Engine in a process freezes its start-up heap unless STEPWISE_GC_FREEZE=0.

Full collections then skip what lives as long as the process (modules, the
store, the engine's machinery); an application that wants every cycle
collected, frozen or not, turns it off. Each case runs in a fresh
interpreter, since the freeze happens once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAM = """
import gc, sys
# Python 3.12.1 starts with objects already frozen (375 here); 3.11 and 3.13 with none.
before = gc.get_freeze_count()
from engine import Engine
assert gc.get_freeze_count() == before
with Engine(sys.argv[1]) as engine:
    machine = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    engine.create_state_machine_sync("p", machine)
    engine.wait_sync(engine.start_sync("p", {}), timeout=30)
print(gc.get_freeze_count() - before)
"""


def _run(program: str, url: str, setting: str | None = None, args: tuple[str, ...] = ()) -> str:
    """`program`'s output, run in a fresh interpreter with STEPWISE_GC_FREEZE=`setting`."""
    env = {k: v for k, v in os.environ.items() if k != "STEPWISE_GC_FREEZE"}
    if setting is not None:
        env["STEPWISE_GC_FREEZE"] = setting
    done = subprocess.run(
        [sys.executable, "-c", program, url, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(("setting", "frozen"), [(None, True), ("1", True), ("0", False)])
def test_the_start_up_heap_is_frozen_unless_turned_off(
    tmp_path: Path, setting: str | None, frozen: bool
) -> None:
    output = _run(PROGRAM, f"sqlite:///{tmp_path / 'f.db'}", setting)
    assert (int(output.strip()) > 0) is frozen


ENGINES_ONE_AFTER_ANOTHER = """
import gc, sys, weakref
from engine import Engine
machine = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
stores = []
for n in range(3):
    with Engine(sys.argv[1] + f"{n}.db") as engine:
        engine.create_state_machine_sync("p", machine)
        engine.wait_sync(engine.start_sync("p", {}), timeout=30)
        stores.append(weakref.ref(engine.store))
    del engine
    gc.collect()
    if n:
        print(f"store {n} after its Engine closed:", stores[n]() is None)
"""


def test_a_closed_engine_leaves_its_store_to_be_freed(tmp_path: Path) -> None:
    """Engines opened one after another in a process do not each keep their store for good.

    Every Store once stayed alive for the process's life: the outage
    registry is keyed weakly by the store, but its value held the store
    strongly. (The first Engine's store is frozen with the start-up heap,
    `Engine._freeze_started_heap`, and stays: one per process, by design.)
    """
    output = _run(ENGINES_ONE_AFTER_ANOTHER, f"sqlite:///{tmp_path}/e")
    assert output.splitlines() == [
        "store 1 after its Engine closed: True",
        "store 2 after its Engine closed: True",
    ]
