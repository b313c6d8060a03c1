"""A start of a machine started before is one round trip (engine/store/asyncstart.py), real server.

The start connection keeps the machine rows its starts were planned with
(`LoopHeads`) and writes with the guarded statement, which writes nothing
when the machine moved since. What a user relies on: later starts skip the
lookup, a new revision put by another process is what the next start runs,
a machine another process deleted is not started, and the rows written are
the careful path's.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from engine import Engine
from engine.errors import StateMachineDeleting
from engine.store import Store
from engine.store.asyncstart import LoopHeads, start_on_loop
from engine.store.starts import StartRequest, StartResult
from tests.engine.liveness import machine
from tests.engine.test_loop_commit import _registry
from tests.engine.test_start_raw_rows import PASS, _answers, _request, _rows

pytestmark = pytest.mark.timeout(180)  # a hang guard only


def _heads(engine: Engine) -> LoopHeads:
    heads = engine.lifecycle.starts.heads
    assert heads is not None
    return heads


def test_starts_of_a_machine_started_before_skip_the_lookup(postgres_url: str) -> None:
    with Engine(postgres_url, registry=_registry(), worker=False) as engine:
        engine.create_state_machine_sync("chain", machine(3))
        records = [engine.start_sync("chain", {"v": 0}) for _ in range(6)]
        heads = _heads(engine)
        # One lookup, for the first start; every start written on the loop.
        assert (heads.lookups, heads.moved) == (1, 0)
        assert engine.lifecycle.starts.batches_on_loop == 6
        assert {r.version for r in records} == {1}
        assert len(engine.list_executions_sync(machine="chain")) == 6


def test_a_revision_put_by_another_process_is_what_the_next_start_runs(postgres_url: str) -> None:
    with Engine(postgres_url, registry=_registry(), worker=False) as engine:
        engine.create_state_machine_sync("chain", machine(3))
        first = engine.start_sync("chain", {"v": 0})
        assert first.version == 1
        other = Store(postgres_url)  # another process's store on the same database
        try:
            assert other.put_state_machine("chain", json.dumps(machine(4))).version == 2
        finally:
            other.close()
        second = engine.start_sync("chain", {"v": 0})
        # The kept row was revision 1: the guarded write refused it, the
        # machine was read again and the start runs the head.
        assert second.version == 2
        started = engine.store.history(second.execution_id)[0]
        assert started.details["stateMachineVersionArn"].endswith(":2")
        heads = _heads(engine)
        assert (heads.lookups, heads.moved) == (2, 1)
        assert engine.lifecycle.starts.batches_on_loop == 2
        # And the next one is one round trip again.
        assert engine.start_sync("chain", {"v": 0}).version == 2
        assert (heads.lookups, heads.moved) == (2, 1)


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
