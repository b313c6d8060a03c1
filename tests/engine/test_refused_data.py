"""Data the database refuses fails only the one it belongs to: a start, or an execution.

The refusals are real: a trigger on the history refuses any event whose
details hold ``zqfault`` — on PostgreSQL with SQLSTATE 22P05 (an
untranslatable character, a data exception), on SQLite by making a value
over its length limit ("string or blob too big", sqlite3's DataError). The
store's boundary names both `UnstorableData` (`boundary.fault_of`).

Starts made at the same moment share one transaction (`StartBatcher`; on
PostgreSQL on asyncio sent from the event loop, `asyncstart.py`): a start
whose input is refused fails alone, its caller gets InvalidExecutionInput
(a client's error: exit 2 from the CLI, a 400 from the HTTP API), and the
other starts of its batch are recorded and run to success. An execution
whose Task result is refused fails at once with States.Runtime: the same
walk would hand the database the same data again, so it is not retried.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from click.testing import CliRunner

from activities import Registry
from engine import Engine
from engine.cli import cli
from engine.errors import InvalidExecutionInput
from engine.store import ExecutionRecord
from tests.http.support import Server

_PG_REFUSAL = """
CREATE FUNCTION refuse_zqfault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.details LIKE '%zqfault%' THEN
    RAISE EXCEPTION 'injected refusal' USING ERRCODE = '22P05';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_zqfault BEFORE INSERT ON history_events
  FOR EACH ROW EXECUTE FUNCTION refuse_zqfault();
-- Since migration 19 PostgreSQL's commits write a commit's events as one history block.
CREATE FUNCTION refuse_zqfault_block() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.events LIKE '%zqfault%' THEN
    RAISE EXCEPTION 'injected refusal' USING ERRCODE = '22P05';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_zqfault_block BEFORE INSERT ON history_blocks
  FOR EACH ROW EXECUTE FUNCTION refuse_zqfault_block();
"""
# zeroblob over SQLITE_MAX_LENGTH: SQLITE_TOOBIG, raised as sqlite3.DataError.
_SQLITE_REFUSAL = """
CREATE TRIGGER refuse_zqfault BEFORE INSERT ON history_events
  WHEN NEW.details LIKE '%zqfault%' BEGIN SELECT zeroblob(2000000000); END;
CREATE TRIGGER refuse_zqfault_block BEFORE INSERT ON history_blocks
  WHEN NEW.events LIKE '%zqfault%' BEGIN SELECT zeroblob(2000000000); END;
"""

ECHO = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "echo", "End": True}}}


def _refuse_zqfault(url: str) -> None:
    """Install the refusing trigger in the (migrated) database at `url`."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None) as conn:
            conn.executescript(_SQLITE_REFUSAL)  # since migration 18 commits write blocks
        return
    raw = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(_PG_REFUSAL)


class _HistoryLock:
    """Another connection holding the history's write lock: a start's write waits for it."""

    def __init__(self, url: str) -> None:
        self._pg: psycopg.Connection[Any] | None = None
        self._sqlite: sqlite3.Connection | None = None
        if url.startswith("sqlite"):
            self._sqlite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self._sqlite.execute("BEGIN EXCLUSIVE")
        else:
            raw = url.replace("postgresql+psycopg://", "postgresql://")
            self._pg = psycopg.connect(raw)
            self._pg.execute("LOCK TABLE history_events IN EXCLUSIVE MODE")

    def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            self._pg.rollback()
            self._pg.close()
            self._pg = None


def _echo_registry(calls: list[Any]) -> Registry:
    registry = Registry()

    def echo(value: Any) -> Any:
        calls.append(value)
        return value

    registry.register("echo", echo)
    return registry


