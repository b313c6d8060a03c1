"""Published versions and aliases on both stores, through the embedding API.

Publishing snapshots a revision as version 1, 2, …; an execution started
through a version keeps running it after the machine is updated; an alias
routes starts to one or two versions by weight (checked over 1,000 starts
within statistical bounds) and the pick is recorded with the start; a
version an alias routes to cannot be deleted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import Engine
from engine.errors import ConflictError, InvalidRouting, ResourceNotFound
from engine.runner import machine_arn
from engine.store import ExecutionStatus


def echo(label: str) -> dict[str, Any]:
    return {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": label, "End": True}}}


def test_versions_pin_executions_across_updates(db_url: str) -> None:
    with Engine(db_url) as engine:
        engine.create_state_machine_sync("orders", echo("v1"))
        first = engine.publish_version_sync("orders", description="first")
        assert (first.number, first.description) == (1, "first")
        # Publishing an unchanged revision returns the version that holds it.
        assert engine.publish_version_sync("orders").number == 1
        revision, second = engine.update_state_machine_sync(
            "orders", echo("v2"), publish=True, description="second"
        )
        assert second is not None and second.number == 2 and second.revision == revision.version
        engine.update_state_machine_sync("orders", echo("v3"))  # a revision, not published
        assert [v.number for v in engine.list_versions_sync("orders")] == [2, 1]

        by_version = engine.wait_sync(engine.start_sync("orders:1", name="pinned"), timeout=60)
        latest = engine.wait_sync(engine.start_sync("orders", name="latest"), timeout=60)
        by_arn = engine.wait_sync(
            engine.start_sync(f"{machine_arn('orders')}:2", name="by-arn"), timeout=60
        )
        assert json.loads(by_version.output or "") == "v1"
        assert json.loads(latest.output or "") == "v3"
        assert json.loads(by_arn.output or "") == "v2"
        assert (by_version.published_version, by_version.alias) == (1, None)
        assert (latest.published_version, latest.alias) == (None, None)
        assert by_version.execution_id.endswith(":execution:orders:pinned")
        started = engine.history_sync(by_version)[0].details
        assert started["stateMachineVersionArn"] == f"{machine_arn('orders')}:1"
        assert "stateMachineAliasArn" not in started
        listed = engine.list_executions_sync(machine="orders:1")
        assert [r.name for r in listed] == ["pinned"]

        engine.delete_version_sync("orders", 1)
        assert [v.number for v in engine.list_versions_sync("orders")] == [2]
        with pytest.raises(ResourceNotFound):
            engine.start_sync("orders:1")
        engine.update_state_machine_sync("orders", echo("v4"))
        assert engine.publish_version_sync("orders").number == 3  # numbers are never reused


def test_alias_routes_by_weight_and_guards_its_versions(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:
        engine.create_state_machine_sync("orders", echo("v1"))
        engine.publish_version_sync("orders")
        engine.update_state_machine_sync("orders", echo("v2"), publish=True)
        alias = engine.create_alias_sync("orders", "live", [(1, 100)], description="prod")
        assert alias.routes == ((1, 100),)
        # The same creation again is idempotent; another configuration conflicts.
        assert engine.create_alias_sync("orders", "live", [(1, 100)], description="prod") == alias
        with pytest.raises(ConflictError):
            engine.create_alias_sync("orders", "live", [(2, 100)])
        for bad in ([(1, 50)], [(1, 50), (1, 50)], [(1, 40), (2, 40)], [(1, 20), (2, 30), (1, 50)]):
            with pytest.raises(InvalidRouting):
                engine.create_alias_sync("orders", "bad", bad)
        with pytest.raises(ResourceNotFound):
            engine.create_alias_sync("orders", "bad", [(9, 100)])

        # A canary: 80 % on version 1, 20 % on version 2.
        engine.update_alias_sync("orders", "live", routes=[(1, 80), (2, 20)])
        assert engine.describe_alias_sync("orders", "live").routes == ((1, 80), (2, 20))
        records = [engine.start_sync("orders:live", name=f"e{n}") for n in range(1000)]
        on_two = sum(1 for r in records if r.published_version == 2)
        # 1000 draws at p = 0.2: mean 200, standard deviation 12.6; six of them either side.
        assert 124 <= on_two <= 276, on_two
        assert {r.alias for r in records} == {"live"}
        sample = records[0]
        started = engine.history_sync(sample)[0].details
        assert started["stateMachineAliasArn"] == f"{machine_arn('orders')}:live"
        assert started["stateMachineVersionArn"] == (
            f"{machine_arn('orders')}:{sample.published_version}"
        )
        assert sample.version == (1 if sample.published_version == 1 else 2)
        assert len(engine.list_executions_sync(machine="orders:live")) == 1000
        assert len(engine.list_executions_sync(machine="orders:2")) == on_two

        with pytest.raises(ConflictError):
            engine.delete_version_sync("orders", 2)
        engine.update_alias_sync("orders", "live", routes=[(1, 100)])
        engine.delete_version_sync("orders", 2)
        assert [a.name for a in engine.list_aliases_sync("orders")] == ["live"]
        engine.delete_alias_sync("orders", "live")
        assert engine.list_aliases_sync("orders") == []
        with pytest.raises(ResourceNotFound):
            engine.start_sync("orders:live")
        # Executions started through the alias are untouched by its deletion.
        assert engine.describe_sync(sample).status == ExecutionStatus.RUNNING
