"""A definition this Engine stored is the one its activations run, loaded once (engine/runner.py).

`create_state_machine` (and `update_state_machine`, `Engine.run`) parse and
validate a definition before storing it; the Engine's runtime keeps that
machine for the revision stored, so an execution's first activation does not
parse and validate it again on the way to its first checkpoint (a cold W2).
What a user relies on: every start runs the revision it started with — one
this Engine created or revised, and one another process put meanwhile,
which this Engine loads from the store as before.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import Engine, runner
from engine.store import Store
from tests.engine.liveness import machine
from tests.engine.test_loop_commit import _registry


def test_a_stored_definition_runs_without_a_second_load_and_others_revisions_still_run(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Any] = []
    loading = runner.load

    def counted(definition: Any, **kwargs: Any) -> Any:
        loads.append(definition)
        return loading(definition, **kwargs)

    monkeypatch.setattr(runner, "load", counted)
    with Engine(db_url, registry=_registry()) as engine:

        def run(input_v: int) -> Any:
            record = engine.wait_sync(engine.start_sync("chain", {"v": input_v}), timeout=60)
            assert record.status == "SUCCEEDED"
            return json.loads(record.output or "null")

        engine.create_state_machine_sync("chain", machine(2))
        assert run(0) == {"v": 2}
        engine.update_state_machine_sync("chain", machine(3))
        assert run(0) == {"v": 3}
        assert loads == []  # both revisions run as this Engine loaded them
        other = Store(db_url)  # another process revises it
        try:
            other.put_state_machine("chain", json.dumps(machine(4)))
        finally:
            other.close()
        assert run(0) == {"v": 4}
        assert len(loads) == 1  # loaded from the store, once
        assert run(1) == {"v": 5}
        assert len(loads) == 1
