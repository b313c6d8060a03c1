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


@pytest.mark.parametrize(("setting", "frozen"), [(None, True), ("1", True), ("0", False)])
def test_the_start_up_heap_is_frozen_unless_turned_off(
    tmp_path: Path, setting: str | None, frozen: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STEPWISE_GC_FREEZE"}
    if setting is not None:
        env["STEPWISE_GC_FREEZE"] = setting
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, f"sqlite:///{tmp_path / 'f.db'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (int(done.stdout.strip()) > 0) is frozen


# While an Engine runs, generation 0's threshold is raised (engine/heap.py);
# the last Engine to stop puts back what was there, unless changed meanwhile.
THRESHOLDS = """
import gc, sys
from engine import Engine
from engine.heap import YOUNG_THRESHOLD
gc.set_threshold(700, 10, 10)
url = sys.argv[1]
machine = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
seen = []
with Engine(url) as outer:
    seen.append(gc.get_threshold())
    outer.create_state_machine_sync("p", machine)
    outer.wait_sync(outer.start_sync("p", {}), timeout=30)
    with Engine(url, worker=False) as inner:
        seen.append(gc.get_threshold())
    seen.append(gc.get_threshold())  # the outer one still runs
seen.append(gc.get_threshold())
with Engine(url):
    gc.set_threshold(5000, 10, 10)  # the application's own choice
seen.append(gc.get_threshold())
print(YOUNG_THRESHOLD, *[t[0] for t in seen])
"""


def _thresholds(tmp_path: Path, young: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "STEPWISE_GC_YOUNG"}
    if young is not None:
        env["STEPWISE_GC_YOUNG"] = young
    return subprocess.run(
        [sys.executable, "-c", THRESHOLDS, f"sqlite:///{tmp_path / 'f.db'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_young_collections_are_rarer_while_an_engine_runs(tmp_path: Path) -> None:
    done = _thresholds(tmp_path, None)
    assert done.returncode == 0, done.stderr
    young, *seen = (int(v) for v in done.stdout.split())
    assert young > 700
    # Raised while either Engine runs, back to 700 after the last, and an
    # application's own setting made meanwhile is kept.
    assert seen == [young, young, young, 700, 5000]


@pytest.mark.parametrize(("setting", "running"), [("0", 700), ("1500", 1500), ("300", 700)])
def test_the_young_threshold_is_set_by_stepwise_gc_young(
    tmp_path: Path, setting: str, running: int
) -> None:
    done = _thresholds(tmp_path, setting)
    assert done.returncode == 0, done.stderr
    _, *seen = (int(v) for v in done.stdout.split())
    # 0 leaves Python's; a lower value than Python's never lowers it.
    assert seen[:4] == [running, running, running, 700]


def test_a_misset_stepwise_gc_young_is_a_clear_error(tmp_path: Path) -> None:
    done = _thresholds(tmp_path, "lots")
    assert done.returncode != 0
    assert "STEPWISE_GC_YOUNG must be a whole number >= 0 (0: off), not 'lots'" in done.stderr
