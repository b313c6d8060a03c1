"""TestState: run one state of a definition with an input, and answer as AWS's TestState does.

The one implementation behind `Engine.test_state`, ``stepwise test-state``
and the HTTP API's TestState. The state (given alone, or as `state_name` of
a whole machine) runs through the engine's own interpreter, not a second
one: it becomes the start of a small machine in which every transition it
can take (Next, Default, a Choice rule's Next) leads to a Succeed stub, and
every Catch to another stub, so the history says which way it went and the
execution's output is the state's output. As on AWS the state does not
retry (its Retry is dropped; an error a retrier would have caught answers
``RETRIABLE``) and a Wait does not wait. ``variables`` are assigned by a
Pass state before it. A mocked Task (`mock_result`, or `mock_error` and
`mock_cause`) answers with the mock instead of calling its Resource.
`run_test_state` runs it on a given engine: `Engine.test_state` gives it a
throwaway SQLite file, so no database is needed; the HTTP API its own. At
DEBUG and TRACE ``inspectionData`` shows the value after each data-flow
step (recomputed from the definition and the recorded task call); at TRACE
an unmocked ``http:invoke`` Task also shows the real ``request`` it sent
and the ``response`` it read (`activities.http.observing`; credential
header values redacted).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from activities import ActivityError
from activities.http import HTTP_RESOURCE, observing
from engine.errors import InvalidExecutionInput, InvalidTestState, TestStateValidation
from engine.runner import execution_arn
from engine.store import Event, ExecutionRecord, ExecutionStatus
from statemachine.build import load
from statemachine.dataflow import apply_input_path, evaluate_template
from statemachine.errors import StatesError
from statemachine.paths import apply_result_path


class EngineForTests(Protocol):
    """What running a test needs of an Engine (kept abstract: `engine.api` imports this module)."""

    async def run(
        self,
        definition: Any,
        input: Any = None,
        *,
        name: str | None = None,
        machine_name: str | None = None,
    ) -> ExecutionRecord: ...

    async def stop(
        self, execution: Any, *, error: str | None = None, cause: str | None = None
    ) -> ExecutionRecord: ...

    async def history(self, execution: Any) -> list[Event]: ...


__all__ = [
    "MACHINE_PREFIX",
    "MOCK_RESOURCE",
    "EngineForTests",
    "TestStateRequest",
    "mock_handler",
    "run_test_state",
]

MACHINE_PREFIX = "stepwise-teststate-"
INSPECTION_LEVELS = ("INFO", "DEBUG", "TRACE")
_TYPES = {"Task", "Pass", "Wait", "Choice", "Succeed", "Fail", "Map", "Parallel"}
_NEXT_STUB = "__stepwise_next_"
_CATCH_STUB = "__stepwise_caught_"
_INIT = "__stepwise_variables"
MOCK_RESOURCE = "stepwise-teststate-mock"


@dataclass(frozen=True)
class TestStateRequest:
    """One TestState call: what to run, on what, and how much to show."""

    __test__ = False  # not a pytest test class, despite the name

    definition: str
    input: str = "{}"
    state_name: str | None = None
    inspection_level: str = "INFO"
    variables: str | None = None
    mock_result: str | None = None
    mock_error: str | None = None
    mock_cause: str | None = None

    @property
    def mocked(self) -> bool:
        return self.mock_result is not None or self.mock_error is not None


def _state_to_test(definition: Any, state_name: str | None) -> tuple[str, dict[str, Any], Any]:
    """The state's name, its definition, and the machine's QueryLanguage (or None)."""
    if not isinstance(definition, dict):
        raise InvalidTestState(
            "Invalid State Machine Definition: 'the definition must be a JSON object'"
        )
    if "States" in definition:
        states = definition.get("States")
        if state_name is None or not isinstance(states, dict) or state_name not in states:
            raise InvalidTestState(
                "Invalid State Machine Definition: "
                f"'stateName {state_name!r} names no state of the machine'"
            )
        state = states[state_name]
        language = definition.get("QueryLanguage")
    else:
        state, language = definition, None
        state_name = state_name or "TestState"
    if not isinstance(state, dict) or state.get("Type") not in _TYPES:
        raise InvalidTestState(
            "Invalid State Machine Definition: "
            f"'TestState runs a state of type {', '.join(sorted(_TYPES))}'"
        )
    return state_name, state, language


def _test_machine(
    name: str, state: dict[str, Any], language: Any, variables: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The machine that runs `state` once, and what each stub state stands for."""
    tested = copy.deepcopy(state)
    tested.pop("Retry", None)
    if tested["Type"] == "Wait":
        keep = ("Comment", "QueryLanguage", "InputPath", "OutputPath", "Assign", "Output", "Next")
        tested = {"Type": "Pass", **{k: tested[k] for k in keep if k in tested}}
        if "Next" not in tested:
            tested["End"] = True
    stubs: dict[str, str] = {}

    def stub(target: Any, prefix: str) -> str:
        label = f"{prefix}{len(stubs)}"
        stubs[label] = str(target)
        return label

    if "Next" in tested:
        tested["Next"] = stub(tested["Next"], _NEXT_STUB)
    if "Default" in tested:
        tested["Default"] = stub(tested["Default"], _NEXT_STUB)
    for rule in tested.get("Choices") or []:
        if isinstance(rule, dict) and "Next" in rule:
            rule["Next"] = stub(rule["Next"], _NEXT_STUB)
    for catcher in tested.get("Catch") or []:
        if isinstance(catcher, dict) and "Next" in catcher:
            catcher["Next"] = stub(catcher["Next"], _CATCH_STUB)
    states: dict[str, Any] = {name: tested, **{label: {"Type": "Succeed"} for label in stubs}}
    machine: dict[str, Any] = {"StartAt": name, "States": states}
    if language is not None:
        machine["QueryLanguage"] = language
    if variables:
        states[_INIT] = {
            "Type": "Pass",
            "QueryLanguage": "JSONPath",
            "Assign": variables,
            "Next": name,
        }
        machine["StartAt"] = _INIT
    return machine, stubs


