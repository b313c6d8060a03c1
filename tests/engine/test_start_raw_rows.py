"""A start's fast writes (SQLite's raw driver, PostgreSQL's pipeline) are the careful path's rows.

The same starts — by name, by published version, by alias, one under a
taken name, one of an unknown machine, one refused by its builder — are
made on two fresh databases of one kind, one with the fast writes (the
default) and one without; the executions, history and work rows must be identical
column for column, and so must every answer. With payload encryption the
sealed values differ by their random nonces, so there the opened values are
compared.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.errors import InvalidExecutionInput
from engine.store import Event, Store
from engine.store.codec import PayloadCodec
from engine.store.schema import executions, history_events, work_queue
from engine.store.starts import Resolved, StartRequest, StartResult

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _store(url: str, *, raw: bool, codec: PayloadCodec | None = None) -> Store:
    store = Store(url, codec=codec)
    store.raw_start_writes = raw
    store.put_state_machine("Machine", json.dumps(PASS))
    store.put_state_machine("Machine", json.dumps({**PASS, "Comment": "two"}))
    return store


def _request(
    machine: str, qualifier: str | None, name: str, input: str, *, refuse: bool = False
) -> StartRequest:
    def prepare(resolved: Resolved) -> tuple[str, Event]:
        if refuse:
            raise InvalidExecutionInput("Invalid execution input: refused")
        details: dict[str, Any] = {
            "input": input,
            "version": resolved.machine.version,
            "published": resolved.version,
            "alias": resolved.alias,
        }
        return f"arn:exec:{machine}:{name}", Event(1, 0, "ExecutionStarted", T0, details)

    return StartRequest(
        machine=machine,
        qualifier=qualifier,
        name=name,
        input=input,
        start_date=T0,
        trace_id="ab" * 16,
        queue="q1",
        draw=lambda: 0.5,
        prepare=prepare,
    )


REQUESTS = [
    _request("Machine", None, "a", '{"n": 1}'),
    _request("Machine", "1", "b", '{"n": 2}'),
    _request("Machine", "live", "c", '{"n": 3}'),
    _request("Machine", None, "a", '{"n": 1}'),  # the same again: the running one
    _request("Machine", None, "a", '{"n": 9}'),  # the name taken: refused
    _request("Nowhere", None, "d", "{}"),
    _request("Machine", None, "e", "{}", refuse=True),
    _request("Machine", None, "f", '"\\u00e9t\\u00e9"'),
]


def _answers(results: list[StartResult]) -> list[Any]:
    return [
        (type(r.error).__name__, str(r.error)) if r.error else (r.record, r.created)
        for r in results
    ]


def _rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of the three tables a start writes, as the database holds them."""
    with store._engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.exec_driver_sql(
                    f"SELECT * FROM {table.name} ORDER BY execution_id"
                    + (", event_id" if table is history_events else "")
                )
            ]
            for table in (executions, history_events, work_queue)
        }


def _prepare(store: Store) -> None:
    version = store.publish_version("Machine", now=T0)
    store.create_alias("Machine", "live", [(version.number, 100)], now=T0)


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("batched", [True, False])
def test_fast_start_writes_are_the_careful_paths_rows(urls: tuple[str, str], batched: bool) -> None:
    raw, careful = _store(urls[0], raw=True), _store(urls[1], raw=False)
    try:
        answers = {}
        for name, store in (("raw", raw), ("careful", careful)):
            _prepare(store)
            if batched:
                results = store.start_executions(REQUESTS)
            else:
                results = [store.start_executions([r])[0] for r in REQUESTS]
            answers[name] = _answers(results)
        assert answers["raw"] == answers["careful"]
        created = [a for a in answers["raw"] if isinstance(a[1], bool) and a[1]]
        assert len(created) == 4
        assert _rows(raw) == _rows(careful)
        assert len(_rows(raw)["executions"]) == 4
    finally:
        raw.close()
        careful.close()


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
def test_fast_start_writes_seal_payloads_as_the_careful_path(urls: tuple[str, str]) -> None:
    codec = PayloadCodec([os.urandom(32)])
    raw = _store(urls[0], raw=True, codec=codec)
    careful = _store(urls[1], raw=False, codec=codec)
    try:
        for store in (raw, careful):
            _prepare(store)
            store.start_executions(REQUESTS)
        sealed = _rows(raw)["executions"][0]
        assert '"n": 1' not in json.dumps([str(v) for v in sealed])  # the input is sealed
        for store in (raw, careful):
            record = store.get_execution("arn:exec:Machine:a")
            assert record.input == '{"n": 1}'
            assert store.history("arn:exec:Machine:a")[0].details["input"] == '{"n": 1}'
        assert raw.get_execution("arn:exec:Machine:c") == careful.get_execution(
            "arn:exec:Machine:c"
        )
    finally:
        raw.close()
        careful.close()


def test_raw_start_writes_leave_the_careful_rows_readable(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'raw.db'}", raw=True)
    try:
        _prepare(store)
        store.start_executions(REQUESTS)
        with store._engine.connect() as conn:
            due = conn.execute(sa.select(work_queue.c.due_at)).scalars().all()
        assert due == [T0] * 4  # read back by SQLAlchemy as the aware datetime written
        record = store.get_execution("arn:exec:Machine:c")
        assert (record.published_version, record.alias, record.version) == (1, "live", 2)
    finally:
        store.close()


# SQLite runs a batch of starts by name as one transaction on the sqlite3
# connection itself (`StartStore._raw_batch`); a qualifier, a machine being
# deleted or a name already taken hands the batch to the other path.
BY_NAME = [request for request in REQUESTS if request.qualifier is None]


