"""A start's walk begun while the start commits (engine/earlywalk.py), on PostgreSQL's loop path.

The walk of a start handed to the Engine's own worker begins once the
start's machine is resolved, before its write answers; every write of that
walk waits for the start to be durable. Held at a real table lock, the
start has not answered while its walk is already waiting at the gate with
its first checkpoint, and no handler has run. A start the database refuses
leaves nothing: no handler call, no row of the execution, its worker slot
free again. A start whose machine was revised between its read and its
write runs the revision the start recorded, never the walk begun on the
older one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import anyio
import psycopg
import pytest

from activities import Registry
from engine import Engine
from engine.errors import InvalidExecutionInput, StoreUnavailable
from engine.store import ExecutionRecord
from tests.engine.test_map_gathered_checkpoint import MAP
from tests.engine.test_refused_data import _echo_registry, _HistoryLock, _refuse_zqfault

ECHO = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "echo", "End": True}}}
# The tables a start or a walk writes an execution's rows into.
TABLES = ("executions", "history_events", "history_blocks", "journal", "work_queue")


def _echo(calls: list[Any]) -> Registry:
    """`echo` (ECHO's Task) and `work` (MAP's) each record their input and return it."""
    registry = _echo_registry(calls)
    registry.register("work", lambda value: calls.append(value) or value)
    return registry


def _rows(url: str) -> dict[str, int]:
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]


async def _at_the_gate(engine: Engine) -> None:
    """Until the one early walk has a write waiting for its start's answer."""
    with anyio.fail_after(30):
        while not any(g.waits for g in engine.runtime.early_gates.values()):
            await anyio.sleep(0.01)


@pytest.mark.parametrize("machine", [ECHO, MAP], ids=["task", "map"])
def test_the_walk_runs_ahead_of_its_start_and_writes_only_once_it_is_durable(
    postgres_url: str, machine: dict[str, Any]
) -> None:
    calls: list[Any] = []
    given = {"items": [1, 2, 3]}

    async def scenario() -> None:
        async with Engine(postgres_url, registry=_echo(calls)) as engine:
            await engine.create_state_machine("m", machine)
            before = _rows(postgres_url)
            answer: list[ExecutionRecord] = []

            async def start() -> None:
                answer.append(await engine.start("m", given))

            lock = _HistoryLock(postgres_url)  # the start's ExecutionStarted waits on it
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(start)
                    await _at_the_gate(engine)
                    # Walked to its first checkpoint; nothing of it written, no effect.
                    assert not answer and calls == []
                    assert _rows(postgres_url) == before
                    lock.release()
            finally:
                lock.release()
            ended = await engine.wait(answer[0], timeout=60)
            worker = engine.worker
            assert worker is not None
            assert (worker.handed_off, worker.walked_early, worker.refused_early) == (1, 1, 0)
            assert not engine.runtime.early_gates
        assert ended.status == "SUCCEEDED"
        expected = given if machine is ECHO else [{"i": item} for item in given["items"]]
        assert sorted(map(str, calls)) == sorted(map(str, [given] if machine is ECHO else expected))
        assert json.loads(ended.output or "") == expected

    anyio.run(scenario)


def test_a_refused_start_leaves_no_walk_no_rows_and_no_handler_call(postgres_url: str) -> None:
    calls: list[Any] = []

    async def scenario() -> None:
        async with Engine(postgres_url, registry=_echo(calls)) as engine:
            await engine.create_state_machine("m", ECHO)
            _refuse_zqfault(postgres_url)  # refuses an ExecutionStarted holding "zqfault"
            before = _rows(postgres_url)
            failed: list[BaseException] = []

            async def start() -> None:
                try:
                    await engine.start("m", {"n": "zqfault"})
                except InvalidExecutionInput as error:
                    failed.append(error)

            lock = _HistoryLock(postgres_url)
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(start)
                    await _at_the_gate(engine)  # the walk ran ahead, waiting to commit
                    lock.release()
            finally:
                lock.release()
            assert failed, "the database refused the start"
            worker = engine.worker
            assert worker is not None and worker.walked_early == 1
            with anyio.fail_after(30):  # its run ends, cancelled at the gate
                while engine.runtime.early_gates or worker._busy():
                    await anyio.sleep(0.01)
            assert worker.refused_early == 1
            assert calls == []
            assert _rows(postgres_url) == before
            # The worker's slot is free and the Engine starts and runs as before.
            record = await engine.start("m", {"n": 1})
            assert (await engine.wait(record, timeout=60)).status == "SUCCEEDED"
        assert calls == [{"n": 1}]

    anyio.run(scenario)