def _retriable(state: dict[str, Any], error: str | None) -> bool:
    for retrier in state.get("Retry") or []:
        if not isinstance(retrier, dict) or retrier.get("MaxAttempts") == 0:
            continue
        names = retrier.get("ErrorEquals") or []
        if "States.ALL" in names or error in names:
            return True
    return False


def _last_error(events: list[Event]) -> tuple[str | None, str | None]:
    for event in reversed(events):
        if "error" in event.details:
            return event.details.get("error"), event.details.get("cause")
    return None, None


def _answer(
    record: ExecutionRecord, events: list[Event], state: dict[str, Any], stubs: dict[str, str]
) -> dict[str, Any]:
    entered = [
        e.details.get("name")
        for e in events
        if e.type == "SucceedStateEntered" and e.details.get("name") in stubs
    ]
    if record.status == ExecutionStatus.SUCCEEDED:
        if entered and str(entered[0]).startswith(_CATCH_STUB):
            error, cause = _last_error(events)
            return {
                "status": "CAUGHT_ERROR",
                "output": record.output,
                "nextState": stubs[str(entered[0])],
                "error": error,
                "cause": cause,
            }
        return {
            "status": "SUCCEEDED",
            "output": record.output,
            "nextState": stubs[str(entered[0])] if entered else None,
        }
    status = "RETRIABLE" if _retriable(state, record.error) else "FAILED"
    return {"status": status, "error": record.error, "cause": record.cause}


class _Fixed:
    """The nondeterminism an inspection recomputation uses (never consulted twice alike)."""

    def uuid(self) -> str:
        return str(uuid.uuid4())

    def random(self) -> float:
        return 0.5

    def now(self) -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC)


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _inspection(
    name: str,
    state: dict[str, Any],
    language: Any,
    value: Any,
    variables: dict[str, Any],
    events: list[Event],
) -> dict[str, Any]:
    """The value after each data-flow step, as TestState's inspectionData names them."""
    data: dict[str, Any] = {}
    raw: dict[str, Any] = {"StartAt": name, "States": {name: copy.deepcopy(state)}}
    tested = raw["States"][name]
    for key in ("Next", "Default", "Catch", "Choices"):
        tested.pop(key, None)
    if tested.get("Type") in ("Pass", "Task", "Wait", "Map", "Parallel"):
        tested["End"] = True
    if language is not None:
        raw["QueryLanguage"] = language
    model: Any
    try:
        model = load(raw).scope.states[name]
    except Exception:
        return data
    context = {"State": {"Name": name}, "Execution": {"Input": value}}
    scheduled = next((e for e in events if e.type == "TaskScheduled"), None)
    succeeded = next((e for e in events if e.type == "TaskSucceeded"), None)
    try:
        if getattr(model, "jsonata", False):
            if scheduled is not None:
                data["afterArguments"] = scheduled.details.get("parameters")
            if succeeded is not None:
                data["result"] = succeeded.details.get("output")
            return data
        effective = value
        if getattr(model, "input_path_null", False):
            effective = {}
        elif getattr(model, "input_path", None) is not None:
            effective = apply_input_path(model.input_path, value, context, variables)
        data["afterInputPath"] = _encode(effective)
        parameters = getattr(model, "parameters", None)
        after_parameters = effective
        if scheduled is not None and "parameters" in scheduled.details:
            after_parameters = json.loads(scheduled.details["parameters"])
            data["afterParameters"] = scheduled.details["parameters"]
        elif parameters is not None:
            after_parameters = evaluate_template(
                parameters, effective, context, variables, _Fixed()
            )
            data["afterParameters"] = _encode(after_parameters)
        result: Any = after_parameters
        if model.type == "Pass" and getattr(model, "result", None) is not None:
            result = model.result
        if succeeded is not None:
            result = json.loads(succeeded.details.get("output") or "null")
        elif model.type not in ("Pass",):
            return data
        data["result"] = _encode(result)
        selector = getattr(model, "result_selector", None)
        if selector is not None:
            result = evaluate_template(selector, result, context, variables, _Fixed())
            data["afterResultSelector"] = _encode(result)
        if getattr(model, "result_path_null", False):
            merged = value
        elif getattr(model, "result_path", None) is not None:
            merged = apply_result_path(value, model.result_path, result)
        else:
            merged = result
        data["afterResultPath"] = _encode(merged)
    except (StatesError, ValueError):
        pass
    return data


