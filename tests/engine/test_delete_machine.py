"""Deleting a state machine on both stores: the Engine, the CLI and boto3.

DeleteStateMachine marks the machine DELETING and takes its published
versions and aliases with it; an execution already running finishes, new
starts are refused with StateMachineDeleting, and once none runs the
machine is gone (StateMachineDoesNotExist) and its name can be used again.
Deleting an unknown machine succeeds, as on AWS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.errors import ResourceNotFound, StateMachineDeleting, StateMachineDoesNotExist
from engine.store import ExecutionStatus
from tests.engine.test_cli import invoke, invoke_json


def waiting() -> dict[str, Any]:
    """A machine whose executions stay RUNNING until stopped."""
    return {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}


def echo(label: str) -> dict[str, Any]:
    return {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": label, "End": True}}}


def test_delete_lets_running_executions_finish_and_refuses_new_ones(db_url: str) -> None:
    with Engine(db_url) as engine:
        engine.create_state_machine_sync("orders", waiting())
        engine.publish_version_sync("orders")
        engine.create_alias_sync("orders", "live", [(1, 100)])
        running = engine.start_sync("orders", name="in-flight")

        engine.store.add_tags("stateMachine:orders", {"team": "data"}, limit=50)
        engine.delete_state_machine_sync("orders")
        assert engine.store.get_tags("stateMachine:orders") == {}  # its tags go with it
        engine.delete_state_machine_sync("orders")  # again: nothing more to do
        engine.delete_state_machine_sync("never-created")  # unknown: no error, as on AWS
        assert engine.store.state_machine_status("orders") == "DELETING"
        assert "orders" not in [m.name for m in engine.store.list_state_machines()]
        with pytest.raises(StateMachineDeleting):
            engine.start_sync("orders")
        with pytest.raises(StateMachineDeleting):
            engine.start_sync("orders:live")
        assert engine.list_versions_sync("orders") == []
        with pytest.raises(ResourceNotFound):
            engine.describe_alias_sync("orders", "live")
        assert engine.describe_sync(running).status == ExecutionStatus.RUNNING

        engine.stop_sync(running)
        assert engine.wait_sync(running, timeout=60).status == ExecutionStatus.ABORTED
        with pytest.raises(StateMachineDoesNotExist):
            engine.store.state_machine_status("orders")
        with pytest.raises(StateMachineDoesNotExist):
            engine.start_sync("orders")
        # The finished execution's record and history stay readable.
        assert engine.history_sync(running)[0].type == "ExecutionStarted"

        # The name can be used again: a fresh machine, started as usual.
        engine.create_state_machine_sync("orders", echo("again"))
        assert engine.store.state_machine_status("orders") == "ACTIVE"
        assert "orders" in [m.name for m in engine.store.list_state_machines()]
        done = engine.wait_sync(engine.start_sync("orders", name="second-life"), timeout=60)
        assert json.loads(done.output or "") == "again"


def test_machines_delete_from_the_command_line(db_url: str, tmp_path: Path) -> None:
    db = ["--db", db_url]
    path = tmp_path / "wait.json"
    path.write_text(json.dumps(waiting()))
    invoke_json(["machines", "create", "orders", str(path), *db])
    invoke_json(["start", "orders", "--name", "in-flight", *db])

    assert invoke_json(["machines", "delete", "orders", *db]) == {}
    text = invoke(["machines", "delete", "orders", *db])
    assert text.exit_code == 0 and text.stdout.strip() == "deleted orders"
    assert invoke_json(["machines", "delete", "nothing-here", *db]) == {}
    assert invoke_json(["machines", "describe", "orders", *db])["status"] == "DELETING"
    refused = invoke(["start", "orders", *db])
    assert refused.exit_code == 2
    assert refused.stderr.startswith("stepwise: error: StateMachineDeleting:")

    invoke_json(["stop", "in-flight", *db])
    gone = invoke(["machines", "describe", "orders", *db])
    assert gone.exit_code == 2 and "StateMachineDoesNotExist" in gone.stderr
