"""The conformance cases through `stepwise run`, the one-command path users take.

Cases that wait on real time (Wait states, timeouts) run in
test_local_cases.py under a mocked clock; every other local case runs here
through the CLI with its definition file and `--input`, on a SQLite file
and a PostgreSQL database; the printed `--output json` describe object
must match what AWS recorded, and `stepwise history` must print AWS's
event types (save the known gaps in support.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import cli
from tests.conformance.support import case_files, check_history, load_case, mismatches
from tests.engine import pg


def _real_time(case: dict[str, object]) -> bool:
    text = json.dumps(case["definition"])
    return '"Wait"' in text or "TimeoutSeconds" in text or "HeartbeatSeconds" in text


CASES = [p for p in case_files("local") if not _real_time(load_case(p))]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cli_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('cli-conformance') / 'cases.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    url, name = pg.fresh_database_url("stepwise_cli_conformance")
    yield url
    server.drop_database(name)


@pytest.mark.parametrize("path", CASES, ids=[p.stem[:120] for p in CASES])
def test_case_through_stepwise_run(path: Path, cli_db: str, tmp_path: Path) -> None:
    case = load_case(path)
    definition = tmp_path / "machine.json"
    definition.write_text(json.dumps(case["definition"]))
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            cli_db,
            "--output",
            "json",
            "run",
            str(definition),
            "--input",
            json.dumps(case["input"]),
        ],
    )
    assert "Traceback" not in result.output
    described = json.loads(result.stdout)
    expected_exit = 0 if described["status"] == "SUCCEEDED" else 1
    assert result.exit_code == expected_exit
    output = None if described["output"] is None else json.dumps(described["output"])
    assert (
        mismatches(case, described["status"], output, described["error"], described["cause"]) == []
    )
    shown = CliRunner().invoke(
        cli, ["--db", cli_db, "--output", "json", "history", described["executionArn"]]
    )
    assert shown.exit_code == 0, shown.output
    check_history(case, [event["type"] for event in json.loads(shown.stdout)["events"]])
