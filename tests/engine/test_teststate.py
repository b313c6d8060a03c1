"""TestState: one state run alone, through `Engine.test_state` and ``stepwise test-state``.

Against the conformance set: every recorded single-state machine whose
state's data flow (InputPath, Parameters, Result, ResultSelector,
ResultPath, OutputPath, intrinsics, JSONata, Assign) AWS recorded gives the
same output when that state is run alone. Mocks stand in for a Task, a
caught error answers CAUGHT_ERROR with the catcher's Next, a retriable one
RETRIABLE, and DEBUG shows the value after each data-flow step. No
database is given: TestState needs none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.errors import InvalidTestState, TestStateValidation
from engine.teststate import TestStateRequest, run_test_state
from tests.conformance.support import case_files, load_case, mismatches
from tests.engine.test_cli import invoke


def _single_state_cases() -> list[dict[str, Any]]:
    cases = []
    for path in case_files("local"):
        case = load_case(path)
        states = case["definition"].get("States", {})
        text = json.dumps(case["definition"])
        if len(states) != 1 or next(iter(states.values())).get("Type") != "Pass":
            continue
        # The context object and random values differ between a run and a test.
        if any(mark in text for mark in ("$$", "$states.context", "UUID", "Random")):
            continue
        if case["expected"]["status"] != "SUCCEEDED":
            continue
        cases.append(case)
    return cases


CASES = _single_state_cases()


def test_the_data_flow_cases_of_the_conformance_set(tmp_path: Path) -> None:
    assert len(CASES) >= 50  # the set has ~100; a filter that finds few checks little

    async def scenario() -> list[str]:
        problems = []
        async with Engine(f"sqlite:///{tmp_path / 'ts.db'}", worker=False) as engine:
            for case in CASES:
                name = next(iter(case["definition"]["States"]))
                request = TestStateRequest(
                    definition=json.dumps(case["definition"]),
                    input=json.dumps(case["input"]),
                    state_name=name,
                )
                answer = await run_test_state(engine, request)
                assert answer["status"] == "SUCCEEDED", (case["id"], answer)
                assert answer["nextState"] is None
                found = mismatches(case, "SUCCEEDED", answer["output"], None, None)
                problems += [f"{case['id']}: {p}" for p in found]
        return problems

    assert anyio.run(scenario) == []


MACHINE = {
    "StartAt": "Fetch",
    "States": {
        "Fetch": {
            "Type": "Task",
            "Resource": "fetch",
            "InputPath": "$.request",
            "Parameters": {"id.$": "$.id", "kind": "order"},
            "ResultSelector": {"total.$": "$.amount"},
            "ResultPath": "$.fetched",
            "Retry": [{"ErrorEquals": ["Busy"], "MaxAttempts": 3}],
            "Catch": [{"ErrorEquals": ["Missing"], "Next": "NotFound"}],
            "Next": "Report",
        },
        "Report": {"Type": "Succeed"},
        "NotFound": {"Type": "Fail"},
    },
}


def test_mocks_statuses_and_inspection_data() -> None:
    engine = Engine(worker=False)
    run = engine.test_state  # needs no database: no `with Engine(...)`
    given = {"request": {"id": 7}}

    async def scenario() -> None:
        ok = await run(
            MACHINE, given, state_name="Fetch", mock_result={"amount": 12}, inspection_level="DEBUG"
        )
        assert ok["status"] == "SUCCEEDED"
        assert ok["nextState"] == "Report"
        assert json.loads(ok["output"]) == {"request": {"id": 7}, "fetched": {"total": 12}}
        inspection = {k: json.loads(v) for k, v in ok["inspectionData"].items()}
        assert inspection == {
            "input": given,
            "afterInputPath": {"id": 7},
            "afterParameters": {"id": 7, "kind": "order"},
            "result": {"amount": 12},
            "afterResultSelector": {"total": 12},
            "afterResultPath": {"request": {"id": 7}, "fetched": {"total": 12}},
        }
        caught = await run(
            MACHINE, given, state_name="Fetch", mock_error="Missing", mock_cause="no order 7"
        )
        assert (caught["status"], caught["nextState"]) == ("CAUGHT_ERROR", "NotFound")
        assert (caught["error"], caught["cause"]) == ("Missing", "no order 7")
        retriable = await run(MACHINE, given, state_name="Fetch", mock_error="Busy")
        assert (retriable["status"], retriable["error"]) == ("RETRIABLE", "Busy")
        failed = await run(MACHINE, given, state_name="Fetch", mock_error="Other", mock_cause="x")
        assert (failed["status"], failed["error"], failed["cause"]) == ("FAILED", "Other", "x")
        assert "inspectionData" not in failed

        pass_state = {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($x, 1)"}, "End": True}
        added = await run(pass_state, {}, variables={"x": 41})
        assert json.loads(added["output"]) == {"sum": 42}
        with pytest.raises(InvalidTestState):
            await run(MACHINE, given, state_name="Nope")
        with pytest.raises(TestStateValidation):
            await run(MACHINE, given, state_name="Report", mock_result=1)

    anyio.run(scenario)


def test_the_command_line(tmp_path: Path) -> None:
    definition = tmp_path / "machine.json"
    definition.write_text(json.dumps(MACHINE))
    base = ["test-state", str(definition), "--state", "Fetch", "--input", '{"request": {"id": 1}}']
    result = invoke([*base, "--mock-result", '{"amount": 5}', "--inspection-level", "debug"])
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "SUCCEEDED"
    assert json.loads(answer["inspectionData"]["afterResultSelector"]) == {"total": 5}
    caught = json.loads(invoke([*base, "--mock-error", "Missing"]).stdout)
    assert caught["status"] == "CAUGHT_ERROR"
    missing = invoke(["test-state", str(definition), "--state", "Nope"])
    assert missing.exit_code == 2
    assert missing.stderr.startswith("stepwise: error: InvalidDefinition:")
