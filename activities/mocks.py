"""Mock mode: answer Tasks from canned responses, as AWS Step Functions Local does.

The configuration is Step Functions Local's MockedResponses file::

    {"StateMachines": {"Name": {"TestCases": {"Case": {"StateName": "Response"}}}},
     "MockedResponses": {"Response": {"0": {"Return": …},
                                      "1-2": {"Throw": {"Error": …, "Cause": …}}}}}

A run selects one test case; a Task state named in it gets, on its n-th
invocation (0-based, across retries and iterations), the response whose key
covers n. A state the test case does not name runs its real handler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MockConfig", "MockConfigError", "MockResponse"]


class MockConfigError(ValueError):
    """The mock configuration is malformed."""


@dataclass(frozen=True)
class MockResponse:
    """One canned answer: a result (`value`) or a failure (`error`, `cause`)."""

    value: Any = None
    error: str | None = None
    cause: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def _span(key: str) -> tuple[int, int]:
    low, _, high = key.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise MockConfigError(f"mock response key {key!r} is not 'N' or 'N-M'") from None


class MockConfig:
    """A parsed MockedResponses configuration."""

    def __init__(self, document: dict[str, Any]) -> None:
        if not isinstance(document, dict):
            raise MockConfigError("the mock configuration must be a JSON object")
        self.machines: dict[str, dict[str, dict[str, str]]] = {}
        for machine, body in (document.get("StateMachines") or {}).items():
            cases = (body or {}).get("TestCases") or {}
            self.machines[machine] = {case: dict(states) for case, states in cases.items()}
        self.responses: dict[str, list[tuple[int, int, MockResponse]]] = {}
        for name, spans in (document.get("MockedResponses") or {}).items():
            entries = []
            for key, answer in spans.items():
                low, high = _span(key)
                entries.append((low, high, self._response(name, key, answer)))
            self.responses[name] = entries
        for machine, cases in self.machines.items():
            for case, states in cases.items():
                for state, response in states.items():
                    if response not in self.responses:
                        raise MockConfigError(
                            f"{machine}/{case}/{state}: no MockedResponses entry {response!r}"
                        )

    @staticmethod
    def _response(name: str, key: str, answer: Any) -> MockResponse:
        if isinstance(answer, dict) and "Return" in answer:
            return MockResponse(value=answer["Return"])
        if isinstance(answer, dict) and isinstance(answer.get("Throw"), dict):
            throw = answer["Throw"]
            return MockResponse(error=str(throw.get("Error", "")), cause=throw.get("Cause"))
        raise MockConfigError(f"{name}/{key}: a response is {{'Return': …}} or {{'Throw': …}}")

    @classmethod
    def load(cls, source: str | Path | dict[str, Any]) -> MockConfig:
        """Parse a config from a dict or a JSON file path. Raises MockConfigError."""
        if isinstance(source, dict):
            return cls(source)
        try:
            return cls(json.loads(Path(source).read_text()))
        except (OSError, ValueError) as failure:
            if isinstance(failure, MockConfigError):
                raise
            raise MockConfigError(f"cannot read mock config {source}: {failure}") from None

    def test_case(self, machine: str, case: str) -> dict[str, str] | None:
        """The state → response map of `case` for `machine` (or the only machine that has it)."""
        cases = self.machines.get(machine)
        if cases is not None and case in cases:
            return cases[case]
        having = [c[case] for c in self.machines.values() if case in c]
        return having[0] if len(having) == 1 else None

    def response(self, machine: str, case: str, state: str, invocation: int) -> MockResponse | None:
        """The canned answer for `state`'s `invocation`-th call, or None when it is not mocked."""
        states = self.test_case(machine, case)
        if states is None or state not in states:
            return None
        for low, high, answer in self.responses[states[state]]:
            if low <= invocation <= high:
                return answer
        return None
