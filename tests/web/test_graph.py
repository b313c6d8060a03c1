"""The graph the web view draws from a definition: nesting, rule labels, Catch edges."""

from __future__ import annotations

import json
from typing import Any

from engine.web import machine_graph


def test_parallel_and_map_nest_their_states_and_edges_meet_fork_and_join() -> None:
    definition = {
        "StartAt": "Outer",
        "States": {
            "Outer": {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "Inner",
                    "States": {
                        "Inner": {
                            "Type": "Parallel",
                            "Branches": [
                                {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}},
                                {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}},
                            ],
                            "End": True,
                        }
                    },
                },
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Oops"}],
                "Next": "Pick",
            },
            "Pick": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.n", "NumericEquals": 1, "Next": "Oops"},
                    {"And": [{"Variable": "$.a", "IsPresent": True}], "Next": "Oops"},
                ],
                "Default": "Oops",
            },
            "Oops": {"Type": "Fail", "Error": "E"},
        },
    }
    graph = machine_graph(json.dumps(definition))
    parent = {node["id"]: node["parent"] for node in graph["nodes"]}
    assert parent["Inner"] == "Outer#processor"
    assert parent["Outer#processor"] == "Outer"
    assert parent["A"] == "Inner#branch1" and parent["B"] == "Inner#branch2"
    assert parent["Inner#branch1"] == "Inner"
    edges = {(e["from"], e["to"], e["kind"], e["label"]) for e in graph["edges"]}
    assert graph["start"] == "Outer::fork"
    assert ("Outer::fork", "Inner::fork", "fork", "") in edges
    assert ("A", "Inner::join", "join", "") in edges
    assert ("B", "Inner::join", "join", "") in edges
    assert ("Inner::join", "Outer::join", "join", "") in edges
    assert ("Outer::join", "Oops", "catch", "States.ALL") in edges
    assert ("Outer::join", "Pick", "next", "") in edges
    assert ("Pick", "Oops", "choice", "$.n NumericEquals 1") in edges
    assert ("Pick", "Oops", "choice", "And($.a IsPresent true)") in edges
    assert ("Pick", "Oops", "default", "Default") in edges


def test_a_definition_that_is_not_json_draws_nothing() -> None:
    assert machine_graph("{not json") == {"nodes": [], "edges": [], "start": None}


def test_concurrent_map_iterations_keep_their_own_task_results(sqlite_url: str) -> None:
    from activities import ActivityContext, activity
    from engine import Engine
    from engine.web import state_outcomes

    @activity("tests.web.double")
    def double(value: Any, context: ActivityContext) -> int:
        return int(value) * 2

    definition = {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "Double",
                    "States": {
                        "Double": {"Type": "Task", "Resource": "tests.web.double", "End": True}
                    },
                },
                "End": True,
            }
        },
    }
    with Engine(sqlite_url) as engine:
        engine.create_state_machine_sync("doubles", definition)
        record = engine.wait_sync(engine.start_sync("doubles", [1, 2, 3, 4, 5]), timeout=60)
        aggregates = state_outcomes(record, engine.history_sync(record))
    assert record.status == "SUCCEEDED"
    double_state = aggregates["Double"]
    assert (double_state.entered, double_state.exited, double_state.outcome) == (5, 5, "succeeded")
    # Every visit's task result belongs to its own input, however the iterations interleaved.
    for visit in double_state.visits:
        (attempt,) = visit.attempts
        assert attempt.ended is not None
        assert int(attempt.output or "0") == 2 * int(visit.input or "0")
        assert visit.output == attempt.output
    assert aggregates["Each"].iterations == {"Started": 5, "Succeeded": 5}