def _parse(request: TestStateRequest) -> tuple[Any, Any, dict[str, Any] | None]:
    try:
        definition = json.loads(request.definition)
    except ValueError as exc:
        raise InvalidTestState(
            f"Invalid State Machine Definition: 'INVALID_JSON_DESCRIPTION: {exc}'"
        ) from None
    try:
        value = json.loads(request.input)
    except ValueError as exc:
        raise InvalidExecutionInput(f"Invalid input: '{exc}'") from None
    variables: dict[str, Any] | None = None
    if request.variables is not None:
        try:
            variables = json.loads(request.variables)
        except ValueError:
            variables = None
        if not isinstance(variables, dict):
            raise TestStateValidation("variables must be a JSON object")
    if request.inspection_level not in INSPECTION_LEVELS:
        raise TestStateValidation(f"inspectionLevel must be one of {', '.join(INSPECTION_LEVELS)}")
    return definition, value, variables


async def run_test_state(
    engine: EngineForTests, request: TestStateRequest, *, timeout: float = 60.0
) -> dict[str, Any]:
    """Run `request` on `engine` (its registry, its store) and return TestState's answer.

    A mock needs `mock_handler` registered on the engine as `MOCK_RESOURCE`
    (`Engine.test_state` does that). Raises InvalidTestState,
    InvalidExecutionInput and TestStateValidation.
    """
    definition, value, variables = _parse(request)
    name, state, language = _state_to_test(definition, request.state_name)
    if request.mocked:
        if state.get("Type") != "Task":
            raise TestStateValidation("a mock can only stand in for a Task state")
        state = {**state, "Resource": MOCK_RESOURCE}
    machine, stubs = _test_machine(name, state, language, variables)
    encoded = json.dumps(machine, sort_keys=True)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:16]
    execution_name = str(uuid.uuid4())
    machine_name = f"{MACHINE_PREFIX}{digest}"
    # At TRACE an HTTP Task's real request and response are shown, as AWS shows them.
    exchange: dict[str, dict[str, str]] = {}
    watched: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if request.inspection_level == "TRACE" and state.get("Resource") == HTTP_RESOURCE:
        watched = observing(
            execution_arn(machine_name, execution_name),
            lambda kind, shown: exchange.update({kind: shown}),
        )
    record: ExecutionRecord | None = None
    with watched, anyio.move_on_after(timeout):
        record = await engine.run(machine, value, name=execution_name, machine_name=machine_name)
    if record is None:
        # A state waiting on something that never comes (a callback, say) is stopped.
        record = await engine.stop(
            execution_name, error="States.Timeout", cause="TestState waited too long"
        )
    events = await engine.history(record)
    answer = _answer(record, events, state, stubs)
    if request.inspection_level != "INFO":
        inspection: dict[str, Any] = {"input": request.input}
        inspection.update(_inspection(name, state, language, value, variables or {}, events))
        if request.variables is not None:
            inspection["variables"] = request.variables
        inspection.update(exchange)  # "request" and "response", at TRACE
        answer["inspectionData"] = inspection
    return answer


def mock_handler(request: TestStateRequest) -> Callable[[Any], Any]:
    """The handler that stands in for the tested Task: the mock result, or the mock error."""
    mock_error, mock_cause = request.mock_error, request.mock_cause
    canned: Any = None
    if request.mock_result is not None:
        try:
            canned = json.loads(request.mock_result)
        except ValueError:
            raise TestStateValidation("the mock result must be JSON") from None

    def mock(value: Any) -> Any:
        if mock_error is not None:
            raise ActivityError(mock_error, mock_cause)
        return canned

    return mock
