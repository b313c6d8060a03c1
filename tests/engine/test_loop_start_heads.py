"""A start of a machine started before is one round trip (engine/store/asyncstart.py), real server.

The start connection keeps the machine rows its starts were planned with
(`LoopHeads`) and writes with the guarded statement, which writes nothing
when the machine moved since. What a user relies on: later starts skip the
lookup, a new revision put by another process is what the next start runs,
a machine another process deleted is not started, and the rows written are
the careful path's. A machine this Engine has just created or revised is
kept too (`LoopHeads.seed`): its first start needs no lookup either, and is
checked by the same guarded write.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import anyio
import psycopg
import pytest

from engine import Engine
from engine.errors import StateMachineDeleting, StateMachineDoesNotExist
from engine.store import MachineVersion, Store
from engine.store.asyncstart import LoopHeads, start_on_loop
from engine.store.startplan import pg_head_shape
from engine.store.starts import StartRequest, StartResult
from tests.engine.liveness import machine
from tests.engine.test_loop_commit import _plain, _registry
from tests.engine.test_start_raw_rows import PASS, _answers, _request, _rows

pytestmark = pytest.mark.timeout(180)  # a hang guard only


def _heads(engine: Engine) -> LoopHeads:
    heads = engine.lifecycle.starts.heads
    assert heads is not None
    return heads


def _put_elsewhere(url: str, definition: dict[str, Any]) -> MachineVersion:
    """Machine "chain" put by another process's store on the same database."""
    other = Store(url)
    try:
        return other.put_state_machine("chain", json.dumps(definition))
    finally:
        other.close()


def test_starts_of_a_machine_this_engine_created_skip_the_lookup(postgres_url: str) -> None:
    with Engine(postgres_url, registry=_registry(), worker=False) as engine:
        engine.create_state_machine_sync("chain", machine(3))
        records = [engine.start_sync("chain", {"v": 0}) for _ in range(6)]
        heads = _heads(engine)
        # No lookup (the machine's row was kept when it was created); every
        # start written on the loop.
        assert (heads.lookups, heads.moved) == (0, 0)
        assert engine.lifecycle.starts.batches_on_loop == 6
        assert {r.version for r in records} == {1}
        assert len(engine.list_executions_sync(machine="chain")) == 6


def test_a_revision_put_by_another_process_is_what_the_next_start_runs(postgres_url: str) -> None:
    with Engine(postgres_url, registry=_registry(), worker=False) as engine:
        engine.create_state_machine_sync("chain", machine(3))
        first = engine.start_sync("chain", {"v": 0})
        assert first.version == 1
        assert _put_elsewhere(postgres_url, machine(4)).version == 2
        second = engine.start_sync("chain", {"v": 0})
        # The kept row was revision 1: the guarded write refused it, the
        # machine was read again and the start runs the head.
        assert second.version == 2
        started = engine.store.history(second.execution_id)[0]
        assert started.details["stateMachineVersionArn"].endswith(":2")
        heads = _heads(engine)
        assert (heads.lookups, heads.moved) == (1, 1)
        assert engine.lifecycle.starts.batches_on_loop == 2
        # And the next one is one round trip again.
        assert engine.start_sync("chain", {"v": 0}).version == 2
        assert (heads.lookups, heads.moved) == (1, 1)


def test_a_machine_deleted_by_another_process_is_not_started(postgres_url: str) -> None:
    with Engine(postgres_url, registry=_registry(), worker=False) as engine:
        engine.create_state_machine_sync("chain", machine(3))
        running = engine.start_sync("chain", {"v": 0})
        other = Store(postgres_url)
        try:
            other.delete_state_machine("chain", now=running.start_date)
        finally:
            other.close()
        # Its first execution still RUNNING (no worker): the machine is DELETING.
        with pytest.raises(StateMachineDeleting, match="being deleted"):
            engine.start_sync("chain", {"v": 0})
        assert _heads(engine).moved == 1
        assert [r.execution_id for r in engine.list_executions_sync(machine="chain")] == [
            running.execution_id
        ]


def test_a_start_right_after_a_create_or_an_update_needs_no_lookup(postgres_url: str) -> None:
    with Engine(postgres_url, registry=_registry(), worker=True) as engine:
        engine.create_state_machine_sync("chain", machine(2))
        first = engine.start_sync("chain", {"v": 0})
        heads = _heads(engine)
        assert (heads.lookups, heads.moved) == (0, 0)
        assert engine.wait_sync(first.execution_id, timeout=60).output == '{"v":2}'
        revision, _ = engine.update_state_machine_sync("chain", machine(4))
        assert revision.version == 2
        second = engine.start_sync("chain", {"v": 0})
        # The update's revision is what the start runs, still without a lookup.
        assert second.version == 2
        assert (heads.lookups, heads.moved) == (0, 0)
        assert engine.wait_sync(second.execution_id, timeout=60).output == '{"v":4}'
        assert engine.lifecycle.starts.batches_on_loop == 2


