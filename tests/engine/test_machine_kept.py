"""A definition this Engine stored is the one its activations run, loaded once (engine/runner.py).

`create_state_machine` (and `update_state_machine`, `Engine.run`) parse and
validate a definition before storing it; the Engine's runtime then keeps the
machine built from the stored text (`MachineApi._put_machine`), so an
execution's first activation does not parse and validate it again on the way
to its first checkpoint (a cold W2). What a user relies on: every start runs
the revision it started with — one this Engine created or revised, one
another process put meanwhile (loaded from the store), and never a caller's
dict edited after it was stored; and an Engine that runs many definitions
keeps a bounded number of them (`runner.KEPT_MACHINES`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import Engine, runner
from engine.store import Store
from statemachine.build import load
from tests.engine.liveness import machine
from tests.engine.test_loop_commit import _registry


def _counted_loads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    loads: list[Any] = []

    def counted(definition: Any, **kwargs: Any) -> Any:
        loads.append(definition)
        return load(definition, **kwargs)

    monkeypatch.setattr(runner, "load", counted)
    return loads


def _run(engine: Engine, machine_name: str, v: int) -> Any:
    record = engine.wait_sync(engine.start_sync(machine_name, {"v": v}), timeout=60)
    assert record.status == "SUCCEEDED", (record.error, record.cause)
    return json.loads(record.output or "null")


def test_a_stored_definition_runs_without_a_second_load_and_others_revisions_still_run(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counted_loads(monkeypatch)
    with Engine(db_url, registry=_registry()) as engine:
        engine.create_state_machine_sync("chain", machine(2))
        assert _run(engine, "chain", 0) == {"v": 2}
        engine.update_state_machine_sync("chain", json.dumps(machine(3)))
        assert _run(engine, "chain", 0) == {"v": 3}
        assert loads == []  # both revisions run as this Engine built them
        other = Store(db_url)  # another process revises it
        try:
            other.put_state_machine("chain", json.dumps(machine(4)))
        finally:
            other.close()
        assert _run(engine, "chain", 0) == {"v": 4}
        assert len(loads) == 1  # loaded from the store, once
        assert _run(engine, "chain", 1) == {"v": 5}
        assert len(loads) == 1


def test_what_runs_is_the_stored_text_not_the_callers_dicts(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counted_loads(monkeypatch)
    definition: dict[str, Any] = {
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Result": {"x": 1}, "End": True}},
    }
    tupled = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": (1, 2), "End": True}}}
    with Engine(db_url, registry=_registry()) as engine:
        engine.create_state_machine_sync("pass", definition)
        definition["States"]["P"]["Result"]["x"] = 999  # the caller edits its dict afterwards
        definition["States"]["P"]["Result"]["y"] = 2
        assert _run(engine, "pass", 0) == {"x": 1}
        assert loads == []  # kept, built from the stored text
        engine.create_state_machine_sync("tupled", tupled)
        assert _run(engine, "tupled", 0) == [1, 2]
        assert len(loads) == 1  # a tuple does not survive JSON: not kept, loaded as stored


def test_an_engine_keeps_a_bounded_number_of_machines(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "KEPT_MACHINES", 2)
    loads = _counted_loads(monkeypatch)
    with Engine(db_url, registry=_registry()) as engine:
        for tasks in (1, 2, 3):
            engine.create_state_machine_sync(f"m{tasks}", machine(tasks))
        assert _run(engine, "m3", 0) == {"v": 3}
        assert _run(engine, "m2", 0) == {"v": 2}
        assert loads == []
        assert _run(engine, "m1", 0) == {"v": 1}  # the least recently used, let go
        assert len(loads) == 1
        assert _run(engine, "m1", 0) == {"v": 1}
        assert _run(engine, "m2", 0) == {"v": 2}
        assert len(loads) == 1
        assert _run(engine, "m3", 0) == {"v": 3}  # let go for m1
        assert len(loads) == 2


def test_a_machine_runs_its_own_text_when_another_differs_only_in_key_order(db_url: str) -> None:
    # Definitions that differ only in key order share a content hash; each
    # must still run as its own stored text says (an output keeps key order).
    def passing(result: str) -> str:
        state = f'{{"Type": "Pass", "Result": {result}, "End": true}}'
        return f'{{"StartAt": "P", "States": {{"P": {state}}}}}'

    with Engine(db_url, registry=_registry()) as engine:
        engine.create_state_machine_sync("a", passing('{"b": 1, "a": 2}'))
        engine.create_state_machine_sync("c", passing('{"a": 2, "b": 1}'))
        for name, keys in (("a", ["b", "a"]), ("c", ["a", "b"]), ("a", ["b", "a"])):
            record = engine.wait_sync(engine.start_sync(name, {}), timeout=60)
            assert list(json.loads(record.output or "null")) == keys


def test_engine_run_keeps_the_machine_it_stores(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counted_loads(monkeypatch)
    with Engine(db_url, registry=_registry()) as engine:
        record = engine.run_sync(machine(1), {"v": 0})
        assert json.loads(record.output or "null") == {"v": 1}
        assert loads == []
