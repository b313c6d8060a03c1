"""Distributed Map's ResultWriter: AWS's result files on local S3 storage, and WriterConfig."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.s3local import S3_ROOT_ENV

GET = "arn:aws:states:::s3:getObject"
PUT = "arn:aws:states:::s3:putObject"

# Each batch of rows is checked: a row whose amount is "bad" fails its child.
PROCESSOR = {
    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
    "StartAt": "Check",
    "States": {
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.Items[0].amount", "StringEquals": "bad", "Next": "Reject"}],
            "Default": "Total",
        },
        "Reject": {"Type": "Fail", "Error": "BadRow", "Cause": "amount is not a number"},
        "Total": {
            "Type": "Pass",
            "Parameters": {"ids.$": "$.Items[*].id", "job.$": "$.BatchInput.job"},
            "End": True,
        },
    },
}


def csv_map(writer: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "Orders",
        "States": {
            "Orders": {
                "Type": "Map",
                "Label": "orders",
                "ItemProcessor": PROCESSOR,
                "ItemReader": {
                    "Resource": GET,
                    "Parameters": {"Bucket": "data", "Key": "orders.csv"},
                    "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                },
                "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"job.$": "$.job"}},
                "ResultWriter": writer,
                "End": True,
                **fields,
            }
        },
    }


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "s3"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "orders.csv").write_text("id,amount\n1,10\n2,20\nbad,bad\n4,40\n5,50\n")
    monkeypatch.setenv(S3_ROOT_ENV, str(folder))
    return folder


def run(url: str, definition: dict[str, Any]) -> Any:
    with Engine(url, worker=False) as engine:
        return engine.run_sync(definition, {"job": "j1"})


def test_result_files_with_tolerated_failures(db_url: str, root: Path) -> None:
    definition = csv_map(
        {"Resource": PUT, "Parameters": {"Bucket": "data", "Prefix": "out/run"}},
        ToleratedFailureCount=1,
    )
    record = run(db_url, definition)
    assert record.status == "SUCCEEDED", record.cause
    output = json.loads(record.output or "")
    map_run_arn = output["MapRunArn"]
    assert ":mapRun:" in map_run_arn and "/orders:" in map_run_arn
    run_id = map_run_arn.rsplit(":", 1)[-1]
    assert output["ResultWriterDetails"] == {
        "Bucket": "data",
        "Key": f"out/run/{run_id}/manifest.json",
    }
    folder = root / "data" / "out" / "run" / run_id
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["DestinationBucket"] == "data"
    assert manifest["MapRunArn"] == map_run_arn
    files = manifest["ResultFiles"]
    assert [f["Key"] for f in files["SUCCEEDED"]] == [f"out/run/{run_id}/SUCCEEDED_0.json"]
    assert [f["Key"] for f in files["FAILED"]] == [f"out/run/{run_id}/FAILED_0.json"]
    assert files["PENDING"] == []
    assert files["SUCCEEDED"][0]["Size"] == (folder / "SUCCEEDED_0.json").stat().st_size

    succeeded = json.loads((folder / "SUCCEEDED_0.json").read_text())
    assert [json.loads(r["Output"]) for r in succeeded] == [
        {"ids": ["1", "2"], "job": "j1"},
        {"ids": ["5"], "job": "j1"},
    ]
    first = succeeded[0]
    assert json.loads(first["Input"]) == {
        "BatchInput": {"job": "j1"},
        "Items": [{"id": "1", "amount": "10"}, {"id": "2", "amount": "20"}],
    }
    assert first["Status"] == "SUCCEEDED"
    assert ":execution:" in first["ExecutionArn"] and "/orders:" in first["ExecutionArn"]
    assert first["ExecutionArn"].endswith(":" + first["Name"])
    assert first["StateMachineArn"].endswith("/orders")
    assert {"InputDetails", "OutputDetails", "StartDate", "StopDate"} <= set(first)

    failed = json.loads((folder / "FAILED_0.json").read_text())
    assert len(failed) == 1
    assert (failed[0]["Status"], failed[0]["Error"]) == ("FAILED", "BadRow")
    assert failed[0]["Cause"] == "amount is not a number"
    assert "Output" not in failed[0]


def test_jsonl_output_type_compact(sqlite_url: str, root: Path) -> None:
    definition = csv_map(
        {
            "Resource": PUT,
            "Parameters": {"Bucket": "data", "Prefix": "lines"},
            "WriterConfig": {"OutputType": "JSONL", "Transformation": "COMPACT"},
        },
        ToleratedFailurePercentage=50,
    )
    record = run(sqlite_url, definition)
    assert record.status == "SUCCEEDED", record.cause
    key = json.loads(record.output or "")["ResultWriterDetails"]["Key"]
    folder = root / "data" / Path(key).parent
    lines = (folder / "SUCCEEDED_0.json").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"ids": ["1", "2"], "job": "j1"},
        {"ids": ["5"], "job": "j1"},
    ]
    assert json.loads((folder / "FAILED_0.json").read_text().splitlines()[0])["Error"] == "BadRow"


@pytest.mark.parametrize(
    ("transformation", "expected"),
    [
        ("COMPACT", [{"ids": ["1", "2"], "job": "j1"}, {"ids": ["4", "5"], "job": "j1"}]),
        ("FLATTEN", ["1", "2", "4", "5"]),
    ],
)
def test_writer_config_alone_shapes_the_output(
    sqlite_url: str, root: Path, transformation: str, expected: Any
) -> None:
    (root / "data" / "orders.csv").write_text("id,amount\n1,10\n2,20\n4,40\n5,50\n")
    definition = csv_map({"WriterConfig": {"Transformation": transformation}})
    if transformation == "FLATTEN":
        definition["States"]["Orders"]["ResultSelector"] = {"all.$": "$"}
        total = PROCESSOR["States"]["Total"]  # type: ignore[index]
        definition["States"]["Orders"]["ItemProcessor"] = {
            **PROCESSOR,
            "States": {**PROCESSOR["States"], "Total": {**total, "OutputPath": "$.ids"}},  # type: ignore[dict-item]
        }
        expected = {"all": expected}
    record = run(sqlite_url, definition)
    assert record.status == "SUCCEEDED", record.cause
    assert json.loads(record.output or "") == expected


def test_writer_config_none_gives_execution_records(sqlite_url: str, root: Path) -> None:
    (root / "data" / "orders.csv").write_text("id,amount\n1,10\n")
    record = run(sqlite_url, csv_map({"WriterConfig": {"Transformation": "NONE"}}))
    assert record.status == "SUCCEEDED", record.cause
    (only,) = json.loads(record.output or "")
    assert only["Status"] == "SUCCEEDED"
    assert json.loads(only["Output"]) == {"ids": ["1"], "job": "j1"}


@pytest.mark.parametrize("prefix", ["../escape", "/abs", "a/../../b"])
def test_a_prefix_leaving_the_bucket_fails_the_map(
    sqlite_url: str, root: Path, prefix: str
) -> None:
    definition = csv_map(
        {"Resource": PUT, "Parameters": {"Bucket": "data", "Prefix": prefix}},
        ToleratedFailureCount=1,
    )
    record = run(sqlite_url, definition)
    assert (record.status, record.error) == ("FAILED", "States.ResultWriterFailed")
    assert not (root / "escape").exists() and not (root.parent / "b").exists()
