"""A SQL activity whose connection closes under its statements.

While PostgreSQL answers, the connection was closed on purpose (here, a
statement ending its own backend): the step fails with Stepwise.SqlError,
which Retry and Catch handle, instead of rerunning the statements without
end as an outage. While PostgreSQL is down, it is an outage: nothing of the
statements is kept, and the same step run again once the server is back
records its effect once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from activities import Registry
from activities.sql import parse_statements
from engine import Engine
from engine.callbacks import run_sql_effect
from engine.errors import StoreUnavailable
from engine.store import Store
from engine.store.boundary import is_transient
from tests.engine import pg
from tests.engine.committing import T0, claimed

SELF_KILL = {
    "StartAt": "Kill",
    "States": {
        "Kill": {
            "Type": "Task",
            "Resource": "stepwise:sql",
            "Parameters": {"Sql": "SELECT pg_terminate_backend(pg_backend_pid())"},
            "Retry": [
                {"ErrorEquals": ["Stepwise.SqlError"], "MaxAttempts": 2, "IntervalSeconds": 1}
            ],
            "Catch": [{"ErrorEquals": ["Stepwise.SqlError"], "Next": "Caught"}],
            "End": True,
        },
        "Caught": {"Type": "Pass", "End": True},
    },
}


def test_a_statement_ending_its_own_connection_fails_the_step_and_retries_are_bounded(
    postgres_url: str,
) -> None:
    registry = Registry()
    registry.enable("sql")
    with Engine(postgres_url, registry=registry) as engine:
        engine.create_state_machine_sync("self-kill", SELF_KILL)
        record = engine.wait_sync(engine.start_sync("self-kill", {}), timeout=60)
        events = engine.history_sync(record)
    assert record.status == "SUCCEEDED", record.cause
    output = json.loads(record.output or "")
    assert output["Error"] == "Stepwise.SqlError"
    assert "closed the connection" in output["Cause"]
    types = [e.type for e in events]
    assert types.count("TaskFailed") == 3  # the first run and MaxAttempts 2, then the Catch
    assert "TaskSucceeded" not in types


@pytest.fixture(scope="module")
def private_server() -> Iterator[pg.PostgresServer]:
    """A PostgreSQL server of this module's own, so halting it disturbs no other test."""
    with pg.private_server() as server:
        yield server


def test_a_server_halted_under_the_statements_is_an_outage_and_the_rerun_records_once(
    private_server: pg.PostgresServer,
) -> None:
    url = private_server.create_database("sql_connection_lost")
    store = Store(url)
    try:
        (execution_id,) = claimed(store, 1)
        with store._engine.begin() as conn:  # the user's own table, beside the engine's
            conn.execute(sa.text("CREATE TABLE ledger (item INTEGER NOT NULL)"))
        statements = parse_statements(
            {
                "Statements": [
                    {"Sql": "INSERT INTO ledger (item) VALUES (7)"},
                    {"Sql": "SELECT pg_sleep(:seconds)", "Parameters": {"seconds": 2}},
                ]
            }
        )

        def run() -> dict[str, Any]:
            return run_sql_effect(
                store,
                execution_id=execution_id,
                key="0:t0",
                worker_id="w",
                statements=statements,
                now=T0,
            )

        raised: list[BaseException] = []

        def first() -> None:
            try:
                run()
            except BaseException as exc:
                raised.append(exc)

        runner = threading.Thread(target=first)
        runner.start()
        time.sleep(0.8)  # the INSERT done, the sleep under way
        private_server.halt()
        try:
            runner.join(timeout=60)
        finally:
            private_server.resume()
        assert len(raised) == 1 and isinstance(raised[0], StoreUnavailable), raised
        assert is_transient(raised[0])
        rerun = run()
        again = run()
        with store._engine.connect() as conn:
            items = conn.execute(sa.text("SELECT item FROM ledger")).scalars().all()
    finally:
        store.close()
    expected = {
        "ok": {
            "Results": [{"Rows": [], "RowCount": 1}, {"Rows": [{"pg_sleep": ""}], "RowCount": 1}]
        }
    }
    assert rerun == again == expected
    assert items == [7]
