"""A SQL activity whose statements close their connection, or change their session.

A connection closed under the statements is an outage the first time (the
step reruns under the same key); closed again while the database answers
and the lease holds, the statements themselves close it (ending their own
backend, outliving an idle-in-transaction timeout), and the step fails with
Stepwise.SqlError, which Retry and Catch bound, instead of rerunning without
end. While PostgreSQL is down it stays an outage, and the step run once the
server is back records its effect once. What the statements set on their
session never reaches the engine's record or its later transactions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from activities import Registry
from activities.sql import parse_statements
from engine import Engine
from engine.callbacks import run_sql_effect
from engine.errors import StoreUnavailable
from engine.store import Store
from engine.store.boundary import is_transient
from engine.store.records import ExecutionRecord
from tests.engine import pg
from tests.engine.committing import T0, claimed
from tests.engine.processes import wait_until


def _task(sql: str, then: str | None = None, **fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"Type": "Task", "Resource": "stepwise:sql", "Parameters": {"Sql": sql}}
    task.update({"Next": then} if then else {"End": True})
    task.update(fields)
    return task


def _run(url: str, definition: dict[str, Any]) -> tuple[ExecutionRecord, list[str]]:
    registry = Registry()
    registry.enable("sql")
    with Engine(url, registry=registry) as engine:
        engine.create_state_machine_sync("sql", definition)
        record = engine.wait_sync(engine.start_sync("sql", {}), timeout=120)  # a hang guard
        return record, [e.type for e in engine.history_sync(record)]


def _claimed_with_ledger(store: Store) -> str:
    """One execution claimed by worker "w" at T0, and the user's own table beside the engine's."""
    (execution_id,) = claimed(store, 1)
    with store._engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE ledger (item INTEGER NOT NULL)"))
    return execution_id


def _effect(store: Store, execution_id: str, statements: Any, key: str = "0:t0") -> dict[str, Any]:
    """`run_sql_effect` for step `key` as worker "w" at T0."""
    return run_sql_effect(
        store, execution_id=execution_id, key=key, worker_id="w", statements=statements, now=T0
    )


CAUGHT = [{"ErrorEquals": ["Stepwise.SqlError"], "Next": "Caught"}]


def test_a_statement_ending_its_own_connection_runs_twice_an_attempt_then_fails(
    postgres_url: str,
) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:  # a sequence counts every run: nextval survives a rollback
        conn.execute(sa.text("CREATE SEQUENCE runs"))
    kill = _task(
        "SELECT nextval('runs'), pg_terminate_backend(pg_backend_pid())",
        Retry=[{"ErrorEquals": ["Stepwise.SqlError"], "MaxAttempts": 2, "IntervalSeconds": 1}],
        Catch=CAUGHT,
    )
    definition = {
        "StartAt": "Kill",
        "States": {"Kill": kill, "Caught": {"Type": "Pass", "End": True}},
    }
    record, types = _run(postgres_url, definition)
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT last_value FROM runs")).scalar_one()
    engine.dispose()
    assert record.status == "SUCCEEDED", record.cause
    output = json.loads(record.output or "")
    assert output["Error"] == "Stepwise.SqlError"
    assert "closed the connection" in output["Cause"]
    assert types.count("TaskFailed") == 3  # the first attempt and MaxAttempts 2, then the Catch
    assert "TaskSucceeded" not in types
    assert runs == 6  # each attempt: once as an outage, once more to fail


def test_statements_outliving_an_idle_in_transaction_timeout_fail_the_step(
    postgres_url: str,
) -> None:
    # The session is killed while the rows become JSON, idle in its
    # transaction: the loss comes at the next statement the engine sends.
    statements = {
        "Statements": [
            {"Sql": "SET idle_in_transaction_session_timeout = '1ms'"},
            {"Sql": "SELECT generate_series(1, 200000) AS n"},
        ]
    }
    slow = {
        "Type": "Task",
        "Resource": "stepwise:sql",
        "Parameters": statements,
        "Catch": CAUGHT,
        "End": True,
    }
    definition = {
        "StartAt": "Slow",
        "States": {"Slow": slow, "Caught": {"Type": "Pass", "End": True}},
    }
    record, types = _run(postgres_url, definition)
    assert record.status == "SUCCEEDED", record.cause
    output = json.loads(record.output or "")
    assert output["Error"] == "Stepwise.SqlError"
    assert "closed the connection" in output["Cause"]
    assert types.count("TaskFailed") == 1 and "TaskSucceeded" not in types


def test_what_statements_set_on_their_session_stays_with_them(postgres_url: str) -> None:
    states = {
        "Path": _task("SET search_path TO nowhere", "ReadOnly", ResultPath=None),
        "ReadOnly": _task("SET default_transaction_read_only = on", "Lock", ResultPath=None),
        "Lock": _task("SELECT pg_advisory_lock(4242)", "Settings", ResultPath=None),
        "Settings": _task(
            "SELECT current_setting('search_path') AS path,"
            " current_setting('default_transaction_read_only') AS ro",
            "Write",
            ResultSelector={"settings.$": "$.Results[0].Rows[0]"},
        ),
        "Write": _task("CREATE TABLE written (n INTEGER)", ResultPath=None),
    }
    record, _ = _run(postgres_url, {"StartAt": "Path", "States": states})
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        free = conn.execute(sa.text("SELECT pg_try_advisory_lock(4242)")).scalar_one()
        written = conn.execute(sa.text("SELECT to_regclass('public.written')")).scalar_one()
    engine.dispose()
    assert record.status == "SUCCEEDED", record.cause
    settings = json.loads(record.output or "")["settings"]
    assert settings == {"path": '"$user", public', "ro": "off"}
    assert free is True  # the session lock went with the statements' connection
    assert written == "written"


@pytest.mark.parametrize("at", ["RELEASE SAVEPOINT", "INSERT INTO sql_effects"])
def test_a_connection_lost_after_the_statements_and_before_commit_is_a_loss_too(
    postgres_url: str, at: str
) -> None:
    """Lost at the savepoint's release or the record's insert: nothing kept, same rule."""
    admin = sa.create_engine(postgres_url)
    store = Store(postgres_url)
    killed: list[int] = []

    def kill(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(at) and len(killed) < 2:
            killed.append(cursor.connection.info.backend_pid)
            with admin.connect() as other:  # waits (up to 10 s) until the backend is gone
                other.execute(
                    sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": killed[-1]}
                )

    try:
        execution_id = _claimed_with_ledger(store)
        sa.event.listen(store._engine, "before_cursor_execute", kill)
        statements = parse_statements({"Sql": "INSERT INTO ledger (item) VALUES (1)"})

        def run() -> dict[str, Any]:
            return _effect(store, execution_id, statements)

        with pytest.raises(StoreUnavailable) as first:
            run()
        second = run()
        kept = admin.connect().execute(sa.text("SELECT count(*) FROM ledger")).scalar_one()
        third = run()  # the listener kills no more
        fourth = run()  # recorded: read back, not run again
        items = admin.connect().execute(sa.text("SELECT item FROM ledger")).scalars().all()
    finally:
        store.close()
        admin.dispose()
    assert is_transient(first.value) and "SQL activity" in str(first.value)
    assert second["error"] == "Stepwise.SqlError" and "closed the connection" in second["cause"]
    assert len(killed) == 2 and kept == 0  # nothing of either lost run was kept
    assert third == fourth == {"ok": {"Results": [{"Rows": [], "RowCount": 1}]}}
    assert items == [1]


def test_a_temporary_table_cannot_take_the_engines_record(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        execution_id = _claimed_with_ledger(store)
        statements = parse_statements(
            {
                "Statements": [
                    {"Sql": "INSERT INTO ledger (item) VALUES (1)"},
                    {
                        "Sql": "CREATE TEMP TABLE sql_effects AS"
                        " SELECT * FROM sql_effects WITH NO DATA"
                    },
                ]
            }
        )
        runs = [_effect(store, execution_id, statements) for _ in range(2)]
        with store._engine.connect() as conn:
            items = conn.execute(sa.text("SELECT item FROM ledger")).scalars().all()
            records = conn.execute(sa.text("SELECT count(*) FROM public.sql_effects")).scalar_one()
    finally:
        store.close()
    assert runs[0] == runs[1] and "ok" in runs[0]
    assert items == [1] and records == 1  # run once, recorded in the engine's own table


def test_a_session_user_switched_by_the_statements_does_not_write_the_record(
    postgres_url: str,
) -> None:
    """The tests' engine user is a superuser: its statements may switch the session's user."""
    store = Store(postgres_url)
    role = f"nobody_{abs(hash(postgres_url)) % 10**8}"
    try:
        (execution_id,) = claimed(store, 1)
        with store._engine.begin() as conn:
            conn.execute(sa.text(f"CREATE ROLE {role}"))
        switched = parse_statements({"Sql": f"SET SESSION AUTHORIZATION {role}"})
        outcome = _effect(store, execution_id, switched)
        again = _effect(store, execution_id, switched)
        with store._engine.connect() as conn:
            records = conn.execute(sa.text("SELECT count(*) FROM sql_effects")).scalar_one()
            conn.execute(sa.text(f"DROP ROLE {role}"))
            conn.commit()
    finally:
        store.close()
    assert outcome == again == {"ok": {"Results": [{"Rows": [], "RowCount": 0}]}}
    assert records == 1


def test_a_broken_deferred_constraint_fails_the_step_not_the_engines_commit(
    postgres_url: str,
) -> None:
    store = Store(postgres_url)
    try:
        (execution_id,) = claimed(store, 1)
        with store._engine.begin() as conn:
            conn.execute(
                sa.text("CREATE TABLE once (id INTEGER UNIQUE DEFERRABLE INITIALLY DEFERRED)")
            )
            conn.execute(sa.text("INSERT INTO once VALUES (1)"))
        duplicate = parse_statements({"Sql": "INSERT INTO once VALUES (1)"})
        refused = _effect(store, execution_id, duplicate)
        fine = _effect(
            store, execution_id, parse_statements({"Sql": "INSERT INTO once VALUES (2)"}), "1:t1"
        )
        with store._engine.connect() as conn:
            ids = conn.execute(sa.text("SELECT id FROM once ORDER BY id")).scalars().all()
    finally:
        store.close()
    assert refused["error"] == "Stepwise.SqlError" and "duplicate key" in refused["cause"]
    assert "ok" in fine and ids == [1, 2]


@pytest.mark.parametrize(
    "refused",
    [
        "PRAGMA query_only = 1",
        "ATTACH DATABASE ':memory:' AS other",
        "CREATE TEMP TABLE sql_effects (execution_id, key, result, recorded_at)",
        "CREATE TEMP VIEW v AS SELECT 1",
    ],
)
def test_sqlite_refuses_statements_that_would_change_the_engines_connection(
    sqlite_url: str, refused: str
) -> None:
    store = Store(sqlite_url)
    try:
        (execution_id,) = claimed(store, 1)

        def run(sql: str, key: str) -> dict[str, Any]:
            return _effect(store, execution_id, parse_statements({"Sql": sql}), key)

        outcome = run(refused, "0:t0")
        written = run("CREATE TABLE written (n INTEGER)", "1:t1")
        inserted = run("INSERT INTO written (n) VALUES (1)", "2:t2")
        with store._engine.connect() as conn:
            records = (
                conn.execute(sa.text("SELECT key FROM main.sql_effects ORDER BY key"))
                .scalars()
                .all()
            )
    finally:
        store.close()
    assert outcome["error"] == "Stepwise.SqlError" and "not authorized" in outcome["cause"]
    assert "ok" in written and "ok" in inserted
    assert records == ["1:t1", "2:t2"]


def test_a_pragma_is_refused_on_sqlite_and_the_engine_keeps_writing(sqlite_url: str) -> None:
    states = {
        "Pragma": _task("PRAGMA query_only = 1", "Write", Catch=CAUGHT, ResultPath=None),
        "Caught": {"Type": "Fail", "Error": "Refused"},
        "Write": _task("CREATE TABLE written (n INTEGER)", "Attach", ResultPath=None),
        "Attach": _task(
            "ATTACH DATABASE ':memory:' AS other",
            "Never",
            Catch=[
                {"ErrorEquals": ["Stepwise.SqlError"], "ResultPath": "$.attach", "Next": "Insert"}
            ],
        ),
        "Never": {"Type": "Fail", "Error": "NotRefused"},
        "Insert": _task("INSERT INTO written (n) VALUES (1)", ResultPath=None),
    }
    pragma_first = {"StartAt": "Pragma", "States": states}
    record, _ = _run(sqlite_url, pragma_first)
    assert (record.status, record.error) == ("FAILED", "Refused")  # the PRAGMA was refused
    states["Pragma"] = _task("SELECT 1", "Write", ResultPath=None)
    record, _ = _run(sqlite_url, {"StartAt": "Pragma", "States": states})
    assert record.status == "SUCCEEDED", record.cause
    assert "not authorized" in json.loads(record.output or "")["attach"]["Cause"]
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT n FROM written")).scalars().all() == [1]
    engine.dispose()


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
        execution_id = _claimed_with_ledger(store)
        with psycopg.connect(private_server.admin_url, autocommit=True) as admin:
            admin.execute("CHECKPOINT")  # the claim's lazy commit on disk before any halt
        statements = parse_statements(
            {
                "Statements": [
                    {"Sql": "INSERT INTO ledger (item) VALUES (7)"},
                    {"Sql": "SELECT pg_sleep(:seconds)", "Parameters": {"seconds": 2}},
                ]
            }
        )

        def run() -> dict[str, Any]:
            return _effect(store, execution_id, statements)

        def halted_under_the_statements() -> BaseException | None:
            raised: list[BaseException] = []
            halted = threading.Event()

            def call() -> None:
                while True:
                    try:
                        run()
                        return
                    except BaseException as exc:
                        if halted.is_set():
                            raised.append(exc)
                            return
                        # A pooled connection from before the last halt: run
                        # again on a new one, as the worker's next activation would.

            runner = threading.Thread(target=call)
            runner.start()
            wait_until(lambda: _sleeping(private_server))  # the INSERT done, the sleep under way
            halted.set()
            private_server.halt()
            try:
                runner.join(timeout=60)
            finally:
                private_server.resume()
            return raised[0] if raised else None

        # The first loss is an outage by itself; the second is probed, and the
        # probe finds the server down: an outage again, never a SqlError.
        for _ in range(2):
            outage = halted_under_the_statements()
            assert isinstance(outage, StoreUnavailable) and is_transient(outage), outage
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


def _sleeping(server: pg.PostgresServer) -> bool:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%'"
        ).fetchone()
    return found is not None and found[0] > 0
