"""Definition validation: every problem in a state machine, at once.

This module owns the public entry points (`validate`, `validate_text`,
`is_valid`) and the machine-wide checks: the top-level fields, each scope
(the machine, every Parallel branch, every Map processor) with its `StartAt`
and `States`, transition targets (`MISSING_TRANSITION_TARGET`), terminal
states (`MISSING_END_STATE`), state names (`INVALID_STATE_NAME`,
`DUPLICATE_STATE_NAME` across the whole machine), Map labels, reachability
(an `UNREACHABLE_STATE` warning, as AWS accepts such machines) and nesting
depth (`TOO_DEEPLY_NESTED`). Per-state checks live in `validate_states`,
`validate_choice`, `validate_map` and `validate_exprs`. The verdict (no
ERROR) matches what AWS's CreateStateMachine accepts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from statemachine.diagnostics import Diagnostic, pointer_child
from statemachine.jsontext import json_problem
from statemachine.quotas import MAX_SECONDS
from statemachine.validate_exprs import (
    QueryLanguage,
    Reporter,
    is_int,
    json_type,
    query_language_value,
)
from statemachine.validate_resources import check_resources
from statemachine.validate_states import StateFacts, check_state

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_SCOPE_DEPTH",
    "MAX_STATE_NAME_LENGTH",
    "is_valid",
    "validate",
    "validate_text",
]

MachineType = Literal["STANDARD", "EXPRESS"]

MAX_STATE_NAME_LENGTH = 80
# AWS documents TOO_DEEPLY_NESTED without a number. Twenty levels of
# Parallel/Map nesting is far beyond any real workflow, and the JSON depth cap
# keeps every recursive check well inside Python's recursion limit.
MAX_SCOPE_DEPTH = 20
MAX_JSON_DEPTH = 256

_TOP_LEVEL_FIELDS = frozenset(
    {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
)


def is_valid(diagnostics: Sequence[Diagnostic]) -> bool:
    """True when `diagnostics` holds no ERROR (warnings do not make a definition invalid)."""
    return not any(d.severity == "ERROR" for d in diagnostics)


def validate_text(text: str, *, machine_type: MachineType = "STANDARD") -> list[Diagnostic]:
    """Validate a definition given as JSON text.

    Text that is not JSON gives one INVALID_JSON_DESCRIPTION error at the root;
    otherwise the result is that of `validate`. Never raises.
    """
    try:
        definition = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return [
            Diagnostic(
                "ERROR", "INVALID_JSON_DESCRIPTION", f"The definition is not valid JSON: {exc}", ""
            )
        ]
    return validate(definition, machine_type=machine_type)


def validate(definition: Any, *, machine_type: MachineType = "STANDARD") -> list[Diagnostic]:
    """Validate a parsed definition (any JSON value) for a machine of `machine_type`.

    Returns every problem found, sorted by location; the definition is valid
    iff `is_valid` holds for the result. Never raises on any JSON value.
    """
    rep = Reporter()
    if not isinstance(definition, dict):
        rep.schema("", f"The definition must be a JSON OBJECT but was {json_type(definition)}")
        return rep.diagnostics
    too_deep = _too_deep_location(definition)
    if too_deep is not None:
        rep.error(
            too_deep,
            "TOO_DEEPLY_NESTED",
            f"The definition nests JSON more than {MAX_JSON_DEPTH} levels deep",
        )
        return rep.diagnostics
    unstorable = json_problem(definition, max_depth=MAX_JSON_DEPTH)
    if unstorable is not None:
        # A lone surrogate (in a state name or anywhere): no UTF-8 text holds
        # it, so no location naming it could even be printed.
        rep.error("", "INVALID_JSON_DESCRIPTION", f"The definition is not valid JSON: {unstorable}")
        return rep.diagnostics
    _Machine(rep, definition, machine_type).check()
    check_resources(rep, definition)
    return sorted(rep.diagnostics, key=lambda d: (d.location, d.severity, d.code, d.message))


def _too_deep_location(value: Any) -> str | None:
    # Iterative on purpose: the point is to refuse depths recursion cannot take.
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, location, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return location
        if isinstance(node, dict):
            stack.extend((v, pointer_child(location, k), depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, pointer_child(location, i), depth + 1) for i, v in enumerate(node))
    return None


class _Machine:
    """One validation run over a whole definition."""

    def __init__(
        self, rep: Reporter, definition: dict[str, Any], machine_type: MachineType
    ) -> None:
        self.rep = rep
        self.definition = definition
        self.machine_type: MachineType = "EXPRESS" if machine_type == "EXPRESS" else "STANDARD"
        self.machine_ql: QueryLanguage = "JSONPath"
        self.state_names: dict[str, str] = {}  # name -> pointer of its first definition
        self.labels: dict[str, str] = {}

    def check(self) -> None:
        definition, rep = self.definition, self.rep
        for key in definition:
            if key not in _TOP_LEVEL_FIELDS:
                rep.schema(
                    pointer_child("", key),
                    f"Field '{key}' is not supported at the top level of a state machine",
                )
        if "Comment" in definition and not isinstance(definition["Comment"], str):
            rep.schema("/Comment", "The value for the field 'Comment' must be a STRING")
        if "Version" in definition and definition["Version"] != "1.0":
            rep.schema(
                "/Version",
                f"The value for the field 'Version' must be '1.0', but was "
                f"{definition['Version']!r}",
            )
        if "TimeoutSeconds" in definition:
            timeout = definition["TimeoutSeconds"]
            if not is_int(timeout) or not 1 <= timeout <= MAX_SECONDS:
                rep.schema(
                    "/TimeoutSeconds",
                    f"The value for the field 'TimeoutSeconds' must be "
                    f"an INTEGER between 1 and {MAX_SECONDS}, but was "
                    f"{timeout!r}",
                )
        if "QueryLanguage" in definition:
            ql = definition["QueryLanguage"]
            if ql == "JSONata":
                self.machine_ql = "JSONata"
            elif ql != "JSONPath":
                rep.schema(
                    "/QueryLanguage",
                    query_language_value(ql),
                )
        self.check_scope(definition, "", depth=0)

    def check_scope(self, scope: dict[str, Any], location: str, depth: int) -> None:
        """A StartAt/States pair: the machine, a Parallel branch or a Map processor."""
        rep = self.rep
        if depth > MAX_SCOPE_DEPTH:
            rep.error(
                location,
                "TOO_DEEPLY_NESTED",
                f"Parallel and Map states nest more than {MAX_SCOPE_DEPTH} levels deep",
            )
            return
        missing = [f for f in ("StartAt", "States") if f not in scope]
        if missing:
            rep.schema(location, f"These fields are required: [{', '.join(missing)}]")
        if "Comment" in scope and not isinstance(scope["Comment"], str):
            rep.schema(
                pointer_child(location, "Comment"),
                "The value for the field 'Comment' must be a STRING",
            )
        states = scope.get("States")
        if "States" in scope and (not isinstance(states, dict) or not states):
            rep.schema(
                pointer_child(location, "States"),
                f"The value for the field 'States' must be a non-empty OBJECT but was "
                f"{json_type(states) if not isinstance(states, dict) else 'empty'}",
            )
        states = states if isinstance(states, dict) else {}
        start_at = scope.get("StartAt")
        if "StartAt" in scope:
            if not isinstance(start_at, str):
                rep.schema(
                    pointer_child(location, "StartAt"),
                    f"The value for the field 'StartAt' must be a STRING but was "
                    f"{json_type(start_at)}",
                )
            elif states and start_at not in states:
                rep.error(
                    pointer_child(location, "StartAt"),
                    "MISSING_TRANSITION_TARGET",
                    f"Missing 'StartAt' target: {start_at!r} is not a state of this scope",
                )
        if not states:
            return

        facts: dict[str, StateFacts] = {}
        for name, body in states.items():
            here = pointer_child(location, "States", name)
            self.check_name(name, here)
            facts[name] = check_state(rep, body, here, self.machine_ql, self.machine_type)
        for fact in facts.values():
            for target, pointer in fact.transitions:
                if target not in states:
                    rep.error(
                        pointer,
                        "MISSING_TRANSITION_TARGET",
                        f"Missing 'Next' target: {target!r} is not a state of this scope",
                    )
            for label, pointer in fact.labels:
                if label in self.labels:
                    rep.error(
                        pointer,
                        "DUPLICATE_LABEL_NAME",
                        f"The Map label {label!r} is already used at {self.labels[label]}",
                    )
                else:
                    self.labels[label] = pointer
            for nested, pointer in fact.scopes:
                self.check_scope(nested, pointer, depth + 1)
        if not any(fact.terminal for fact in facts.values()):
            rep.error(
                location,
                "MISSING_END_STATE",
                "No terminal state: at least one state must have 'End': true or be a "
                "Succeed or Fail state",
            )
        if isinstance(start_at, str) and start_at in states:
            self.check_reachability(states, facts, start_at, location)

    def check_name(self, name: str, location: str) -> None:
        if not name or len(name) > MAX_STATE_NAME_LENGTH:
            self.rep.error(
                location,
                "INVALID_STATE_NAME",
                f"A state name must be 1 to {MAX_STATE_NAME_LENGTH} characters long",
            )
        if name in self.state_names:
            self.rep.error(
                location,
                "DUPLICATE_STATE_NAME",
                f"The state name {name!r} is already used at "
                f"{self.state_names[name] or '/'}; names must be unique across the "
                f"whole state machine",
            )
        else:
            self.state_names[name] = location

    def check_reachability(
        self, states: dict[str, Any], facts: dict[str, StateFacts], start_at: str, location: str
    ) -> None:
        reached = {start_at}
        frontier = [start_at]
        while frontier:
            for target, _ in facts[frontier.pop()].transitions:
                if target in states and target not in reached:
                    reached.add(target)
                    frontier.append(target)
        for name in states:
            if name not in reached:
                self.rep.warning(
                    pointer_child(location, "States", name),
                    "UNREACHABLE_STATE",
                    f"The state {name!r} can never be reached from {start_at!r}",
                )
