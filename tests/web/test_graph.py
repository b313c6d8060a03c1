"""The graph the web view draws from a definition: nesting, rule labels, Catch edges."""

from __future__ import annotations

import json

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