def test_a_start_whose_input_is_refused_fails_alone_in_its_batch(db_url: str) -> None:
    inputs: list[Any] = [{"n": n} for n in range(8)]
    inputs[5] = {"n": "zqfault"}  # the database refuses this one's ExecutionStarted

    async def scenario() -> None:
        # No worker in the starting engine: a worker's claim would wait on the
        # lock below (on SQLite the whole file's), and starts on its slots with it.
        async with Engine(db_url, worker=False) as engine:
            await engine.create_state_machine("echo", ECHO)
            _refuse_zqfault(db_url)
            batcher = engine.lifecycle.starts
            answers: list[Any] = [None] * len(inputs)

            async def start(index: int) -> None:
                try:
                    answers[index] = await engine.start("echo", inputs[index])
                except Exception as error:  # each caller's own answer is what is checked
                    answers[index] = error

            lock = _HistoryLock(db_url)
            try:
                async with anyio.create_task_group() as group:
                    # A first start leads and waits on the lock; the others,
                    # the refused one among them, queue behind it: one batch.
                    group.start_soon(start, 0)
                    while not batcher.leading:
                        await anyio.sleep(0.01)
                    for index in range(1, len(inputs)):
                        group.start_soon(start, index)
                    while batcher.queued < len(inputs) - 1:
                        await anyio.sleep(0.01)
                    lock.release()
            finally:
                lock.release()
            refused = answers[5]
            assert isinstance(refused, InvalidExecutionInput), refused
            assert "the database refused a value" in str(refused)
            started = [a for i, a in enumerate(answers) if i != 5]
            assert all(isinstance(a, ExecutionRecord) for a in started), answers
        async with Engine(db_url, registry=_echo_registry([])) as worker:
            ended = [await worker.wait(a, timeout=60) for a in started]
            listed, _ = await worker.lifecycle.list_executions(machine="echo")
        assert [(r.status, json.loads(r.output or "")) for r in ended] == [
            ("SUCCEEDED", value) for i, value in enumerate(inputs) if i != 5
        ]
        assert sorted(r.execution_id for r in listed) == sorted(a.execution_id for a in started)

    anyio.run(scenario)


def test_the_cli_answers_a_refused_start_with_a_client_error(sqlite_url: str) -> None:
    with Engine(sqlite_url, worker=False) as engine:
        engine.create_state_machine_sync("echo", ECHO)
    _refuse_zqfault(sqlite_url)
    result = CliRunner().invoke(
        cli, ["start", "echo", "--input", '{"v": "zqfault"}', "--db", sqlite_url]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "stepwise: error: InvalidExecutionInput: Invalid execution input: "
        "the database refused a value: string or blob too big"
    ), result.stderr
    fine = CliRunner().invoke(cli, ["start", "echo", "--input", '{"v": 1}', "--db", sqlite_url])
    assert fine.exit_code == 0, fine.stderr


def test_the_http_api_answers_a_refused_start_with_a_client_error(
    db_url: str, tmp_path: Path
) -> None:
    with Engine(db_url, worker=False) as engine:
        engine.create_state_machine_sync("echo", ECHO)
    _refuse_zqfault(db_url)
    server = Server(db_url, tmp_path / "server.log", "--no-worker").start()
    try:
        client = server.client()
        arn = client.list_state_machines()["stateMachines"][0]["stateMachineArn"]
        with pytest.raises(client.exceptions.InvalidExecutionInput) as refused:
            client.start_execution(stateMachineArn=arn, input='{"v": "zqfault"}')
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "the database refused a value" in refused.value.response["Error"]["Message"]
        assert client.start_execution(stateMachineArn=arn, input='{"v": 1}')["executionArn"]
    finally:
        server.stop()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_an_execution_whose_result_is_refused_fails_at_its_first_refusal(db_url: str) -> None:
    calls: list[Any] = []
    registry = Registry()

    def tainted(value: Any) -> Any:
        calls.append(value)
        return {"v": "zqfault"}  # the input is stored; this result is refused

    registry.register("tainted", tainted)
    machine = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "tainted", "End": True}},
    }
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("tainted", machine)
        _refuse_zqfault(db_url)
        started = engine.start_sync("tainted", {"v": 1})
        ended = engine.wait_sync(started, timeout=60)
        events = engine.history_sync(ended)
    assert (ended.status, ended.error) == ("FAILED", "States.Runtime")
    assert (ended.cause or "").startswith("UnstorableData: the database refused a value: ")
    assert calls == [{"v": 1}]  # one attempt: the refusal was not retried
    types = [e.type for e in events]
    assert "TaskSucceeded" not in types and types.count("TaskStarted") == 1
    assert types[-1] == "ExecutionFailed"
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
