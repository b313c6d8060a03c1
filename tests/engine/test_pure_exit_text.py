"""A Pass's Exited event says what the Pass output, even when its input changed in place meanwhile.

A JSONPath Pass or Choice whose output is its input reuses the entered
event's text (`exit_state(pure=True)`): nothing can run between its entry
and exit. A JSONata one may leave the loop (a regex runs in a thread), and
a Parallel sibling's handler may change the shared input in place
meanwhile: its exit encodes the output as it is then.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from activities import Registry
from engine import Engine

# A regex sends it straight off the loop (a thread), where it takes a few ms.
SLOW = "{% $count([1..3000].($string($) & 'x')) + ($contains('a', /a/) ? 1 : 0) %}"

MACHINE = {
    "QueryLanguage": "JSONata",
    "StartAt": "Both",
    "States": {
        "Both": {
            "Type": "Parallel",
            "End": True,
            "Branches": [
                {
                    "StartAt": "Touch",
                    "States": {
                        "Touch": {
                            "Type": "Task",
                            "Resource": "touch",
                            "Output": "{% $states.input %}",
                            "End": True,
                        }
                    },
                },
                {
                    "StartAt": "Slow",
                    "States": {"Slow": {"Type": "Pass", "Assign": {"c": SLOW}, "End": True}},
                },
            ],
        }
    },
}


def test_a_jsonata_pass_exit_records_its_output_after_a_sibling_changed_it(tmp_path: Any) -> None:
    registry = Registry()

    async def touch(event: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.005)  # while the sibling Pass evaluates off the loop
        event["touched"] = True  # a handler changing its input in place
        return {}

    registry.register("touch", touch)
    with Engine(f"sqlite:///{tmp_path}/x.db", registry=registry, worker=False) as engine:
        record = engine.run_sync(MACHINE, {"n": 1})
        events = engine.history_sync(record)
    assert record.status == "SUCCEEDED", (record.error, record.cause)
    slow_exit = next(
        e for e in events if e.type == "PassStateExited" and e.details["name"] == "Slow"
    )
    branch_output = json.loads(record.output or "")[1]
    assert json.loads(slow_exit.details["output"]) == branch_output
