"""`--strict`: a Task Resource that nothing loaded can serve fails validation before any run."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from activities import Registry, lambda_function
from engine.cli import cli
from engine.resources import unknown_resources

DEFINITION = {
    "StartAt": "Greet",
    "States": {
        "Greet": {"Type": "Task", "Resource": "greet", "Next": "Par"},
        "Par": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Typo",
                    "States": {"Typo": {"Type": "Task", "Resource": "gret", "End": True}},
                }
            ],
            "Next": "Lambda",
        },
        "Lambda": {
            "Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:000000000000:function:Missing",
            "Next": "Activity",
        },
        "Activity": {
            "Type": "Task",
            "Resource": "arn:aws:states:us-east-1:000000000000:activity:Approve",
            "Next": "Http",
        },
        "Http": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke", "End": True},
    },
}


def test_unknown_resources_are_located() -> None:
    registry = Registry()
    registry.register("greet", lambda value: value)
    problems = unknown_resources(DEFINITION, registry)
    assert [(d.code, d.location) for d in problems] == [
        ("UNKNOWN_RESOURCE", "/States/Par/Branches/0/States/Typo/Resource"),
        ("UNKNOWN_RESOURCE", "/States/Lambda/Resource"),
    ]
    lambda_function("Missing", registry=registry)(lambda event, context: event)
    assert len(unknown_resources(DEFINITION, registry)) == 1


def test_validate_and_run_strict(tmp_path: Path) -> None:
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(DEFINITION))
    runner = CliRunner()
    aws = runner.invoke(cli, ["validate", str(path)])  # AWS: plain names are not ARNs
    plain = runner.invoke(cli, ["validate", "--local", str(path)])
    strict = runner.invoke(
        cli, ["validate", "--strict", "--activities", "examples.hello_activities", str(path)]
    )
    assert aws.exit_code == 1 and "INVALID_RESOURCE" in aws.output
    assert plain.exit_code == 0
    assert strict.exit_code == 1
    assert f"{path}:/States/Par/Branches/0/States/Typo/Resource: UNKNOWN_RESOURCE" in strict.output
    db = f"sqlite:///{tmp_path / 'x.db'}"
    run = runner.invoke(cli, ["--db", db, "run", "--strict", str(path), "--input", "{}"])
    assert run.exit_code == 2
    assert "UNKNOWN_RESOURCE" in run.output and "Traceback" not in run.output


def test_resources_mapping_file_binds_aws_arns(tmp_path: Path, monkeypatch: object) -> None:
    (tmp_path / "mapped_handlers.py").write_text(
        "def echo(event, context):\n    return {'echoed': event}\n"
    )
    (tmp_path / "resources.json").write_text(
        json.dumps({"Resources": {"arn:aws:lambda:*:*:function:Echo*": "mapped_handlers:echo"}})
    )
    machine = tmp_path / "m.json"
    machine.write_text(
        json.dumps(
            {
                "StartAt": "L",
                "States": {
                    "L": {
                        "Type": "Task",
                        "Resource": "arn:aws:lambda:us-east-1:123456789012:function:EchoMe",
                        "End": True,
                    }
                },
            }
        )
    )
    monkeypatch.chdir(tmp_path)  # type: ignore[attr-defined]
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 'x.db'}"
    unmapped = runner.invoke(cli, ["validate", "--strict", str(machine)])
    assert unmapped.exit_code == 1 and "UNKNOWN_RESOURCE" in unmapped.output
    result = runner.invoke(
        cli,
        [
            "--db",
            db,
            "-o",
            "json",
            "run",
            str(machine),
            "--input",
            '{"a": 1}',
            "--resources",
            "resources.json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"] == {"echoed": {"a": 1}}
    missing = runner.invoke(cli, ["--db", db, "run", str(machine), "--resources", "nope.json"])
    assert missing.exit_code == 2 and "nope.json" in missing.output
