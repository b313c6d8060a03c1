"""`stepwise list --max-results/--next-token`: AWS's ListExecutions paging from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from engine.api import Engine
from engine.cli import cli

WAIT = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": True}}}


def _list(url: str, *extra: str) -> tuple[int, dict[str, object], str]:
    result = CliRunner().invoke(cli, ["list", "--db", url, "-o", "json", *extra])
    body = json.loads(result.stdout) if result.exit_code == 0 else {}
    return result.exit_code, body, result.stderr


def test_paging_through_the_cli_gives_every_execution_once_newest_first(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:
        engine.create_state_machine_sync("hold", WAIT)
        started = [engine.start_sync("hold", {"i": i}, name=f"e{i}").name for i in range(7)]
    seen: list[str] = []
    token: list[str] = []
    pages = 0
    while True:
        code, body, _ = _list(db_url, "--max-results", "3", *token)
        assert code == 0
        pages += 1
        seen += [item["name"] for item in body["executions"]]  # type: ignore[attr-defined]
        if "nextToken" not in body:
            break
        token = ["--next-token", str(body["nextToken"])]
    assert pages == 3
    assert seen == list(reversed(started))


def test_a_bad_next_token_is_bad_input(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with Engine(url, worker=False) as engine:
        engine.create_state_machine_sync("hold", WAIT)
    code, _, stderr = _list(url, "--next-token", "not-a-token")
    assert code == 2
    assert stderr.strip().startswith("stepwise: error: InvalidToken: Invalid Token:")
    assert "Traceback" not in stderr


def test_max_results_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code, _, stderr = _list(url, "--max-results", "1001")
    assert code == 2
    assert "1001 is not in the range 1<=x<=1000" in stderr
