"""Record the golden histories in tests/histories/*.json (run by hand, then commit the files).

    python -m tests.histories.record [NAME ...]

With names, only those machines are recorded (the others keep their files).

Each file holds a definition, its input, the journal of a real execution and
its history events. tests/engine/test_golden_histories.py replays them
against the current interpreter: a change that would make an in-flight
execution replay differently (journal keys, walk order, data flow) fails it.
Re-record only when such a change is intended, and say so in the commit.

The commit of a SUCCEEDED end writes no journal rows (`engine.runner`): the
recorder takes that commit's rows from `Runtime.unwritten_rows` and the
earlier commits' from the table, so each file holds the complete journal.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from activities import ActivityContext, Registry
from engine import Engine
from engine.store.schema import journal

HERE = Path(__file__).parent

MACHINES: dict[str, tuple[dict[str, Any], Any]] = {
    "task_retry_catch": (
        {
            "StartAt": "Flaky",
            "States": {
                "Flaky": {
                    "Type": "Task",
                    "Resource": "flaky",
                    "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 2}],
                    "ResultPath": "$.flaky",
                    "Next": "Boom",
                },
                "Boom": {
                    "Type": "Task",
                    "Resource": "boom",
                    "Catch": [
                        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Done"}
                    ],
                    "Next": "Done",
                },
                "Done": {"Type": "Succeed"},
            },
        },
        {"order": 7},
    ),
    "parallel_map_choice": (
        {
            "StartAt": "Fan",
            "States": {
                "Fan": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "Each",
                            "States": {
                                "Each": {
                                    "Type": "Map",
                                    "ItemsPath": "$.items",
                                    "ItemSelector": {
                                        "i.$": "$$.Map.Item.Index",
                                        "v.$": "$$.Map.Item.Value",
                                    },
                                    "ItemProcessor": {
                                        "StartAt": "Double",
                                        "States": {
                                            "Double": {
                                                "Type": "Task",
                                                "Resource": "double",
                                                "End": True,
                                            }
                                        },
                                    },
                                    "End": True,
                                }
                            },
                        },
                        {
                            "StartAt": "Pick",
                            "States": {
                                "Pick": {
                                    "Type": "Choice",
                                    "Choices": [
                                        {"Variable": "$.n", "NumericGreaterThan": 2, "Next": "Big"}
                                    ],
                                    "Default": "Small",
                                },
                                "Big": {"Type": "Pass", "Result": "big", "End": True},
                                "Small": {"Type": "Pass", "Result": "small", "End": True},
                            },
                        },
                    ],
                    "Next": "Wait",
                },
                "Wait": {"Type": "Wait", "Seconds": 1, "End": True},
            },
        },
        {"items": [1, 2, 3], "n": 5},
    ),
    "jsonata_variables_nondeterminism": (
        {
            "QueryLanguage": "JSONata",
            "StartAt": "Draw",
            "States": {
                "Draw": {
                    "Type": "Pass",
                    "Assign": {"id": "{% $uuid() %}", "dice": "{% $floor($random() * 6) + 1 %}"},
                    "Next": "Use",
                },
                "Use": {
                    "Type": "Task",
                    "Resource": "double",
                    "Arguments": {"v": "{% $dice %}", "id": "{% $id %}"},
                    "Output": {"id": "{% $id %}", "doubled": "{% $states.result %}"},
                    "End": True,
                },
            },
        },
        {},
    ),
}

# A Map retried then caught, and a Parallel caught, side by side: the failure
# events Map and Parallel record (issue 18 moved MapStateFailed to after the
# last retry; map_retry_catch_before_issue18.json was recorded before that).
MACHINES["map_retry_catch"] = (
    {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Parallel",
                "Branches": [
                    {
                        "StartAt": "Each",
                        "States": {
                            "Each": {
                                "Type": "Map",
                                "MaxConcurrency": 1,
                                "ItemProcessor": {
                                    "StartAt": "Check",
                                    "States": {
                                        "Check": {
                                            "Type": "Choice",
                                            "Choices": [
                                                {"Variable": "$", "NumericEquals": 2, "Next": "Bad"}
                                            ],
                                            "Default": "Double",
                                        },
                                        "Double": {
                                            "Type": "Task",
                                            "Resource": "double",
                                            "End": True,
                                        },
                                        "Bad": {"Type": "Fail", "Error": "Bad", "Cause": "two"},
                                    },
                                },
                                "Retry": [
                                    {"ErrorEquals": ["Bad"], "IntervalSeconds": 1, "MaxAttempts": 1}
                                ],
                                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                                "End": True,
                            },
                            "Caught": {"Type": "Pass", "End": True},
                        },
                    },
                    {
                        "StartAt": "Fails",
                        "States": {
                            "Fails": {
                                "Type": "Parallel",
                                "Branches": [
                                    {
                                        "StartAt": "F",
                                        "States": {"F": {"Type": "Fail", "Error": "Inner"}},
                                    }
                                ],
                                "Catch": [{"ErrorEquals": ["Inner"], "Next": "Recovered"}],
                                "End": True,
                            },
                            "Recovered": {"Type": "Pass", "End": True},
                        },
                    },
                ],
                "End": True,
            }
        },
    },
    [1, 2],
)


def registry() -> Registry:
    calls: dict[str, int] = {}
    result = Registry()

    def flaky(value: Any, context: ActivityContext) -> Any:
        calls[context.execution_id] = calls.get(context.execution_id, 0) + 1
        if calls[context.execution_id] < 2:
            raise FlakyError("first try")
        return {"ok": True}

    def boom(value: Any) -> Any:
        raise ValueError("always")

    def double(value: Any) -> Any:
        return {"doubled": value}

    result.register("flaky", flaky)
    result.register("boom", boom)
    result.register("double", double)
    return result


class FlakyError(Exception):
    pass


FlakyError.__name__ = "Flaky"


def record(names: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/golden.db"
        with Engine(url, registry=registry(), worker=False) as engine:
            unwritten: dict[str, list[tuple[str, str]]] = {}
            engine.runtime.unwritten_rows = lambda execution_id, rows: unwritten.setdefault(
                execution_id, []
            ).extend(rows)
            for name, (definition, payload) in MACHINES.items():
                if names and name not in names:
                    continue
                done = engine.run_sync(definition, payload, name=name)
                assert done.status == "SUCCEEDED", (name, done.cause)
                events = engine.history_sync(done)
                with engine.store._engine.connect() as conn:
                    stored = conn.execute(
                        sa.select(journal.c.key, journal.c.value).where(
                            journal.c.execution_id == done.execution_id
                        )
                    ).all()
                rows = [(row.key, row.value) for row in stored]
                # In key order, as the table's primary key returned them all before.
                rows = sorted(rows + unwritten.pop(done.execution_id))
                document = {
                    "definition": definition,
                    "input": payload,
                    "output": json.loads(done.output or "null"),
                    "journal": {key: json.loads(value) for key, value in rows},
                    "events": [
                        {"id": e.event_id, "previous": e.previous_event_id, "type": e.type}
                        for e in events
                    ],
                }
                (HERE / f"{name}.json").write_text(
                    msgspec.json.format(msgspec.json.encode(document)).decode() + "\n"
                )
                print(f"recorded {name}: {len(rows)} journal entries, {len(events)} events")


if __name__ == "__main__":
    record(sys.argv[1:])
