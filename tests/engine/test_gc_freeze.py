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
if sys.argv[2] == "host-froze":
    gc.freeze()  # a host's own freeze (before forking workers, say): left alone
machine = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
stores = []
for n in range(3):
    with Engine(sys.argv[1] + f"{n}.db") as engine:
        if n == 1:
            # The first Engine froze the heap with its own objects in it; a
            # later one frees them before it opens its store.
            print("first store after the second started:", stores[0]() is None)
        engine.create_state_machine_sync("p", machine)
        engine.wait_sync(engine.start_sync("p", {}), timeout=30)
        stores.append(weakref.ref(engine.store))
    del engine
gc.collect()
print("third store after it closed:", stores[2]() is None)
"""


@pytest.mark.parametrize(("host", "first_freed"), [("none", True), ("host-froze", False)])
def test_a_closed_engine_leaves_its_store_to_be_freed(
    tmp_path: Path, host: str, first_freed: bool
) -> None:
    """Engines opened one after another in a process do not each keep their store for good.

    Every Store once stayed alive for the process's life (the outage
    registry's value held its weak key strongly), and the first Engine's
    store, frozen with the start-up heap, was never collected. Where the
    host had frozen objects of its own first, the engine does not unfreeze
    them to collect its first store.
    """
    output = _run(ENGINES_ONE_AFTER_ANOTHER, f"sqlite:///{tmp_path}/e", args=(host,))
    assert output.splitlines() == [
        f"first store after the second started: {first_freed}",
        "third store after it closed: True",
    ]
