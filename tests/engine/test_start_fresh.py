"""Fresh-named starts (none given) skip the name check on both backends, and answer alike.

A start whose name the engine drew (a UUID: `StartRequest.fresh_name`)
of a machine's latest revision is resolved by the driver and written
without first asking whether the name is taken (`StartStore._fresh_batch`).
Its rows and answers must be the careful path's; a name that is taken
after all is decided by the unique keys, as before; a machine being
deleted is refused as before.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.errors import InvalidExecutionInput
from engine.store import Event, Store
from engine.store.starts import Resolved, StartRequest
from tests.engine.test_start_raw_rows import PASS, T0, _answers, _rows, _sqlalchemy_begins


def _store(url: str, *, raw: bool) -> Store:
    store = Store(url)
    store.raw_start_writes = raw
    store.put_state_machine("Machine", json.dumps(PASS))
    store.put_state_machine("Machine", json.dumps({**PASS, "Comment": "two"}))
    return store


def _request(
    machine: str, name: str, input: str, *, fresh: bool = True, refuse: bool = False
) -> StartRequest:
    def prepare(resolved: Resolved) -> tuple[str, Event]:
        if refuse:
            raise InvalidExecutionInput("Invalid execution input: refused")
        details = {"input": input, "version": resolved.machine.version}
        return f"arn:exec:{machine}:{name}", Event(1, 0, "ExecutionStarted", T0, details)

    return StartRequest(
        machine=machine,
        qualifier=None,
        name=name,
        input=input,
        start_date=T0,
        trace_id="ab" * 16,
        queue="q1",
        draw=lambda: 0.5,
        prepare=prepare,
        fresh_name=fresh,
    )


FRESH = [
    _request("Machine", "f1", '{"n": 1}'),
    _request("Nowhere", "f2", "{}"),
    _request("Machine", "f3", "{}", refuse=True),
    _request("Machine", "f4", '"\\u00e9t\\u00e9"'),
]


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("leased", [False, True])
def test_fresh_name_starts_write_the_careful_paths_rows_and_answers(
    urls: tuple[str, str], batched: bool, leased: bool
) -> None:
    expires = T0 + timedelta(seconds=30)
    requests = [
        replace(r, lease_owner="worker-x", lease_expires_at=expires) if leased and i % 2 else r
        for i, r in enumerate(FRESH)
    ]
    fast, careful = _store(urls[0], raw=True), _store(urls[1], raw=False)
    try:
        begins = _sqlalchemy_begins(fast)
        answers = {}
        for name, store in (("fast", fast), ("careful", careful)):
            if batched:
                results = store.start_executions(requests)
            else:
                results = [store.start_executions([r])[0] for r in requests]
            answers[name] = _answers(results)
        assert begins[0] == 0  # the driver's statements only: no SQLAlchemy transaction
        assert answers["fast"] == answers["careful"]
        assert [a[0] for a in answers["fast"]][1:3] == [
            "StateMachineDoesNotExist",
            "InvalidExecutionInput",
        ]
        created = answers["fast"][0]
        assert created[1] is True and created[0].version == 2  # the latest revision
        assert _rows(fast) == _rows(careful)
        assert len(_rows(fast)["executions"]) == 2
    finally:
        fast.close()
        careful.close()


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
def test_a_fresh_name_taken_after_all_is_decided_by_the_unique_keys(
    urls: tuple[str, str],
) -> None:
    fast, careful = _store(urls[0], raw=True), _store(urls[1], raw=False)
    try:
        answers = []
        for store in (fast, careful):
            store.start_executions([_request("Machine", "a", '{"n": 1}', fresh=False)])
            # The same name again, as if drawn afresh: same input -> the running
            # one (not created); another input -> refused; both in one batch too.
            same = store.start_executions([_request("Machine", "a", '{"n": 1}')])
            other = store.start_executions([_request("Machine", "a", '{"n": 2}')])
            both = store.start_executions(
                [_request("Machine", "a", '{"n": 1}'), _request("Machine", "b", "{}")]
            )
            answers.append(_answers(same + other + both))
        assert answers[0] == answers[1]
        assert answers[0][0][1] is False
        assert answers[0][1][0] == "ExecutionAlreadyExists"
        assert answers[0][2][1] is False and answers[0][3][1] is True
        assert _rows(fast) == _rows(careful)
        assert len(_rows(fast)["executions"]) == 2
    finally:
        fast.close()
        careful.close()


@pytest.mark.parametrize("urls", ["sqlite", "postgres"], indirect=True)
def test_a_fresh_start_of_a_machine_being_deleted_is_refused(urls: tuple[str, str]) -> None:
    fast, careful = _store(urls[0], raw=True), _store(urls[1], raw=False)
    try:
        answers = []
        for store in (fast, careful):
            store.start_executions([_request("Machine", "running", "{}")])
            store.delete_state_machine("Machine", now=T0)
            batch = [_request("Machine", "late", "{}"), _request("Nowhere", "x", "{}")]
            answers.append(_answers(store.start_executions(batch)))
        assert answers[0] == answers[1]
        assert [a[0] for a in answers[0]] == ["StateMachineDeleting", "StateMachineDoesNotExist"]
        assert _rows(fast) == _rows(careful)
    finally:
        fast.close()
        careful.close()


def test_an_engine_start_without_a_name_runs_the_latest_revision(db_url: str) -> None:
    async def main() -> tuple[Any, ...]:
        async with Engine(db_url) as engine:
            await engine.create_state_machine("m", {**PASS, "Comment": "one"})
            first = await engine.wait(await engine.start("m", {"v": 1}), timeout=60)
            await engine.update_state_machine("m", {**PASS, "Comment": "two"})
            second = await engine.wait(await engine.start("m", {"v": 2}), timeout=60)
            named = await engine.wait(await engine.start("m", {"v": 3}, name="given"), timeout=60)
            return first, second, named

    first, second, named = anyio.run(main)
    assert (first.version, first.status, json.loads(first.output)) == (1, "SUCCEEDED", {"v": 1})
    assert (second.version, second.status, json.loads(second.output)) == (2, "SUCCEEDED", {"v": 2})
    assert first.name != second.name
    assert (named.name, named.version, named.status) == ("given", 2, "SUCCEEDED")
