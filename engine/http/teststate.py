"""The HTTP API's TestState: AWS's request members in, `engine.teststate`'s answer out.

The one implementation is `engine.teststate` (also behind `Engine.test_state`
and ``stepwise test-state``); this face reads the members, runs it on the
server's engine (the machine is stored as ``stepwise-teststate-<digest>``
and hidden from ListStateMachines) and answers. A ``mock`` (``result`` or
``errorOutput``) runs in a throwaway store with the mock standing in for
the Task's Resource (`Engine.test_state_request`), so concurrent requests
never see each other's mocks. Stepwise's Resources are registered handlers
with no AWS API model, so ``fieldValidationMode`` has no schema to check a
mocked result against: every mode accepts any JSON result. A custom
``context`` object, ``stateConfiguration`` and ``revealSecrets`` (an HTTP
Task's credentials are never shown) are refused with a ValidationException.
"""

from __future__ import annotations

from typing import Any

from engine.http.protocol import AwsError, Members
from engine.http.service import Operation, Service
from engine.http.validation import check_role_arn
from engine.teststate import MACHINE_PREFIX, TestStateRequest, run_test_state

__all__ = ["MACHINE_PREFIX", "OPERATIONS"]


async def test_state(service: Service, members: Members) -> dict[str, Any]:
    text = members.required_string("definition", min_length=1, max_length=1_048_576)
    check_role_arn(members.string("roleArn", max_length=256))
    given_input = members.string("input", default="{}", max_length=262_144) or "{}"
    level = members.string("inspectionLevel", default="INFO", choices=["INFO", "DEBUG", "TRACE"])
    state_name = members.string("stateName", min_length=1, max_length=80)
    variables_text = members.string("variables", max_length=262_144)
    for unsupported in ("context", "stateConfiguration"):
        if members.body.get(unsupported) is not None:
            raise AwsError(
                "ValidationException", f"Stepwise's TestState does not support '{unsupported}' yet"
            )
    if members.boolean("revealSecrets", default=False):
        raise AwsError(
            "ValidationException", "Stepwise's TestState never reveals an HTTP Task's secrets"
        )
    mock_result, mock_error, mock_cause = _mock(members)
    request = TestStateRequest(
        definition=text,
        input=given_input,
        state_name=state_name,
        inspection_level=level or "INFO",
        variables=variables_text,
        mock_result=mock_result,
        mock_error=mock_error,
        mock_cause=mock_cause,
    )
    timeout = service.sync_timeout_seconds
    if request.mocked:
        return await service.engine.test_state_request(request, timeout=timeout)
    return await run_test_state(service.engine, request, timeout=timeout)


def _mock(members: Members) -> tuple[str | None, str | None, str | None]:
    """(result, error, cause) of the request's ``mock`` member (all None without one)."""
    given = members.body.get("mock")
    if given is None:
        return None, None, None
    if not isinstance(given, dict):
        raise AwsError("SerializationException", "'mock' must be an object")
    mock = Members(given, at="mock")
    mock.string("fieldValidationMode", choices=["STRICT", "PRESENT", "NONE"])
    result = mock.string("result", max_length=262_144)
    error_output = given.get("errorOutput")
    if (result is None) == (error_output is None):
        raise AwsError("ValidationException", "A mock needs exactly one of result or errorOutput")
    if result is not None:
        return result, None, None
    if not isinstance(error_output, dict):
        raise AwsError("SerializationException", "'mock.errorOutput' must be an object")
    output = Members(error_output, at="mock.errorOutput")
    error = output.string("error", max_length=256) or ""
    return None, error, output.string("cause", max_length=32_768)


OPERATIONS: dict[str, Operation] = {"TestState": test_state}
