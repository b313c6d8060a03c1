"""TestState: run one state with an input and answer its output, next state and status.

The state (given alone, or as ``stateName`` of a whole machine) runs through
the engine's own interpreter, not a second one: it becomes the start of a
small machine in which every transition it can take (Next, Default, a
Choice rule's Next) leads to a Succeed stub, and every Catch to another
stub, so the history says which way it went and the execution's output is
the state's output. As on AWS the state does not retry (its Retry is
dropped; an error a retrier would have caught answers ``RETRIABLE``) and a
Wait does not wait. ``variables`` are assigned by a Pass state before it.
The machine is stored as ``stepwise-teststate-<digest>`` and hidden from
ListStateMachines. Mocks and a custom context object are not supported yet.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from typing import Any

import anyio

from engine.http.protocol import AwsError, Members
from engine.http.service import Operation, Service
from engine.store import Event, ExecutionRecord, ExecutionStatus

__all__ = ["MACHINE_PREFIX", "OPERATIONS"]

MACHINE_PREFIX = "stepwise-teststate-"
_TYPES = {"Task", "Pass", "Wait", "Choice", "Succeed", "Fail", "Map", "Parallel"}
_NEXT_STUB = "__stepwise_next_"
_CATCH_STUB = "__stepwise_caught_"
_INIT = "__stepwise_variables"


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidDefinition", f"Invalid State Machine Definition: '{message}'")


def _state_to_test(definition: Any, state_name: str | None) -> tuple[str, dict[str, Any], Any]:
    """The state's name, its definition, and the machine's QueryLanguage (or None)."""
    if not isinstance(definition, dict):
        raise _invalid("the definition must be a JSON object")
    if "States" in definition:
        states = definition.get("States")
        if state_name is None or not isinstance(states, dict) or state_name not in states:
            raise _invalid(f"stateName {state_name!r} names no state of the machine")
        state = states[state_name]
        language = definition.get("QueryLanguage")
    else:
        state, language = definition, None
        state_name = state_name or "TestState"
    if not isinstance(state, dict) or state.get("Type") not in _TYPES:
        raise _invalid(f"TestState runs a state of type {', '.join(sorted(_TYPES))}")
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


async def test_state(service: Service, members: Members) -> dict[str, Any]:
    text = members.required_string("definition", min_length=1, max_length=1_048_576)
    members.string("roleArn", max_length=256)
    given_input = members.string("input", default="{}", max_length=262_144) or "{}"
    level = members.string("inspectionLevel", default="INFO", choices=["INFO", "DEBUG", "TRACE"])
    state_name = members.string("stateName", min_length=1, max_length=80)
    variables_text = members.string("variables", max_length=262_144)
    for unsupported in ("mock", "context", "stateConfiguration"):
        if members.body.get(unsupported) is not None:
            raise AwsError(
                "ValidationException", f"Stepwise's TestState does not support '{unsupported}' yet"
            )
    try:
        definition = json.loads(text)
    except ValueError as exc:
        raise _invalid(f"INVALID_JSON_DESCRIPTION: {exc}") from None
    try:
        value = json.loads(given_input)
    except ValueError as exc:
        raise AwsError("InvalidExecutionInput", f"Invalid input: '{exc}'") from None
    variables: dict[str, Any] | None = None
    if variables_text is not None:
        try:
            variables = json.loads(variables_text)
        except ValueError:
            variables = None
        if not isinstance(variables, dict):
            raise AwsError("ValidationException", "variables must be a JSON object")
    name, state, language = _state_to_test(definition, state_name)
    machine, stubs = _test_machine(name, state, language, variables)
    encoded = json.dumps(machine, sort_keys=True)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:16]
    execution_name = str(uuid.uuid4())
    record: ExecutionRecord | None = None
    with anyio.move_on_after(service.sync_timeout_seconds):
        record = await service.engine.run(
            machine, value, name=execution_name, machine_name=f"{MACHINE_PREFIX}{digest}"
        )
    if record is None:
        # A state waiting on something that never comes (a callback, say) is stopped.
        record = await service.engine.stop(
            execution_name, error="States.Timeout", cause="TestState waited too long"
        )
    events = await service.engine.lifecycle.history(record)
    answer = _answer(record, events, state, stubs)
    if level != "INFO":
        inspection: dict[str, Any] = {"input": given_input}
        if variables_text is not None:
            inspection["variables"] = variables_text
        answer["inspectionData"] = inspection
    return answer


OPERATIONS: dict[str, Operation] = {"TestState": test_state}
