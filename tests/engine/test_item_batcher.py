"""Map's ItemBatcher: items grouped into {"BatchInput", "Items"} inputs, one child run per batch."""

from __future__ import annotations

import json
from typing import Any

from engine import Engine


def batching_map(batcher: dict[str, Any], *, jsonata: bool = False) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Map",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Echo",
            "States": {"Echo": {"Type": "Pass", "End": True}},
        },
        "ItemBatcher": batcher,
        "End": True,
    }
    if jsonata:
        state["Items"] = "{% $states.input.items %}"
        return {"QueryLanguage": "JSONata", "StartAt": "Batch", "States": {"Batch": state}}
    state["ItemsPath"] = "$.items"
    return {"StartAt": "Batch", "States": {"Batch": state}}


def run(sqlite_url: str, definition: dict[str, Any], payload: Any) -> Any:
    with Engine(sqlite_url, worker=False) as engine:
        record = engine.run_sync(definition, payload)
        (run,) = engine.store.list_map_runs(record.execution_id)
    assert record.status == "SUCCEEDED", record.cause
    # One child execution per batch.
    return json.loads(record.output or ""), run.total


def test_max_items_and_batch_input(sqlite_url: str) -> None:
    definition = batching_map({"MaxItemsPerBatch": 2, "BatchInput": {"job.$": "$.job", "fixed": 1}})
    output, children = run(sqlite_url, definition, {"job": "j1", "items": [1, 2, 3, 4, 5]})
    assert children == 3
    assert output == [
        {"BatchInput": {"job": "j1", "fixed": 1}, "Items": [1, 2]},
        {"BatchInput": {"job": "j1", "fixed": 1}, "Items": [3, 4]},
        {"BatchInput": {"job": "j1", "fixed": 1}, "Items": [5]},
    ]


def test_max_bytes_and_path(sqlite_url: str) -> None:
    definition = batching_map({"MaxItemsPerBatchPath": "$.size", "MaxInputBytesPerBatch": 40})
    items = ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"]
    output, children = run(sqlite_url, definition, {"size": 10, "items": items})
    # {"Items":["aaaaaaaaaa","bbbbbbbbbb"]} is 37 bytes; a third item would pass 40.
    assert output == [{"Items": items[:2]}, {"Items": items[2:]}]
    assert children == 2


def test_jsonata_batcher(sqlite_url: str) -> None:
    definition = batching_map(
        {
            "MaxItemsPerBatch": "{% $states.input.size %}",
            "BatchInput": {"n": "{% $count($states.input.items) %}"},
        },
        jsonata=True,
    )
    output, _ = run(sqlite_url, definition, {"size": 3, "items": [1, 2, 3, 4]})
    assert output == [
        {"BatchInput": {"n": 4}, "Items": [1, 2, 3]},
        {"BatchInput": {"n": 4}, "Items": [4]},
    ]
