"""Semantics audit, query languages: AWS's words and locations for a field of the other language.

ValidateStateMachineDefinition on AWS reports a field that belongs to the
other query language, and a JSONPath state under a JSONata machine, at the
state (`/States/X`), not at the field; the QueryLanguage downgrade was the
divergence the first audit recorded (docs/SEMANTICS_AUDIT.md, "Diagnostic
locations"), and the messages are AWS's as measured against the real
service (``The QueryLanguage is set to 'JSONPath', but field 'Output' is
only supported for the 'JSONata' QueryLanguage``). A QueryLanguage value
outside the two is reported at the field, and one on an ItemProcessor or a
branch (which are not states) at that object.
"""

from __future__ import annotations

from typing import Any

import pytest

from statemachine.validate import is_valid, validate

SVF = "SCHEMA_VALIDATION_FAILED"
PASS = {"Type": "Pass", "End": True}


def _one(state: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"StartAt": "X", "States": {"X": state}, **top}


def _answer(definition: dict[str, Any]) -> list[tuple[str, str, str]]:
    diagnostics = validate(definition)
    assert not is_valid(diagnostics)
    return [(d.code, d.location, d.message) for d in diagnostics]


def _other(ql: str, field: str) -> str:
    other = "JSONPath" if ql == "JSONata" else "JSONata"
    return (
        f"The QueryLanguage is set to '{ql}', but field '{field}' is only supported "
        f"for the '{other}' QueryLanguage"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("InputPath", "$"), ("OutputPath", "$"), ("ResultPath", "$.r"), ("Parameters", {}),
     ("Result", 1)],
)  # fmt: skip
def test_a_jsonpath_field_on_a_jsonata_state_is_named_at_the_state(field: str, value: Any) -> None:
    definition = _one({**PASS, field: value}, QueryLanguage="JSONata")
    assert _answer(definition) == [(SVF, "/States/X", _other("JSONata", field))]


def test_jsonpath_only_fields_of_task_wait_map_and_fail_too() -> None:
    task = {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": True}
    cases = [
        ({**task, "ResultSelector": {}}, "ResultSelector"),
        ({"Type": "Wait", "SecondsPath": "$.s", "End": True}, "SecondsPath"),
        ({"Type": "Fail", "ErrorPath": "$.e"}, "ErrorPath"),
        (
            {"Type": "Map", "ItemsPath": "$.i", "End": True,
             "ItemProcessor": {"StartAt": "P", "States": {"P": PASS}}},
            "ItemsPath",
        ),
    ]  # fmt: skip
    for state, field in cases:
        answer = _answer(_one(state, QueryLanguage="JSONata"))
        assert (SVF, "/States/X", _other("JSONata", field)) in answer, answer


@pytest.mark.parametrize("field", ["Output", "Arguments"])
def test_a_jsonata_field_on_a_jsonpath_state_is_named_at_the_state(field: str) -> None:
    state = (
        {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": True}
        if field == "Arguments"
        else dict(PASS)
    )
    assert _answer(_one({**state, field: {}})) == [(SVF, "/States/X", _other("JSONPath", field))]


def test_a_jsonpath_choice_rule_with_a_condition_gets_the_same_words() -> None:
    choice = {
        "Type": "Choice",
        "Choices": [{"Condition": "{% true %}", "Next": "E"}],
        "Default": "E",
    }
    answer = _answer({"StartAt": "X", "States": {"X": choice, "E": PASS}})
    assert (SVF, "/States/X/Choices/0/Condition", _other("JSONPath", "Condition")) in answer


def test_the_downgrade_is_the_whole_answer_at_the_state() -> None:
    state = {**PASS, "QueryLanguage": "JSONPath", "Output": {"v": "{% 1 %}"}}
    assert _answer(_one(state, QueryLanguage="JSONata")) == [
        (
            SVF,
            "/States/X",
            "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
        )
    ]


def test_a_query_language_outside_the_two_is_named_at_the_field() -> None:
    one_of = "Value should be one of the following: [JSONPath, JSONata]"
    assert _answer(_one(PASS, QueryLanguage="XPath")) == [(SVF, "/QueryLanguage", one_of)]
    assert _answer(_one({**PASS, "QueryLanguage": "jsonpath"})) == [
        (SVF, "/States/X/QueryLanguage", one_of)
    ]
    assert _answer(_one({**PASS, "QueryLanguage": 1})) == [
        (SVF, "/States/X/QueryLanguage", "Expected value of type [STRING]")
    ]


def test_a_query_language_on_a_processor_or_branch_is_refused_there() -> None:
    inner = {"StartAt": "P", "States": {"P": PASS}, "QueryLanguage": "JSONata"}
    map_state = {"Type": "Map", "ItemProcessor": inner, "End": True}
    parallel = {"Type": "Parallel", "Branches": [inner], "End": True}
    not_supported = "Field 'QueryLanguage' is not supported"
    assert _answer(_one(map_state)) == [(SVF, "/States/X/ItemProcessor", not_supported)]
    assert _answer(_one(parallel)) == [(SVF, "/States/X/Branches/0", not_supported)]