def test_a_created_machine_revised_by_another_process_before_its_first_start(
    postgres_url: str,
) -> None:
    with Engine(postgres_url, registry=_registry(), worker=True) as engine:
        engine.create_state_machine_sync("chain", machine(2))
        assert _put_elsewhere(postgres_url, machine(3)).version == 2
        started = engine.start_sync("chain", {"v": 0})
        # The seeded revision 1 was refused by the guarded write: the start
        # read the machine and runs revision 2's definition.
        assert started.version == 2
        assert (_heads(engine).lookups, _heads(engine).moved) == (1, 1)
        assert engine.wait_sync(started.execution_id, timeout=60).output == '{"v":3}'


def test_a_created_machine_deleted_by_another_process_is_not_started(postgres_url: str) -> None:
    with Engine(postgres_url, registry=_registry(), worker=False) as engine:
        created = engine.create_state_machine_sync("chain", machine(2))
        other = Store(postgres_url)
        try:
            other.delete_state_machine("chain", now=created.created_at)
        finally:
            other.close()
        with pytest.raises(StateMachineDoesNotExist):
            engine.start_sync("chain", {"v": 0})
        assert _heads(engine).moved == 1
        assert engine.list_executions_sync(machine="chain") == []


def test_a_machine_deleted_here_is_forgotten(postgres_url: str) -> None:
    with Engine(postgres_url, registry=_registry(), worker=False) as engine:
        engine.create_state_machine_sync("chain", machine(2))
        engine.delete_state_machine_sync("chain")
        with pytest.raises(StateMachineDoesNotExist):
            engine.start_sync("chain", {"v": 0})
        # Read, not tried on the deleted row: no guarded write was refused.
        assert (_heads(engine).lookups, _heads(engine).moved) == (1, 0)


def test_a_seeded_row_is_the_lookups_row_but_for_the_id(postgres_url: str) -> None:
    with Engine(postgres_url, registry=_registry(), worker=False) as engine:
        engine.create_state_machine_sync("chain", machine(2))
        engine.update_state_machine_sync("chain", machine(3))
        seeded = _heads(engine).rows["chain"]
        sql, fixed = engine.store.head_query()
        with psycopg.connect(_plain(postgres_url)) as connection:
            read = connection.execute(sql, {**fixed, "name": "chain"}).fetchone()
        assert read is not None
        _, _, processors, _ = pg_head_shape(engine.store._engine.dialect)

        def processed(row: Sequence[Any]) -> list[Any]:
            return [v if p is None else p(v) for v, p in zip(row, processors, strict=True)]

        assert seeded[0] is None and isinstance(read[0], int)
        assert processed(seeded)[1:] == processed(read)[1:]


def _on_loop(store: Store, batches: list[list[StartRequest]]) -> tuple[list[StartResult], int]:
    """`batches` started one after another on a start connection of the store's; the lookups."""

    async def run() -> tuple[list[StartResult], int]:
        on_loop = store.loop_commit()
        assert on_loop is not None
        heads = LoopHeads()
        results: list[StartResult] = []
        try:
            for batch in batches:
                done = await start_on_loop(on_loop, store, batch, heads)
                assert isinstance(done, list)  # all on the loop
                results += done
        finally:
            await on_loop.aclose()
        return results, heads.lookups

    return asyncio.run(run())


@pytest.mark.parametrize("urls", ["postgres"], indirect=True)
def test_a_start_with_a_kept_head_writes_the_careful_paths_rows(urls: tuple[str, str]) -> None:
    batches = [
        [_request("Machine", None, "a", '{"n": 1}')],
        # Machine's row kept from the first batch; Nowhere's read.
        [
            _request("Machine", None, "f", '"\\u00e9t\\u00e9"'),
            _request("Nowhere", None, "d", "{}"),
            _request("Machine", None, "e", "{}", refuse=True),
            _request("Machine", None, "g", "[1, 2]"),
        ],
    ]
    fast, careful = Store(urls[0]), Store(urls[1])
    careful.raw_start_writes = False
    try:
        for store in (fast, careful):
            store.put_state_machine("Machine", json.dumps(PASS))
            store.put_state_machine("Machine", json.dumps({**PASS, "Comment": "two"}))
        results, lookups = _on_loop(fast, batches)
        assert lookups == 2  # Machine once, Nowhere once
        expected = [r for batch in batches for r in careful.start_executions(batch)]
        assert _answers(results) == _answers(expected)
        assert sum(1 for r in results if r.created) == 3
        assert _rows(fast) == _rows(careful)
    finally:
        fast.close()
        careful.close()


def test_engine_run_starts_its_machine_with_no_lookup(postgres_url: str) -> None:
    """`Engine.run` puts its definition and starts it: one round trip, as after a create."""

    async def scenario() -> None:
        async with Engine(postgres_url, registry=_registry(), worker=False) as engine:
            record = await engine.run(machine(2), {"v": 0})
            assert record.status == "SUCCEEDED"
            assert json.loads(record.output or "null") == {"v": 2}
            heads = _heads(engine)
            assert (heads.lookups, heads.moved) == (0, 0)
            assert engine.lifecycle.starts.batches_on_loop == 1

    anyio.run(scenario)
