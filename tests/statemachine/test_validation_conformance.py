"""Validation verdicts agree with AWS on every recorded definition.

`conformance/validation/*.json` holds AWS's accept/reject verdicts; every
definition under `conformance/cases/` was accepted by AWS (it ran there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

from statemachine.validate import is_valid, validate
from tests.conformance.support import case_files, data_files

VERDICTS = data_files("validation")
CASES = case_files("*")


def _machine_type(record: dict[str, Any]) -> Literal["STANDARD", "EXPRESS"]:
    declared = record.get("state_machine_type")
    if declared in ("STANDARD", "EXPRESS"):
        return declared  # type: ignore[no-any-return]
    # The two rejected verdicts came from LocalStack's Express API test, which
    # creates EXPRESS machines; the recording left the type out.
    return "EXPRESS" if "sfn_api_express" in record.get("source", "") else "STANDARD"


def test_the_data_is_complete() -> None:
    assert len(VERDICTS) == 158
    assert len(CASES) == 398


@pytest.mark.parametrize("path", VERDICTS, ids=lambda p: p.stem)
def test_verdict_matches_aws(path: Path) -> None:
    record = json.loads(path.read_text())
    diagnostics = validate(record["definition"], machine_type=_machine_type(record))
    errors = [str(d) for d in diagnostics if d.severity == "ERROR"]
    assert is_valid(diagnostics) is record["valid"], errors


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_case_definition_is_accepted(path: Path) -> None:
    record = json.loads(path.read_text())
    diagnostics = validate(record["definition"], machine_type=_machine_type(record))
    assert [str(d) for d in diagnostics if d.severity == "ERROR"] == []


def test_express_rejections_name_the_resource() -> None:
    rejected = [p for p in VERDICTS if not json.loads(p.read_text())["valid"]]
    assert len(rejected) == 2
    for path in rejected:
        record = json.loads(path.read_text())
        diagnostics = validate(record["definition"], machine_type="EXPRESS")
        (state_name,) = record["definition"]["States"]
        assert [(d.code, d.location, d.message) for d in diagnostics] == [
            (
                "SCHEMA_VALIDATION_FAILED",
                f"/States/{state_name}/Resource",
                "Express state machine does not support '.sync' service integration",
            )
        ]
        # The same definition is fine for a STANDARD machine.
        assert is_valid(validate(record["definition"], machine_type="STANDARD"))
