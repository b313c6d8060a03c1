"""Distributed Map's ItemReader on local S3 storage: CSV, JSON, JSONL, MANIFEST, listObjectsV2."""

from __future__ import annotations

import gzip
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.itemreader import ReaderRequest, stream_items
from engine.s3local import S3_ROOT_ENV, LocalS3
from statemachine.errors import States, StatesError

GET = "arn:aws:states:::s3:getObject"
LIST = "arn:aws:states:::s3:listObjectsV2"


def reader_map(reader: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "Rows",
        "States": {
            "Rows": {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Echo",
                    "States": {"Echo": {"Type": "Pass", "End": True}},
                },
                "ItemReader": reader,
                "End": True,
                **fields,
            }
        },
    }


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "s3"
    (folder / "data").mkdir(parents=True)
    monkeypatch.setenv(S3_ROOT_ENV, str(folder))
    return folder


def run(url: str, definition: dict[str, Any], payload: Any = None) -> Any:
    with Engine(url, worker=False) as engine:
        record = engine.run_sync(definition, payload if payload is not None else {})
    return record


def output_of(url: str, definition: dict[str, Any], payload: Any = None) -> Any:
    record = run(url, definition, payload)
    assert record.status == "SUCCEEDED", record.cause
    return json.loads(record.output or "null")