def test_a_machine_revised_between_the_starts_read_and_write_runs_the_recorded_revision(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    one = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "one", "End": True}}}
    two = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "two", "End": True}}}

    async def scenario() -> None:
        async with Engine(postgres_url, poll_seconds=0.1) as engine:
            await engine.create_state_machine("m", one)
            first = await engine.wait(await engine.start("m"), timeout=60)
            assert first.output == '"one"'  # and the machine's row is kept for its next start
            async with Engine(postgres_url, worker=False) as other:
                await other.update_state_machine("m", two)
            worker = engine.worker
            assert worker is not None
            assert (worker.walked_early, worker.refused_early) == (1, 0)
            with caplog.at_level(logging.INFO, logger="stepwise.worker"):
                record = await engine.start("m")  # its walk begins on revision 1
                ended = await engine.wait(record, timeout=60)
            # That walk wrote nothing; its lease given back, a claim ran revision 2.
            assert (worker.walked_early, worker.refused_early) == (2, 1)
            history = await engine.history(record)
        assert record.version == ended.version == first.version + 1
        assert ended.status == "SUCCEEDED" and ended.output == '"two"'
        types = [event.type for event in history]
        assert types.count("ExecutionStarted") == 1 and types.count("ExecutionSucceeded") == 1
        # The refused walk's end says what happened (no other worker owns it).
        said = [r.getMessage() for r in caplog.records if record.execution_id in r.getMessage()]
        assert not [m for m in said if "owned elsewhere" in m], said
        assert [m for m in said if "did not create what its early walk ran" in m], said

    anyio.run(scenario)


def test_a_renewal_straddling_the_starts_commit_never_runs_the_handler_twice(
    postgres_url: str,
) -> None:
    """A renewal asked while the gate is pending and answered after it opened lost nothing.

    (Review of s19d: the lease keeper once renewed pending walks, read the
    row as missing and cancelled the healthy run; its claim ran the handler
    again.) The renewal is held until the handler has run.
    """
    calls: list[Any] = []
    registry = Registry()

    def echo(value: Any) -> Any:
        calls.append(value)
        time.sleep(0.5)
        return value

    registry.register("echo", echo)

    async def scenario() -> None:
        async with Engine(
            postgres_url, registry=registry, lease_seconds=3, poll_seconds=0.2
        ) as engine:
            await engine.create_state_machine("m", ECHO)
            store = engine.runtime.store
            original = store.renew
            asked = threading.Event()

            def renew(worker_id: str, ids: list[str], **kw: Any) -> Any:
                kept = original(worker_id, ids, **kw)
                pending = [g for g in list(engine.runtime.early_gates.values()) if not g.durable]
                if pending and not asked.is_set():
                    asked.set()
                    deadline = time.monotonic() + 10
                    while not calls and time.monotonic() < deadline:
                        time.sleep(0.01)
                return kept

            store.renew = renew  # type: ignore[method-assign]
            answer: list[ExecutionRecord] = []

            async def start() -> None:
                answer.append(await engine.start("m", {"n": 1}))

            lock = _HistoryLock(postgres_url)
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(start)
                    await _at_the_gate(engine)
                    with anyio.move_on_after(3):  # a renewal tick while the gate is pending
                        while not asked.is_set():
                            await anyio.sleep(0.01)
                    lock.release()
            finally:
                lock.release()
            ended = await engine.wait(answer[0], timeout=60)
            assert ended.status == "SUCCEEDED"
        assert calls == [{"n": 1}], f"the handler ran {len(calls)} times"

    anyio.run(scenario)


def test_a_start_committed_whose_answer_is_lost_runs_exactly_once(postgres_url: str) -> None:
    """The walk ahead of it is refused and gives its lease back: a claim runs the execution."""
    calls: list[Any] = []
    registry = Registry()
    registry.register("echo", lambda v: calls.append(v) or v)

    async def scenario() -> None:
        async with Engine(
            postgres_url, registry=registry, lease_seconds=3600, poll_seconds=0.1
        ) as engine:
            await engine.create_state_machine("m", ECHO)
            starts = engine._lifecycle._starts
            original = starts._recorded

            async def lost(requests: Any) -> Any:
                await original(requests)
                await anyio.sleep(0.2)  # the early walk waits at its gate meanwhile
                raise StoreUnavailable("connection lost under the write")

            starts._recorded = lost  # type: ignore[method-assign]
            with pytest.raises(StoreUnavailable):
                await engine.start("m", {"n": 1})
            starts._recorded = original  # type: ignore[method-assign]
            raw = postgres_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(raw, autocommit=True) as conn:
                ids = [r[0] for r in conn.execute("SELECT execution_id FROM executions")]
            assert len(ids) == 1
            # Leased for an hour had the refused walk kept its lease.
            done = await engine.wait(ids[0], timeout=30)
            assert done.status == "SUCCEEDED"
        assert calls == [{"n": 1}]

    anyio.run(scenario)
