"""AWS's limits, on both stores: the history event limit, the definition size, payload sizes.

An execution that reaches its history event limit fails with AWS's error and
wording, the failure being the history's last event at the limit; a
definition over 1 MiB is refused as InvalidDefinition by every face; inputs,
outputs and task results over 256 KiB fail as AWS fails them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from activities import Registry
from engine import Engine
from engine.cli import cli
from engine.errors import DefinitionError, InvalidExecutionInput
from engine.store import Store
from statemachine.quotas import MAX_DEFINITION_BYTES, MAX_HISTORY_EVENTS, MAX_PAYLOAD_BYTES

LOOP = {
    "StartAt": "Spin",
    "States": {
        "Spin": {"Type": "Pass", "Result": {"spin": True}, "Next": "Again"},
        "Again": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.spin", "BooleanEquals": True, "Next": "Spin"}],
            "Default": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}

# An inline Map inside a Parallel: the limit is reached inside task groups.
WIDE = {
    "StartAt": "Both",
    "States": {
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Each",
                    "States": {
                        "Each": {
                            "Type": "Map",
                            "ItemsPath": "$.items",
                            "ItemProcessor": {
                                "StartAt": "One",
                                "States": {"One": {"Type": "Pass", "End": True}},
                            },
                            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Inner"}],
                            "End": True,
                        },
                        "Inner": {"Type": "Pass", "End": True},
                    },
                }
            ],
            "Catch": [{"ErrorEquals": ["States.Runtime"], "Next": "Caught"}],
            "End": True,
        },
        "Caught": {"Type": "Succeed"},
    },
}


def _cause(limit: int) -> str:
    return f"The execution reached the maximum number of history events ({limit})."


def test_aws_default_limit_is_25000() -> None:
    assert MAX_HISTORY_EVENTS == 25_000
    assert Engine(":memory:").max_history_events == 25_000


@pytest.mark.parametrize("definition", [LOOP, WIDE], ids=["loop", "map-in-parallel"])
def test_an_execution_stops_at_the_event_limit(db_url: str, definition: dict[str, Any]) -> None:
    limit = 120
    with Engine(db_url, worker=False, max_history_events=limit) as engine:
        record = engine.run_sync(definition, {"items": list(range(500))})
        history = engine.history_sync(record.execution_id)
    assert record.status == "FAILED"
    # AWS's error and wording; no Catch sees it (States.Runtime and States.ALL alike).
    assert (record.error, record.cause) == ("States.Runtime", _cause(limit))
    last = history[-1]
    assert last.type == "ExecutionFailed"
    assert last.details == {"error": "States.Runtime", "cause": _cause(limit)}
    # The failure is the last event the limit allows, and nothing is missing before it.
    assert limit - 3 <= last.event_id <= limit
    assert [e.event_id for e in history] == list(range(1, last.event_id + 1))
    assert not any(e.type.endswith("Caught") for e in history)


def test_the_limit_counts_across_activations_and_comes_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wait_loop = json.loads(json.dumps(LOOP))
    wait_loop["States"]["Spin"] = {"Type": "Wait", "Seconds": 0, "Next": "Again"}
    monkeypatch.setenv("STEPWISE_MAX_HISTORY_EVENTS", "60")
    with Engine(sqlite_url, worker=False, hold_seconds=0) as engine:
        assert engine.max_history_events == 60
        record = engine.run_sync(wait_loop, {"spin": True})
        history = engine.history_sync(record.execution_id)
    assert (record.status, record.cause) == ("FAILED", _cause(60))
    assert history[-1].event_id <= 60


def test_cli_run_takes_the_limit_as_an_option(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(LOOP))
    result = CliRunner().invoke(
        cli, ["run", str(path), "--db", sqlite_url, "--max-history-events", "50", "-o", "json"]
    )
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert (document["status"], document["error"]) == ("FAILED", "States.Runtime")
    assert document["cause"] == _cause(50)
    bad = CliRunner().invoke(
        cli, ["run", str(path), "--db", sqlite_url, "--max-history-events", "1"]
    )
    assert bad.exit_code == 2


def _oversized() -> dict[str, Any]:
    padding = "x" * (MAX_DEFINITION_BYTES // 2)
    return {
        "Comment": "too big",
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Result": {"a": padding, "b": padding}, "End": True}},
    }


def test_a_definition_over_one_mib_is_refused(db_url: str, tmp_path: Path) -> None:
    big = _oversized()
    with Engine(db_url, worker=False) as engine:
        for given in (big, json.dumps(big)):
            with pytest.raises(DefinitionError) as raised:
                engine.create_state_machine_sync("big", given)
            assert raised.value.aws_code == "InvalidDefinition"
            assert [d.code for d in raised.value.diagnostics] == ["DEFINITION_TOO_LARGE"]
        with pytest.raises(DefinitionError):
            engine.run_sync(big)
    store = Store(db_url)
    try:
        assert store.list_state_machines() == []
    finally:
        store.close()
    # Just under the limit is fine.
    fits = json.loads(json.dumps(big))
    fits["States"]["P"]["Result"]["b"] = "x" * (MAX_DEFINITION_BYTES // 2 - 200)
    assert len(json.dumps(fits, separators=(",", ":")).encode()) <= MAX_DEFINITION_BYTES
    with Engine(db_url, worker=False) as engine:
        assert engine.create_state_machine_sync("fits", fits).version == 1

    path = tmp_path / "big.json"
    path.write_text(json.dumps(big))
    for command in (["validate", str(path)], ["run", str(path), "--db", db_url]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code in (1, 2), (command, result.output)
        assert "DEFINITION_TOO_LARGE" in result.output + result.stderr, command
    assert CliRunner().invoke(cli, ["run", str(path), "--db", db_url]).exit_code == 2


def _big(value: Any) -> dict[str, str]:
    return {"blob": "x" * (MAX_PAYLOAD_BYTES + 1)}


def test_payloads_over_256_kib_fail_as_aws_fails_them(db_url: str) -> None:
    registry = Registry()
    registry.register("big", _big)
    task_result = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "big",
                # A task result over the limit is a task failure a Catch sees.
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.e", "Next": "Ok"}],
                "Next": "Ok",
            },
            "Ok": {"Type": "Succeed"},
        },
    }
    grow = {
        "Type": "Pass",
        "Parameters": {"blob.$": "States.Format('{}{}', $.half, $.half)"},
        "End": True,
    }
    output = {
        "StartAt": "Wrap",
        "States": {
            "Wrap": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "Grow", "States": {"Grow": grow}}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }
    half = "y" * (MAX_PAYLOAD_BYTES // 2)
    with Engine(db_url, registry=registry, worker=False) as engine:
        caught = engine.run_sync(task_result, {})
        history = engine.history_sync(caught.execution_id)
        grown = engine.run_sync(output, {"half": half})
        engine.create_state_machine_sync("m", output)
        with pytest.raises(InvalidExecutionInput) as refused:
            engine.start_sync("m", {"blob": "z" * MAX_PAYLOAD_BYTES})
    assert caught.status == "SUCCEEDED"
    assert json.loads(caught.output or "{}")["e"]["Error"] == "States.DataLimitExceeded"
    assert "TaskFailed" in [e.type for e in history]
    # A state's output over the limit ends the execution: no Catch sees it.
    assert (grown.status, grown.error) == ("FAILED", "States.DataLimitExceeded")
    assert refused.value.aws_code == "InvalidExecutionInput"


@pytest.mark.parametrize(
    "quarter",
    [
        # 131,072 characters of a 3-byte character: half the limit in characters,
        # 1.5 times it in bytes. The input (0.75 of the limit in bytes) is allowed.
        "\u20ac" * (MAX_PAYLOAD_BYTES // 4),
        # Just over a quarter of the limit in characters of a 4-byte character:
        # the fewest characters that can exceed it (a shortcut that skips the
        # byte count for texts under a third or a half of the limit lets it pass).
        "\U0001f600" * (MAX_PAYLOAD_BYTES // 8 + 1),
    ],
    ids=["3-byte", "4-byte"],
)
def test_a_state_output_is_measured_in_utf8_bytes_not_characters(db_url: str, quarter: str) -> None:
    # The output fails the execution as AWS fails it, though its text is short.
    grow = {
        "StartAt": "Grow",
        "States": {
            "Grow": {
                "Type": "Pass",
                "Parameters": {"blob.$": "States.Format('{}{}', $.quarter, $.quarter)"},
                "End": True,
            }
        },
    }
    with Engine(db_url, worker=False) as engine:
        grown = engine.run_sync(grow, {"quarter": quarter})
    assert (grown.status, grown.error) == ("FAILED", "States.DataLimitExceeded")
