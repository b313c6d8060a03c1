"""A handler's input is its own: changing it in place changes nothing the engine keeps.

The walk shares payloads instead of copying them (a Pass's Result is the
definition's own object, a Map's items are its input's). A handler that
changed its input in place once changed the cached definition for every
later execution, and what a Map recorded, while a resumed run (rebuilt from
the journal) would not have seen it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from activities import Registry
from engine import Engine

SHARED_RESULT = {
    "StartAt": "P",
    "States": {
        "P": {"Type": "Pass", "Result": {"shared": [1, 2]}, "Next": "T"},
        "T": {"Type": "Task", "Resource": "mutate", "ResultPath": "$.r", "End": True},
    },
}
MAP_OF_MUTATIONS = {
    "StartAt": "M",
    "States": {
        "M": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ResultPath": "$.results",
            "ItemProcessor": {
                "StartAt": "T",
                "States": {"T": {"Type": "Task", "Resource": "mutate", "End": True}},
            },
            "End": True,
        }
    },
}


def _mutating() -> Registry:
    registry = Registry()

    def mutate(value: Any) -> Any:
        value["mutated"] = True
        for field in value.values():
            if isinstance(field, list):
                field.append("m")
        return "done"

    registry.register("mutate", mutate)
    return registry


def test_a_handler_changing_its_input_never_changes_the_definition(tmp_path: Path) -> None:
    async def main() -> None:
        async with Engine(f"sqlite:///{tmp_path / 'e.db'}", registry=_mutating()) as engine:
            await engine.create_state_machine("m", SHARED_RESULT)
            outputs = []
            for _ in range(2):
                record = await engine.wait(await engine.start("m", {}))
                outputs.append(json.loads(record.output or "null"))
        assert outputs == [{"shared": [1, 2], "r": "done"}] * 2

    anyio.run(main)


def test_a_handler_changing_its_item_never_changes_what_the_map_records(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with Engine(f"sqlite:///{tmp_path / 'e.db'}", registry=_mutating()) as engine:
            await engine.create_state_machine("m", MAP_OF_MUTATIONS)
            given = {"items": [{"o": 1, "l": []}, {"o": 2, "l": []}]}
            record = await engine.wait(await engine.start("m", given))
        assert json.loads(record.output or "null") == {**given, "results": ["done", "done"]}

    anyio.run(main)
