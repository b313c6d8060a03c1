"""Semantics audit, intrinsic functions: which string-literal escapes AWS accepts.

AWS rejects at CreateStateMachine an intrinsic whose string literal holds
`\\"` (LocalStack's AWS-recorded snapshot
`scenarios/test_base_scenarios.py::test_illegal_escapes`: "The value for the
field 'parsed.$' must be a valid JSONPath or a valid intrinsic function
call"); the escapes the specification names (`\\'`, `\\{`, `\\}`, `\\\\`) stay
accepted.
"""

from __future__ import annotations

from typing import Any

import pytest

from statemachine.validate import is_valid, validate


def _machine(intrinsic: str) -> dict[str, Any]:
    return {
        "StartAt": "IntrinsicEscape",
        "States": {
            "IntrinsicEscape": {
                "Type": "Pass",
                "Parameters": {"parsed.$": intrinsic},
                "End": True,
            }
        },
    }


@pytest.mark.parametrize(
    "intrinsic",
    [
        """States.StringToJson('{"text":"An \\"escaped double quote\\" here"}')""",
        """States.Format('He said, \\"Hello, {}!\\"', 'Test \\"Name\\" Here')""",
    ],
)
def test_escaped_double_quote_in_an_intrinsic_literal_is_rejected(intrinsic: str) -> None:
    assert '\\"' in intrinsic
    diagnostics = validate(_machine(intrinsic))
    errors = [d for d in diagnostics if d.severity == "ERROR"]
    assert not is_valid(diagnostics)
    assert [d.location for d in errors] == ["/States/IntrinsicEscape/Parameters/parsed.$"]
    assert "must be a valid JSONPath or a valid intrinsic function call" in errors[0].message


@pytest.mark.parametrize(
    "intrinsic",
    [
        "States.Format('it\\'s {}', 'x')",
        "States.Format('\\{\\} {}', 'x')",
        "States.Format('back\\\\slash {}', 'x')",
        """States.StringToJson('{"text":"plain"}')""",
    ],
)
def test_specified_escapes_stay_accepted(intrinsic: str) -> None:
    assert is_valid(validate(_machine(intrinsic)))