def _sqlalchemy_begins(store: Store) -> list[int]:
    """A counter of the transactions SQLAlchemy begins on `store` from now on."""
    count = [0]

    def begun(_conn: Any) -> None:
        count[0] += 1

    sa.event.listen(store._engine, "begin", begun)
    return count


def _leased(requests: list[StartRequest]) -> list[StartRequest]:
    """Every other start handed to a worker of this process (its work row leased)."""
    expires = T0 + timedelta(seconds=30)
    return [
        replace(request, lease_owner="worker-x", lease_expires_at=expires) if i % 2 else request
        for i, request in enumerate(requests)
    ]


@pytest.mark.parametrize("urls", ["sqlite"], indirect=True)
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("leased", [False, True])
def test_starts_by_name_are_one_raw_transaction_with_the_careful_paths_rows_and_answers(
    urls: tuple[str, str], batched: bool, leased: bool
) -> None:
    requests = _leased(BY_NAME) if leased else BY_NAME
    raw, careful = _store(urls[0], raw=True), _store(urls[1], raw=False)
    try:
        begins = _sqlalchemy_begins(raw)
        answers = {}
        for name, store in (("raw", raw), ("careful", careful)):
            if batched:
                results = store.start_executions(requests)
            else:
                results = [store.start_executions([r])[0] for r in requests]
            answers[name] = _answers(results)
        # No SQLAlchemy transaction, the driver's own; one at a time, the two
        # later starts named "a" find the name in the database: the other path.
        assert begins[0] == (0 if batched else 2)
        assert answers["raw"] == answers["careful"]
        assert [a[1] for a in answers["raw"] if isinstance(a[1], bool)] == [True, False, True]
        assert _rows(raw) == _rows(careful)
        # The same starts again: every name taken, so the other path answers, alike.
        again = {
            name: _answers(store.start_executions(requests))
            for name, store in (("raw", raw), ("careful", careful))
        }
        assert begins[0] > 0
        assert again["raw"] == again["careful"]
        assert [a[0] for a in again["raw"]].count("ExecutionAlreadyExists") == 1
        assert _rows(raw) == _rows(careful)
    finally:
        raw.close()
        careful.close()


@pytest.mark.parametrize("urls", ["sqlite"], indirect=True)
def test_raw_starts_seal_payloads_as_the_careful_path(urls: tuple[str, str]) -> None:
    codec = PayloadCodec([os.urandom(32)])
    raw = _store(urls[0], raw=True, codec=codec)
    careful = _store(urls[1], raw=False, codec=codec)
    try:
        begins = _sqlalchemy_begins(raw)
        answers = [_answers(store.start_executions(BY_NAME)) for store in (raw, careful)]
        assert begins[0] == 0
        assert answers[0] == answers[1]
        sealed = _rows(raw)["executions"][0]
        assert '"n": 1' not in json.dumps([str(v) for v in sealed])  # the input is sealed
        for store in (raw, careful):
            assert store.get_execution("arn:exec:Machine:a").input == '{"n": 1}'
            assert store.history("arn:exec:Machine:a")[0].details["input"] == '{"n": 1}'
            assert store.get_execution("arn:exec:Machine:f").input == '"\\u00e9t\\u00e9"'
    finally:
        raw.close()
        careful.close()


@pytest.mark.parametrize("urls", ["sqlite"], indirect=True)
def test_a_start_of_a_machine_being_deleted_gets_the_careful_paths_answer(
    urls: tuple[str, str],
) -> None:
    raw, careful = _store(urls[0], raw=True), _store(urls[1], raw=False)
    try:
        answers = []
        for store in (raw, careful):
            store.start_executions([_request("Machine", None, "running", "{}")])
            store.delete_state_machine("Machine", now=T0)
            # Refused (DELETING) alone; the start of an unknown machine beside it too.
            batch = [_request("Machine", None, "late", "{}"), _request("Nowhere", None, "x", "{}")]
            answers.append(_answers(store.start_executions(batch)))
        assert answers[0] == answers[1]
        assert [a[0] for a in answers[0]] == ["StateMachineDeleting", "StateMachineDoesNotExist"]
        assert _rows(raw) == _rows(careful)
    finally:
        raw.close()
        careful.close()


@pytest.mark.parametrize("urls", ["sqlite"], indirect=True)
def test_a_refused_batch_is_split_on_the_raw_path_and_answered_as_the_careful_path(
    urls: tuple[str, str],
) -> None:
    # Imported here: that module's HTTP helpers are not needed by the others.
    from tests.engine.test_refused_data import _refuse_zqfault

    requests = [
        _request("Machine", None, f"s{n}", '{"v": "zqfault"}' if n in (2, 6) else f'{{"n": {n}}}')
        for n in range(8)
    ]
    raw, careful = _store(urls[0], raw=True), _store(urls[1], raw=False)
    try:
        for url in urls:
            _refuse_zqfault(url)  # refuses an ExecutionStarted holding "zqfault"
        begins = _sqlalchemy_begins(raw)
        answers = [_answers(store.start_executions(requests)) for store in (raw, careful)]
        # Each half tried once, raw: never again on the careful path.
        assert begins[0] == 0
        assert answers[0] == answers[1]
        refused = [n for n, answer in enumerate(answers[0]) if answer[0] == "UnstorableData"]
        assert refused == [2, 6]
        assert all(answers[0][n][1] is True for n in range(8) if n not in refused)
        assert _rows(raw) == _rows(careful)
        assert len(_rows(raw)["executions"]) == 6
    finally:
        raw.close()
        careful.close()