def test_csv_first_row_batched_with_selector_and_max_items(db_url: str, root: Path) -> None:
    (root / "data" / "orders.csv").write_text("id,amount\n1,10\n2,20\n3,30\n4,40\n5,50\n")
    definition = reader_map(
        {
            "Resource": GET,
            "Parameters": {"Bucket": "data", "Key.$": "$.key"},
            "ReaderConfig": {
                "InputType": "CSV",
                "CSVHeaderLocation": "FIRST_ROW",
                "MaxItemsPath": "$.limit",
            },
        },
        ItemSelector={"row.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
        ItemBatcher={"MaxItemsPerBatch": 2},
    )
    output = output_of(db_url, definition, {"key": "orders.csv", "limit": 3})
    assert output == [
        {
            "Items": [
                {"row": {"id": "1", "amount": "10"}, "index": 0},
                {"row": {"id": "2", "amount": "20"}, "index": 1},
            ]
        },
        {"Items": [{"row": {"id": "3", "amount": "30"}, "index": 2}]},
    ]


def test_max_items_path_reads_an_integer_written_as_a_string(db_url: str, root: Path) -> None:
    # AWS reads a MaxItemsPath selecting "2" as 2 (recorded with a variable
    # holding "2"); a string that is not an integer still fails the run.
    (root / "data" / "orders.csv").write_text("id,amount\n1,10\n2,20\n3,30\n")
    definition = reader_map(
        {
            "Resource": GET,
            "Parameters": {"Bucket": "data", "Key.$": "$.key"},
            "ReaderConfig": {
                "InputType": "CSV",
                "CSVHeaderLocation": "FIRST_ROW",
                "MaxItemsPath": "$.limit",
            },
        },
        ItemSelector={"id.$": "$$.Map.Item.Value.id"},
    )
    assert output_of(db_url, definition, {"key": "orders.csv", "limit": "2"}) == [
        {"id": "1"},
        {"id": "2"},
    ]
    failed = run(db_url, definition, {"key": "orders.csv", "limit": "two"})
    assert (failed.status, failed.error) == ("FAILED", "States.Runtime")
    assert "not a valid integer" in (failed.cause or "")


def test_csv_given_headers_delimiter_short_rows_and_bom(sqlite_url: str, root: Path) -> None:
    (root / "data" / "p.csv").write_bytes("\ufeffa|b|c\n\nx|y\n".encode())
    definition = reader_map(
        {
            "Resource": GET,
            "Parameters": {"Bucket": "data", "Key": "p.csv"},
            "ReaderConfig": {
                "InputType": "CSV",
                "CSVHeaderLocation": "GIVEN",
                "CSVHeaders": ["one", "two", "three"],
                "CSVDelimiter": "PIPE",
            },
        }
    )
    assert output_of(sqlite_url, definition) == [
        {"one": "a", "two": "b", "three": "c"},
        {"one": "x", "two": "y", "three": ""},
    ]


def test_duplicate_csv_headers_fail_as_aws_does(sqlite_url: str, root: Path) -> None:
    (root / "data" / "d.csv").write_text("a,a\n1,2\n")
    definition = reader_map(
        {
            "Resource": GET,
            "Parameters": {"Bucket": "data", "Key": "d.csv"},
            "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
        }
    )
    record = run(sqlite_url, definition)
    assert (record.status, record.error) == ("FAILED", "States.ItemReaderFailed")
    assert record.cause == "CSV headers cannot contain duplicates."


def test_json_array_streams_across_chunks(sqlite_url: str, root: Path) -> None:
    values: list[Any] = [{"n": n, "s": "é" * (153 + n % 7)} for n in range(700)]
    values += [12345678, 1.5, "x"]
    text = json.dumps(values, ensure_ascii=False, indent=1).encode()
    # Several 64 KiB reads, each ending inside a two-byte "é": the decoder
    # must carry the half character over to the next read.
    ends = range(1 << 16, len(text), 1 << 16)
    assert len(ends) >= 3 and all(0x80 <= text[end] <= 0xBF for end in ends)
    (root / "data" / "items.json").write_bytes(text)
    definition = reader_map(
        {
            "Resource": GET,
            "Parameters": {"Bucket": "data", "Key": "items.json"},
            "ReaderConfig": {"InputType": "JSON"},
        },
        ItemSelector={"v.$": "$$.Map.Item.Value"},
    )
    assert output_of(sqlite_url, definition) == [{"v": v} for v in values]


def test_json_that_is_not_an_array_fails(sqlite_url: str, root: Path) -> None:
    (root / "data" / "o.json").write_text('{"a": 1}')
    definition = reader_map(
        {
            "Resource": GET,
            "Parameters": {"Bucket": "data", "Key": "o.json"},
            "ReaderConfig": {"InputType": "JSON"},
        },
        Catch=[{"ErrorEquals": ["States.ItemReaderFailed"], "Next": "Caught"}],
    )
    definition["States"]["Rows"].pop("End")
    definition["States"]["Rows"]["Next"] = "Caught"
    definition["States"]["Caught"] = {"Type": "Pass", "End": True}
    output = output_of(sqlite_url, definition)
    assert output["Error"] == "States.ItemReaderFailed"
    assert output["Cause"] == "Attempting to map over non-iterable node."


def test_jsonl_with_jsonata_arguments(sqlite_url: str, root: Path) -> None:
    (root / "data" / "e.jsonl").write_text('{"a": 1}\n\n[2]\n"three"\n')
    definition = reader_map(
        {
            "Resource": GET,
            "Arguments": {"Bucket": "data", "Key": "{% $states.input.key %}"},
            "ReaderConfig": {"InputType": "JSONL", "MaxItems": "{% 2 %}"},
        }
    )
    definition["QueryLanguage"] = "JSONata"
    assert output_of(sqlite_url, definition, {"key": "e.jsonl"}) == [{"a": 1}, [2]]


def test_list_objects_v2_in_s3_order_with_aws_shapes(sqlite_url: str, root: Path) -> None:
    (root / "data" / "in").mkdir()
    (root / "data" / "in" / "b.txt").write_text("bb")
    (root / "data" / "in" / "a" / "z.txt").parent.mkdir()
    (root / "data" / "in" / "a" / "z.txt").write_text("z")
    (root / "data" / "other.txt").write_text("no")
    definition = reader_map({"Resource": LIST, "Parameters": {"Bucket": "data", "Prefix": "in/"}})
    output = output_of(sqlite_url, definition)
    assert [item["Key"] for item in output] == ["in/a/z.txt", "in/b.txt"]
    first = output[1]
    assert set(first) == {"Etag", "Key", "LastModified", "Size", "StorageClass"}
    assert first["Size"] == 2
    assert first["Etag"] == '"21ad0bd836b90d08f4cf640b4c298e7c"'  # md5("bb")
    assert first["StorageClass"] == "STANDARD"


def test_manifest_reads_the_inventory_csv_files(sqlite_url: str, root: Path) -> None:
    (root / "inv").mkdir()
    with gzip.open(root / "inv" / "part-0.csv.gz", "wt") as part:
        part.write('"data","k1","10"\n"data","k2","20"\n')
    (root / "inv" / "part-1.csv").write_text('"data","k3","30"\n')
    manifest = {
        "sourceBucket": "data",
        "destinationBucket": "arn:aws:s3:::inv",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size",
        "files": [{"key": "part-0.csv.gz"}, {"key": "part-1.csv"}],
    }
    (root / "inv" / "manifest.json").write_text(json.dumps(manifest))
    definition = reader_map(
        {
            "Resource": GET,
            "Parameters": {"Bucket": "inv", "Key": "manifest.json"},
            "ReaderConfig": {"InputType": "MANIFEST"},
        }
    )
    assert output_of(sqlite_url, definition) == [
        {"Bucket": "data", "Key": "k1", "Size": "10"},
        {"Bucket": "data", "Key": "k2", "Size": "20"},
        {"Bucket": "data", "Key": "k3", "Size": "30"},
    ]


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("data", "../secret.csv"),
        ("data", "in/../../secret.csv"),
        ("data", "/etc/passwd"),
        ("..", "secret.csv"),
        ("data", "link/secret.csv"),
        ("data", "missing.csv"),
    ],
)
def test_paths_outside_the_root_and_missing_objects_fail_the_map(
    sqlite_url: str, root: Path, bucket: str, key: str
) -> None:
    (root.parent / "secret.csv").write_text("a\n1\n")
    os.symlink(root.parent, root / "data" / "link")
    definition = reader_map(
        {
            "Resource": GET,
            "Parameters": {"Bucket": bucket, "Key": key},
            "ReaderConfig": {"InputType": "CSV"},
        }
    )
    record = run(sqlite_url, definition)
    assert (record.status, record.error) == ("FAILED", "States.ItemReaderFailed")
    assert "secret" not in (record.output or "")


