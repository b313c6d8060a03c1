"""The SQL built-in cannot be turned against the host: its statement text is only what the
definition wrote (DYNAMIC_SQL at validation, by `stepwise validate` and before `run`), data
reaches the database only as bound parameters, and an operator's PostgreSQL role confines
what a statement may touch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from activities import Registry
from activities.sql import SQL_RESOURCE, SqlPolicy, set_role_statement
from engine import Engine
from engine.cli import cli
from statemachine import validate_resources
from statemachine.build import local_diagnostics
from statemachine.errors import DefinitionError

ADVICE = (
    "The SQL statement must be written literally in the definition; bind data as named "
    'parameters instead ("Parameters": {"id.$": "$.id"} with :id in the statement).'
)


def _task(**fields: Any) -> dict[str, Any]:
    ending = {} if "Next" in fields else {"End": True}
    return {"Type": "Task", "Resource": "stepwise:sql", **ending, **fields}


def _machine(state: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"StartAt": "Q", "States": {"Q": state}, **top}


def _errors(definition: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (d.code, d.location, d.message)
        for d in local_diagnostics(definition)
        if d.severity == "ERROR"
    ]


def test_statement_built_from_data_is_refused_at_its_pointer() -> None:
    attack = _machine(_task(Parameters={"Sql.$": "$.q"}))
    assert _errors(attack) == [
        (
            "DYNAMIC_SQL",
            "/States/Q/Parameters/Sql.$",
            f"The SQL statement is not literal: 'Sql.$' builds it from data. {ADVICE}",
        )
    ]
    intrinsic = _machine(_task(Parameters={"Sql.$": "States.Format('SELECT * FROM {}', $.table)"}))
    assert [e[:2] for e in _errors(intrinsic)] == [("DYNAMIC_SQL", "/States/Q/Parameters/Sql.$")]
    whole_list = _machine(_task(Parameters={"Statements.$": "$.statements"}))
    assert [e[:2] for e in _errors(whole_list)] == [
        ("DYNAMIC_SQL", "/States/Q/Parameters/Statements.$")
    ]
    one_of_many = _machine(
        _task(
            Parameters={
                "Statements": [
                    {"Sql": "DELETE FROM t WHERE id = :id", "Parameters": {"id.$": "$.id"}},
                    {"Sql.$": "$.q"},
                ]
            }
        )
    )
    assert [e[:2] for e in _errors(one_of_many)] == [
        ("DYNAMIC_SQL", "/States/Q/Parameters/Statements/1/Sql.$")
    ]


def test_a_sql_task_without_parameters_would_run_its_input_and_is_refused() -> None:
    assert _errors(_machine(_task())) == [
        (
            "DYNAMIC_SQL",
            "/States/Q",
            f"This SQL Task has no Parameters, so its statement would be its input. {ADVICE}",
        )
    ]


def test_jsonata_statements_are_refused_and_nested_scopes_are_checked() -> None:
    field = _machine(_task(Arguments={"Sql": "{% 'DELETE FROM ' & $states.input.t %}"}))
    assert [e[:2] for e in _errors({**field, "QueryLanguage": "JSONata"})] == [
        ("DYNAMIC_SQL", "/States/Q/Arguments/Sql")
    ]
    whole = _machine(_task(QueryLanguage="JSONata", Arguments="{% $states.input %}"))
    assert _errors(whole) == [
        (
            "DYNAMIC_SQL",
            "/States/Q/Arguments",
            "Arguments is one JSONata expression, so the statement is built from data. " + ADVICE,
        )
    ]
    nested = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {
                        "StartAt": "M",
                        "States": {
                            "M": {
                                "Type": "Map",
                                "End": True,
                                "ItemProcessor": {
                                    "StartAt": "Q",
                                    "States": {
                                        "Q": _task(
                                            Resource="stepwise:sql.waitForTaskToken",
                                            Parameters={"Sql.$": "$"},
                                        )
                                    },
                                },
                            }
                        },
                    }
                ],
            }
        },
    }
    assert [e[:2] for e in _errors(nested)] == [
        (
            "DYNAMIC_SQL",
            "/States/P/Branches/0/States/M/ItemProcessor/States/Q/Parameters/Sql.$",
        )
    ]


def test_literal_statements_with_parameters_from_data_stay_valid() -> None:
    literal = _machine(
        _task(
            Parameters={
                "Sql": "SELECT * FROM t WHERE id = :id",
                "Parameters": {"id.$": "$.id"},
                "Statements": [{"Sql": "SELECT 1", "Parameters.$": "$.params"}],
            }
        )
    )
    assert _errors(literal) == []
    jsonata = _machine(
        _task(Arguments={"Sql": "SELECT :id", "Parameters": {"id": "{% $states.input.id %}"}}),
        QueryLanguage="JSONata",
    )
    assert _errors(jsonata) == []
    # Other Resources keep their dynamic fields.
    assert _errors(_machine({**_task(Parameters={"Sql.$": "$.q"}), "Resource": "myapp:sql"})) == []
    assert validate_resources.SQL_RESOURCE == SQL_RESOURCE


def test_stepwise_validate_and_run_refuse_dynamic_sql(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "attack.json"
    attack = _machine(_task(Parameters={"Sql.$": "$.q"}))
    path.write_text(json.dumps(attack))
    result = CliRunner().invoke(cli, ["validate", "--local", str(path)])
    assert result.exit_code == 1
    assert f"{path}:/States/Q/Parameters/Sql.$: DYNAMIC_SQL:" in result.output
    registry = Registry()
    registry.enable("sql")

    async def run() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            await engine.run(attack, {"q": "DELETE FROM history_events"})

    with pytest.raises(DefinitionError) as raised:
        anyio.run(run)
    assert "DYNAMIC_SQL" in str(raised.value)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM executions")).scalar() == 0
    engine.dispose()


def test_data_is_bound_never_executed(db_url: str) -> None:
    registry = Registry()
    registry.enable("sql")
    definition = {
        "StartAt": "Make",
        "States": {
            "Make": _task(
                Parameters={"Sql": "CREATE TABLE notes (body TEXT)"}, ResultPath=None, Next="Put"
            ),
            "Put": _task(
                Parameters={
                    "Sql": "INSERT INTO notes (body) VALUES (:body)",
                    "Parameters": {"body.$": "$.q"},
                },
                ResultPath=None,
                Next="Read",
            ),
            "Read": _task(Parameters={"Sql": "SELECT body FROM notes"}),
        },
    }
    hostile = "x'); DELETE FROM history_events; --"

    async def run() -> Any:
        async with Engine(db_url, registry=registry) as engine:
            record = await engine.run(definition, {"q": hostile})
            return record, await engine.history(record.execution_id)

    record, history = anyio.run(run)
    assert record.status == "SUCCEEDED", record.cause
    assert json.loads(record.output) == {"Results": [{"Rows": [{"body": hostile}], "RowCount": 1}]}
    assert history[-1].type == "ExecutionSucceeded"


def test_set_role_statement_quotes_the_role_as_an_identifier() -> None:
    assert set_role_statement("workflow_sql") == 'SET LOCAL ROLE "workflow_sql"'
    assert set_role_statement('a"; DROP TABLE x; --') == 'SET LOCAL ROLE "a""; DROP TABLE x; --"'
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError, match="the SQL role must be a non-empty name"):
            set_role_statement(bad)
    with pytest.raises(ValueError):
        SqlPolicy(role="")
    assert SqlPolicy().role is None and SqlPolicy(role="r").role == "r"


def test_a_role_without_grants_cannot_touch_stepwise_tables(postgres_url: str) -> None:
    async def prepare() -> None:
        async with Engine(postgres_url, worker=False):
            pass  # creates Stepwise's schema

    anyio.run(prepare)
    engine = sa.create_engine(postgres_url)
    role = f'sw "sql" role {os.getpid()}'
    quoted = '"' + role.replace('"', '""') + '"'
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {quoted}"))
        conn.execute(sa.text(f"CREATE ROLE {quoted}"))
        conn.execute(sa.text("CREATE TABLE app_notes (body TEXT)"))
        conn.execute(sa.text(f"GRANT SELECT, INSERT ON app_notes TO {quoted}"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(set_role_statement(role)))
            conn.execute(sa.text("INSERT INTO app_notes (body) VALUES ('ok')"))
        with (
            pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
            engine.begin() as conn,
        ):
            conn.execute(sa.text(set_role_statement(role)))
            conn.execute(sa.text("DELETE FROM history_events"))
        with engine.begin() as conn:
            # LOCAL: the role ended with its transaction.
            assert conn.execute(sa.text("SELECT count(*) FROM app_notes")).scalar() == 1
            assert conn.execute(sa.text("SELECT current_user")).scalar() != role
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE app_notes"))
            conn.execute(sa.text(f"DROP ROLE {quoted}"))
        engine.dispose()
