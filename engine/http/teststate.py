"""The HTTP API's TestState: AWS's request members in, `engine.teststate`'s answer out.

The one implementation is `engine.teststate` (also behind `Engine.test_state`
and ``stepwise test-state``); this face reads the members, runs it on the
server's engine (the machine is stored as ``stepwise-teststate-<digest>``
and hidden from ListStateMachines) and answers. Mocks and a custom context
object are not served here yet: the server's registry is shared.
"""

from __future__ import annotations

from typing import Any

from engine.http.protocol import AwsError, Members
from engine.http.service import Operation, Service
from engine.teststate import MACHINE_PREFIX, TestStateRequest, run_test_state

__all__ = ["MACHINE_PREFIX", "OPERATIONS"]


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
    request = TestStateRequest(
        definition=text,
        input=given_input,
        state_name=state_name,
        inspection_level=level or "INFO",
        variables=variables_text,
    )
    return await run_test_state(service.engine, request, timeout=service.sync_timeout_seconds)


OPERATIONS: dict[str, Operation] = {"TestState": test_state}
