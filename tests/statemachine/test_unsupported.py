"""Nothing is ignored: a field AWS accepts but Stepwise does not run is refused, never skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli import cli
from statemachine import DefinitionError, load, local_diagnostics, validate
from statemachine.validate import is_valid
from statemachine.validate_support import UNSUPPORTED_FEATURE


def distributed(**fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "P",
                    "States": {"P": {"Type": "Pass", "End": True}},
                },
                "End": True,
                **fields,
            }
        },
    }


WRITER = {
    "Resource": "arn:aws:states:::s3:putObject",
    "Parameters": {"Bucket": "b", "Prefix": "p"},
}
CREDENTIALS_TASK = {
    "StartAt": "Par",
    "States": {
        "Par": {
            "Type": "Parallel",
            "End": True,
            "Branches": [
                {
                    "StartAt": "T",
                    "States": {
                        "T": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::http:invoke",
                            "Credentials": {"RoleArn": "arn:aws:iam::1:role/r"},
                            "End": True,
                        }
                    },
                }
            ],
        }
    },
}


def unsupported(definition: Any) -> list[str]:
    return [d.location for d in local_diagnostics(definition) if d.code == UNSUPPORTED_FEATURE]


@pytest.mark.parametrize(
    ("definition", "where"),
    [
        (
            distributed(
                ResultWriter=WRITER,
                ItemProcessor={
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "P",
                    "States": {"P": {"Type": "Pass", "End": True}},
                },
            ),
            "/States/M/ResultWriter",
        ),
        (
            distributed(ResultWriter={**WRITER, "Resource": "arn:aws:states:::s3:copyObject"}),
            "/States/M/ResultWriter/Resource",
        ),
        (CREDENTIALS_TASK, "/States/Par/Branches/0/States/T/Credentials"),
        (
            distributed(
                ItemReader={
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "PARQUET"},
                    "Parameters": {"Bucket": "b", "Key": "k.parquet"},
                }
            ),
            "/States/M/ItemReader/ReaderConfig/InputType",
        ),
        (
            distributed(
                ItemReader={
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "CSV"},
                    "Parameters": {"Bucket": "b", "Key": "k.csv"},
                },
                ItemProcessor={
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "P",
                    "States": {"P": {"Type": "Pass", "End": True}},
                },
            ),
            "/States/M/ItemReader",
        ),
        (
            distributed(
                ItemReader={
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON", "ItemsPointer": "/a"},
                    "Parameters": {"Bucket": "b", "Key": "k.json"},
                }
            ),
            "/States/M/ItemReader/ReaderConfig/ItemsPointer",
        ),
        (
            distributed(
                ItemReader={
                    "Resource": "arn:aws:states:::s3:listObjectsV2",
                    "Parameters": {"Bucket": "b"},
                },
                ItemsPath="$.items",
            ),
            "/States/M/ItemsPath",
        ),
    ],
)
def test_aws_accepts_but_stepwise_refuses(definition: Any, where: str) -> None:
    assert is_valid(validate(definition))  # AWS's verdict is unchanged
    assert any(location.startswith(where) for location in unsupported(definition))
    with pytest.raises(DefinitionError) as raised:
        load(definition)
    assert any(d.code == UNSUPPORTED_FEATURE for d in raised.value.diagnostics)


def test_definitions_without_such_fields_are_untouched() -> None:
    assert unsupported(distributed(ItemBatcher={"MaxItemsPerBatch": 2})) == []
    reader = {
        "Resource": "arn:aws:states:::s3:listObjectsV2",
        "Parameters": {"Bucket": "b", "Prefix": "in/"},
    }
    assert unsupported(distributed(ItemReader=reader, ResultWriter=WRITER)) == []
    assert (
        unsupported(distributed(ResultWriter={"WriterConfig": {"Transformation": "FLATTEN"}})) == []
    )
    load(distributed(ToleratedFailureCount=1, Label="rows"))


def test_run_and_strict_validate_refuse_with_the_location(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(CREDENTIALS_TASK))
    runner = CliRunner()
    assert runner.invoke(cli, ["validate", str(path)]).exit_code == 0  # AWS would accept it
    strict = runner.invoke(cli, ["validate", "--strict", str(path)])
    assert strict.exit_code == 1
    assert "/States/Par/Branches/0/States/T/Credentials: UNSUPPORTED_FEATURE" in strict.output
    run = runner.invoke(cli, ["run", "--db", f"sqlite:///{tmp_path}/db.sqlite", str(path)])
    assert run.exit_code == 2
    assert "UNSUPPORTED_FEATURE" in run.output