def test_no_storage_root_configured_fails_the_map(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(S3_ROOT_ENV, raising=False)
    definition = reader_map({"Resource": LIST, "Parameters": {"Bucket": "data"}})
    record = run(sqlite_url, definition)
    assert (record.status, record.error) == ("FAILED", "States.ItemReaderFailed")
    assert S3_ROOT_ENV in (record.cause or "")


def test_local_s3_refuses_writes_outside_the_root(root: Path) -> None:
    storage = LocalS3(root, error=States.RESULT_WRITER_FAILED)
    os.symlink(root.parent, root / "data" / "out")
    for key in ("../x.json", "out/x.json", "a//b.json", "./x.json"):
        with pytest.raises(StatesError) as raised:
            storage.put("data", key, b"{}")
        assert raised.value.error == States.RESULT_WRITER_FAILED
    assert not (root.parent / "x.json").exists()
    assert storage.put("data", "results/x.json", b"{}") == 2
    assert (root / "data" / "results" / "x.json").read_bytes() == b"{}"


def test_a_large_csv_is_streamed_not_loaded(root: Path) -> None:
    rows = 200_000
    with (root / "data" / "big.csv").open("w") as big:
        big.write("id,name,payload\n")
        for n in range(rows):
            big.write(f"{n},row-{n},{'x' * 40}\n")
    storage = LocalS3(root, error=States.ITEM_READER_FAILED)
    request = ReaderRequest(resource=GET, bucket="data", key="big.csv", input_type="CSV")
    tracemalloc.start()
    try:
        count = sum(1 for _ in stream_items(request, storage))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    # The file is ~12 MB; reading it row by row keeps well under 2 MB of Python objects.
    assert peak < 2_000_000


def test_run_s3_root_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from engine.cli import cli, s3root

    assert s3root.S3_ROOT_ENV == S3_ROOT_ENV
    monkeypatch.delenv(S3_ROOT_ENV, raising=False)  # restored after the test
    (tmp_path / "store" / "data").mkdir(parents=True)
    (tmp_path / "store" / "data" / "rows.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    definition = reader_map(
        {
            "Resource": GET,
            "Parameters": {"Bucket": "data", "Key": "rows.jsonl"},
            "ReaderConfig": {"InputType": "JSONL"},
        }
    )
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(definition))
    db = f"sqlite:///{tmp_path}/db.sqlite"
    result = CliRunner().invoke(
        cli, ["run", "--db", db, "-o", "json", "--s3-root", str(tmp_path / "store"), str(path)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["output"] == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        " \n[ ] ",
        '[1, 22, 333, -4.5e3, true, false, null, "a,]b", {"k": [1, {"x": "]"}]}, [[]]]',
        '\ufeff["é", "\\u00e9", "\\"quoted\\""]',
        "[12345678901234567890]",
    ],
)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 16])
def test_json_array_decoding_at_every_chunk_boundary(
    root: Path, monkeypatch: pytest.MonkeyPatch, text: str, chunk: int
) -> None:
    import engine.itemreader

    monkeypatch.setattr(engine.itemreader, "_CHUNK", chunk)
    (root / "data" / "a.json").write_bytes(text.encode())
    storage = LocalS3(root, error=States.ITEM_READER_FAILED)
    request = ReaderRequest(resource=GET, bucket="data", key="a.json", input_type="JSON")
    assert list(stream_items(request, storage)) == json.loads(text.lstrip("\ufeff"))


@pytest.mark.parametrize(
    "text", ["", "[1, 2", "[1 2]", "[1,]x", "{}", "[1] [2]", "[1,,2]", "[] x", "[1]]"]
)
def test_malformed_json_arrays_fail_the_reader(root: Path, text: str) -> None:
    (root / "data" / "bad.json").write_text(text)
    storage = LocalS3(root, error=States.ITEM_READER_FAILED)
    request = ReaderRequest(resource=GET, bucket="data", key="bad.json", input_type="JSON")
    with pytest.raises(StatesError) as raised:
        list(stream_items(request, storage))
    assert raised.value.error == States.ITEM_READER_FAILED
