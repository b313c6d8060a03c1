"""Validation of one state's own fields.

This module owns the per-state checks: which fields each of the eight state
types accepts in each query language (INVENTORY §1.2), required fields, JSON
types and ranges, the field/`…Path` mutual exclusions, Next-xor-End, Retry
and Catch, Task resources (and what EXPRESS machines forbid), Wait delays,
Fail error/cause, Parallel branches and Map's processor, reader, batcher,
writer and label. It does not follow transitions or descend into nested
scopes: it returns them as `StateFacts` for `validate` to check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from statemachine.diagnostics import pointer_child
from statemachine.errors import ExpressionSyntaxError
from statemachine.parts import CHOICE, MAP_VALIDATION, require
from statemachine.quotas import FORBIDDEN_NAME_CHARS, MAX_DELAY_SECONDS, MAX_SECONDS
from statemachine.validate_exprs import (
    QueryLanguage,
    Reporter,
    check_assign,
    check_error_or_cause_path,
    check_jsonata_value,
    check_path,
    check_payload_template,
    check_reference_path,
    check_timestamp_literal,
    is_int,
    is_jsonata,
    is_number,
    json_type,
    other_language_field,
    query_language_value,
)

__all__ = ["STATE_TYPES", "StateFacts", "check_state"]

_parse_retrier: Callable[[Any], object] | None
_parse_catcher: Callable[..., object] | None
try:
    from statemachine.retry import parse_catcher as _parse_catcher
    from statemachine.retry import parse_retrier as _parse_retrier
except ImportError:  # pragma: no cover - only while retry.py is being written
    _parse_retrier = _parse_catcher = None

MAX_LABEL_LENGTH = 40

_COMMON = frozenset({"Type", "Comment", "QueryLanguage"})
_JP_IO = frozenset({"InputPath", "OutputPath"})
_JP_TASKLIKE = _JP_IO | {"Parameters", "ResultSelector", "ResultPath"}

# state type -> (fields in both languages, JSONPath-only fields, JSONata-only fields)
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
    "Task": (
        frozenset(
            {
                "Resource",
                "Next",
                "End",
                "TimeoutSeconds",
                "HeartbeatSeconds",
                "Credentials",
                "Retry",
                "Catch",
                "Assign",
            }
        ),
        _JP_TASKLIKE | {"TimeoutSecondsPath", "HeartbeatSecondsPath"},
        frozenset({"Arguments", "Output"}),
    ),
    "Parallel": (
        frozenset({"Branches", "Next", "End", "Retry", "Catch", "Assign"}),
        _JP_TASKLIKE,
        frozenset({"Arguments", "Output"}),
    ),
    "Map": (
        frozenset(
            {
                "ItemProcessor",
                "Iterator",
                "Next",
                "End",
                "ItemSelector",
                "ItemReader",
                "ItemBatcher",
                "ResultWriter",
                "MaxConcurrency",
                "ToleratedFailurePercentage",
                "ToleratedFailureCount",
                "Label",
                "Retry",
                "Catch",
                "Assign",
            }
        ),
        _JP_TASKLIKE
        | {
            "ItemsPath",
            "MaxConcurrencyPath",
            "ToleratedFailurePercentagePath",
            "ToleratedFailureCountPath",
        },
        frozenset({"Items", "Output"}),
    ),
    "Pass": (
        frozenset({"Next", "End", "Assign"}),
        _JP_IO | {"Parameters", "Result", "ResultPath"},
        frozenset({"Output"}),
    ),
    "Wait": (
        frozenset({"Next", "End", "Seconds", "Timestamp", "Assign"}),
        _JP_IO | {"SecondsPath", "TimestampPath"},
        frozenset({"Output"}),
    ),
    "Choice": (
        frozenset({"Choices", "Default", "Assign"}),
        _JP_IO,
        frozenset({"Output"}),
    ),
    "Succeed": (frozenset(), _JP_IO, frozenset({"Output"})),
    "Fail": (frozenset({"Error", "Cause"}), frozenset({"ErrorPath", "CausePath"}), frozenset()),
}
STATE_TYPES = tuple(_FIELDS)

_ACTIVITY_ARN = re.compile(r"^arn:aws[\w-]*:states:[^:]*:[^:]*:activity:.+$")


@dataclass
class StateFacts:
    """What `validate` needs from one state to check the machine's graph."""

    transitions: list[tuple[str, str]] = field(default_factory=list)  # (target, pointer)
    scopes: list[tuple[Any, str]] = field(default_factory=list)  # nested (StartAt/States, ptr)
    labels: list[tuple[str, str]] = field(default_factory=list)  # Map Labels (label, pointer)
    terminal: bool = False


class _State:
    """One state being checked: its fields, location and effective query language."""

    def __init__(
        self,
        rep: Reporter,
        body: dict[str, Any],
        location: str,
        ql: QueryLanguage,
        machine_type: Literal["STANDARD", "EXPRESS"],
    ) -> None:
        self.rep = rep
        self.body = body
        self.location = location
        self.ql = ql
        self.machine_type = machine_type
        self.facts = StateFacts()

    def at(self, *tokens: str | int) -> str:
        return pointer_child(self.location, *tokens)

    def has(self, name: str) -> bool:
        return name in self.body

    def exclusive(self, *names: str) -> None:
        present = [n for n in names if n in self.body]
        if len(present) > 1:
            self.rep.schema(
                self.at(present[1]),
                f"The fields {', '.join(repr(n) for n in present)}"
                f" are mutually exclusive; use only one",
            )

    def string(self, name: str) -> None:
        if name in self.body and not isinstance(self.body[name], str):
            self.rep.schema(
                self.at(name),
                f"The value for the field '{name}' must be a STRING "
                f"but was {json_type(self.body[name])}",
            )

    def integer(self, name: str, low: int, high: int | None = None) -> None:
        """An integer field in [low, high]; in JSONata also a `{% %}` expression."""
        if name not in self.body:
            return
        value = self.body[name]
        if self.ql == "JSONata" and is_jsonata(value):
            check_jsonata_value(self.rep, self.at(name), value)
            return
        self.rep_range(name, value, low, high, integral=True)

    def rep_range(
        self, name: str, value: object, low: float, high: float | None, *, integral: bool
    ) -> None:
        kind = "an INTEGER" if integral else "a NUMBER"
        ok_type = is_int(value) if integral else is_number(value)
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        if not ok_type:
            self.rep.schema(
                self.at(name),
                f"The value for the field '{name}' must be {kind} "
                f"{bounds} but was {json_type(value)}",
            )
        elif value < low or (high is not None and value > high):  # type: ignore[operator]
            self.rep.schema(
                self.at(name), f"The value for the field '{name}' must be {bounds}, but was {value}"
            )

    def path(self, name: str) -> None:
        if name in self.body:
            check_path(self.rep, self.at(name), self.body[name], name)

    def nullable_path(self, name: str) -> None:
        if name in self.body and self.body[name] is not None:
            check_path(self.rep, self.at(name), self.body[name], name)

    def jsonata(self, name: str) -> None:
        if name in self.body:
            check_jsonata_value(self.rep, self.at(name), self.body[name])


def check_state(
    rep: Reporter,
    body: object,
    location: str,
    machine_ql: QueryLanguage,
    machine_type: Literal["STANDARD", "EXPRESS"],
) -> StateFacts:
    """Check one state's fields; report problems to `rep` and return its graph facts."""
    if not isinstance(body, dict):
        rep.schema(location, f"A state must be an OBJECT but was {json_type(body)}")
        return StateFacts()
    ql = _state_query_language(rep, body, location, machine_ql)
    state = _State(rep, body, location, ql, machine_type)
    state_type = body.get("Type")
    if "Type" not in body:
        rep.schema(location, "These fields are required: [Type]")
        return state.facts
    if not isinstance(state_type, str) or state_type not in _FIELDS:
        rep.schema(
            pointer_child(location, "Type"),
            f"The value for the field 'Type' must be one of {', '.join(STATE_TYPES)}, "
            f"but was {state_type!r}",
        )
        return state.facts
    _check_field_names(state, state_type)
    state.string("Comment")
    _check_transition(state, state_type)
    if "Assign" in body and state_type not in ("Succeed", "Fail"):
        check_assign(rep, state.at("Assign"), body["Assign"], ql)
    _check_io(state, state_type)
    _CHECKERS[state_type](state)
    return state.facts


def _state_query_language(
    rep: Reporter, body: dict[str, Any], location: str, machine_ql: QueryLanguage
) -> QueryLanguage:
    if "QueryLanguage" not in body:
        return machine_ql
    value = body["QueryLanguage"]
    here = pointer_child(location, "QueryLanguage")
    if value not in ("JSONPath", "JSONata"):
        rep.schema(here, query_language_value(value))
        return machine_ql
    if value == "JSONPath" and machine_ql == "JSONata":
        # AWS reports the downgrade at the state, as it does a field of the other language.
        rep.schema(
            location,
            "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
        )
        return "JSONata"
    return "JSONata" if value == "JSONata" else "JSONPath"


def _check_field_names(state: _State, state_type: str) -> None:
    both, jp_only, ja_only = _FIELDS[state_type]
    for name in state.body:
        if name in _COMMON or name in both:
            continue
        if name in jp_only and state.ql == "JSONPath":
            continue
        if name in ja_only and state.ql == "JSONata":
            continue
        if name in jp_only or name in ja_only:
            # AWS names the field in its message and reports it at the state.
            state.rep.schema(state.location, other_language_field(state.ql, name))
        else:
            state.rep.schema(
                state.at(name), f"Field '{name}' is not supported by state type '{state_type}'"
            )


def _check_transition(state: _State, state_type: str) -> None:
    body = state.body
    if state_type in ("Succeed", "Fail"):
        state.facts.terminal = True
        return
    if state_type == "Choice":
        if "Default" in body:
            if isinstance(body["Default"], str):
                state.facts.transitions.append((body["Default"], state.at("Default")))
            else:
                state.string("Default")
        return
    end = body.get("End")
    if "End" in body and not isinstance(end, bool):
        state.rep.schema(
            state.at("End"),
            f"The value for the field 'End' must be a BOOLEAN but was {json_type(end)}",
        )
    if "Next" in body:
        if end is True:
            state.rep.schema(
                state.at("Next"),
                "The fields 'Next' and 'End' are mutually exclusive; a state has one or the other",
            )
        if isinstance(body["Next"], str):
            state.facts.transitions.append((body["Next"], state.at("Next")))
        else:
            state.string("Next")
    elif end is True:
        state.facts.terminal = True
    elif "End" not in body or isinstance(end, bool):
        state.rep.schema(
            state.location, f"A {state_type} state must have either 'Next' or 'End': true"
        )


def _check_io(state: _State, state_type: str) -> None:
    if state.ql == "JSONata":
        state.jsonata("Output")
        state.jsonata("Arguments")
        return
    state.nullable_path("InputPath")
    state.nullable_path("OutputPath")
    if "ResultPath" in state.body and state.body["ResultPath"] is not None:
        check_reference_path(
            state.rep, state.at("ResultPath"), state.body["ResultPath"], "ResultPath"
        )
    if "Parameters" in state.body:
        check_payload_template(
            state.rep, state.at("Parameters"), state.body["Parameters"], "Parameters"
        )
    if "ResultSelector" in state.body:
        check_payload_template(
            state.rep, state.at("ResultSelector"), state.body["ResultSelector"], "ResultSelector"
        )


def _check_task(state: _State) -> None:
    body, rep = state.body, state.rep
    if "Resource" not in body:
        rep.schema(state.location, "These fields are required: [Resource]")
    else:
        _check_resource(state, body["Resource"])
    state.exclusive("TimeoutSeconds", "TimeoutSecondsPath")
    state.exclusive("HeartbeatSeconds", "HeartbeatSecondsPath")
    state.integer("TimeoutSeconds", 1, MAX_SECONDS)
    state.integer("HeartbeatSeconds", 1, MAX_SECONDS)
    state.path("TimeoutSecondsPath")
    state.path("HeartbeatSecondsPath")
    timeout, heartbeat = body.get("TimeoutSeconds"), body.get("HeartbeatSeconds")
    if isinstance(timeout, int) and isinstance(heartbeat, int) and heartbeat >= timeout:
        rep.schema(
            state.at("HeartbeatSeconds"),
            "The value for the field 'HeartbeatSeconds' must be smaller than 'TimeoutSeconds'",
        )
    if "Credentials" in body:
        _check_credentials(state, body["Credentials"])
    _check_retry(state)
    _check_catch(state)


def _check_resource(state: _State, resource: object) -> None:
    here = state.at("Resource")
    if not isinstance(resource, str):
        state.rep.schema(
            here,
            f"The value for the field 'Resource' must be a STRING but was {json_type(resource)}",
        )
        return
    # AWS accepts only ARNs. Stepwise also binds plain names ("charge_card")
    # to registered handlers; statemachine.build.local_diagnostics turns this
    # error into a warning for such names when running them here.
    if not resource.startswith("arn:") or resource.count(":") < 5:
        state.rep.error(
            here,
            "INVALID_RESOURCE",
            f"Value is not a valid resource ARN: {resource!r}",
        )
        return
    if state.machine_type != "EXPRESS":
        return
    if _ACTIVITY_ARN.match(resource):
        state.rep.schema(here, "Express state machine does not support Activity ARN")
    elif resource.startswith("arn:") and resource.endswith(
        (".sync", ".sync:2", ".waitForTaskToken")
    ):
        # AWS words the waitForTaskToken rejection as '.sync' too.
        state.rep.schema(here, "Express state machine does not support '.sync' service integration")


def _check_credentials(state: _State, credentials: object) -> None:
    here = state.at("Credentials")
    if not isinstance(credentials, dict):
        state.rep.schema(
            here,
            f"The value for the field 'Credentials' must be an OBJECT but was "
            f"{json_type(credentials)}",
        )
        return
    allowed = {"RoleArn", "RoleArn.$"} if state.ql == "JSONPath" else {"RoleArn"}
    for key in credentials:
        if key not in allowed:
            state.rep.schema(
                pointer_child(here, key), f"Field '{key}' is not supported in 'Credentials'"
            )
    if not any(key in credentials for key in allowed):
        state.rep.schema(here, "These fields are required: [RoleArn]")
    if state.ql == "JSONata":
        check_jsonata_value(state.rep, here, credentials)
    elif "RoleArn.$" in credentials:
        check_payload_template(state.rep, here, credentials, "Credentials")
    if "RoleArn" in credentials and not isinstance(credentials["RoleArn"], str):
        state.rep.schema(
            pointer_child(here, "RoleArn"), "The value for the field 'RoleArn' must be a STRING"
        )


def _check_error_equals(rep: Reporter, location: str, value: object) -> bool:
    """Check an ErrorEquals list; return True when it names States.ALL."""
    if not isinstance(value, list) or not value:
        rep.schema(
            location,
            "The value for the field 'ErrorEquals' must be a non-empty ARRAY of error names",
        )
        return False
    for index, name in enumerate(value):
        if not isinstance(name, str):
            rep.schema(
                pointer_child(location, index),
                f"An error name must be a STRING but was {json_type(name)}",
            )
    if "States.ALL" in value and len(value) > 1:
        rep.schema(location, "'States.ALL' must appear alone in 'ErrorEquals'")
    return "States.ALL" in value


def _handlers(state: _State, name: str) -> list[tuple[int, dict[str, Any], str]]:
    if name not in state.body:
        return []
    value = state.body[name]
    if not isinstance(value, list):
        state.rep.schema(
            state.at(name),
            f"The value for the field '{name}' must be an ARRAY but was {json_type(value)}",
        )
        return []
    handlers = []
    for index, handler in enumerate(value):
        here = state.at(name, index)
        if isinstance(handler, dict):
            handlers.append((index, handler, here))
        else:
            state.rep.schema(
                here, f"A {name[:-1].lower()}er must be an OBJECT but was {json_type(handler)}"
            )
    return handlers


def _check_states_all_last(
    rep: Reporter, handlers: list[tuple[int, dict[str, Any], str]], what: str
) -> None:
    for position, (_, handler, here) in enumerate(handlers):
        errors = handler.get("ErrorEquals")
        if isinstance(errors, list) and "States.ALL" in errors and position != len(handlers) - 1:
            rep.schema(
                pointer_child(here, "ErrorEquals"),
                f"'States.ALL' may appear only in the last {what}",
            )


def _check_retry(state: _State) -> None:
    rep = state.rep
    retriers = _handlers(state, "Retry")
    allowed = {
        "ErrorEquals",
        "IntervalSeconds",
        "MaxAttempts",
        "BackoffRate",
        "MaxDelaySeconds",
        "JitterStrategy",
        "Comment",
    }
    for _, retrier, here in retriers:
        errors_before = rep.error_count()
        for key in retrier:
            if key not in allowed:
                rep.schema(pointer_child(here, key), f"Field '{key}' is not supported in a retrier")
        if "ErrorEquals" not in retrier:
            rep.schema(here, "These fields are required: [ErrorEquals]")
        else:
            _check_error_equals(rep, pointer_child(here, "ErrorEquals"), retrier["ErrorEquals"])
        sub = _State(rep, retrier, here, "JSONPath", state.machine_type)
        sub.integer("IntervalSeconds", 1, MAX_SECONDS)
        sub.integer("MaxAttempts", 0, MAX_SECONDS)
        sub.integer("MaxDelaySeconds", 1, MAX_DELAY_SECONDS)
        if "BackoffRate" in retrier:
            sub.rep_range("BackoffRate", retrier["BackoffRate"], 1.0, None, integral=False)
        if "JitterStrategy" in retrier and retrier["JitterStrategy"] not in ("FULL", "NONE"):
            rep.schema(
                pointer_child(here, "JitterStrategy"),
                "The value for the field 'JitterStrategy' must be 'FULL' or 'NONE'",
            )
        sub.string("Comment")
        if rep.error_count() == errors_before and _parse_retrier is not None:
            _cross_check(rep, here, partial(_parse_retrier, retrier))
    _check_states_all_last(rep, retriers, "retrier")


def _cross_check(rep: Reporter, location: str, parse: Callable[[], object]) -> None:
    # statemachine.retry builds the engine's retriers and catchers; whatever it
    # refuses, validation must refuse too.
    try:
        parse()
    except (ExpressionSyntaxError, ValueError, TypeError) as exc:
        rep.schema(location, str(exc))


def _check_catch(state: _State) -> None:
    rep = state.rep
    catchers = _handlers(state, "Catch")
    allowed = {"ErrorEquals", "Next", "Assign", "Comment"}
    allowed |= {"ResultPath"} if state.ql == "JSONPath" else {"Output"}
    for _, catcher, here in catchers:
        errors_before = rep.error_count()
        for key in catcher:
            if key not in allowed:
                rep.schema(pointer_child(here, key), f"Field '{key}' is not supported in a catcher")
        missing = [f for f in ("ErrorEquals", "Next") if f not in catcher]
        if missing:
            rep.schema(here, f"These fields are required: [{', '.join(missing)}]")
        if "ErrorEquals" in catcher:
            _check_error_equals(rep, pointer_child(here, "ErrorEquals"), catcher["ErrorEquals"])
        if "Next" in catcher:
            if isinstance(catcher["Next"], str):
                state.facts.transitions.append((catcher["Next"], pointer_child(here, "Next")))
            else:
                rep.schema(
                    pointer_child(here, "Next"), "The value for the field 'Next' must be a STRING"
                )
        if catcher.get("ResultPath") is not None and state.ql == "JSONPath":
            check_reference_path(
                rep, pointer_child(here, "ResultPath"), catcher["ResultPath"], "ResultPath"
            )
        if "Output" in catcher and state.ql == "JSONata":
            check_jsonata_value(rep, pointer_child(here, "Output"), catcher["Output"])
        if "Assign" in catcher:
            check_assign(rep, pointer_child(here, "Assign"), catcher["Assign"], state.ql)
        if "Comment" in catcher and not isinstance(catcher["Comment"], str):
            rep.schema(
                pointer_child(here, "Comment"), "The value for the field 'Comment' must be a STRING"
            )
        if rep.error_count() == errors_before and _parse_catcher is not None:
            _cross_check(rep, here, partial(_parse_catcher, catcher, query_language=state.ql))
    _check_states_all_last(rep, catchers, "catcher")


def _check_pass(state: _State) -> None:
    if "Result" in state.body and _has_dollar_key(state.body["Result"], 0):
        state.rep.warning(
            state.at("Result"),
            "PASS_RESULT_IS_STATIC",
            "The 'Result' field is static: keys ending with '.$' are not "
            "evaluated; use 'Parameters' to compute values",
        )


def _has_dollar_key(value: object, depth: int) -> bool:
    if depth > 100:
        return False
    if isinstance(value, dict):
        return any(k.endswith(".$") or _has_dollar_key(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_dollar_key(v, depth + 1) for v in value)
    return False


def _check_wait(state: _State) -> None:
    body = state.body
    delays = [f for f in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if f in body]
    if not delays:
        state.rep.schema(
            state.location,
            "A Wait state must have exactly one of 'Seconds', "
            "'Timestamp', 'SecondsPath' or 'TimestampPath'",
        )
    elif len(delays) > 1:
        state.exclusive(*delays)
    state.integer("Seconds", 0, MAX_SECONDS)
    if "Timestamp" in body:
        value = body["Timestamp"]
        if state.ql == "JSONata" and is_jsonata(value):
            state.jsonata("Timestamp")
        else:
            check_timestamp_literal(state.rep, state.at("Timestamp"), value, "Timestamp")
    state.path("SecondsPath")
    state.path("TimestampPath")


def _check_choice(state: _State) -> None:
    if "Choices" not in state.body:
        state.rep.schema(state.location, "These fields are required: [Choices]")
        return
    require(CHOICE)
    from statemachine.validate_choice import check_choices

    state.facts.transitions.extend(
        check_choices(state.rep, state.at("Choices"), state.body["Choices"], state.ql)
    )


def _check_succeed(state: _State) -> None:
    """Succeed has nothing of its own beyond the shared I/O fields."""


def _check_fail(state: _State) -> None:
    state.exclusive("Error", "ErrorPath")
    state.exclusive("Cause", "CausePath")
    for name in ("Error", "Cause"):
        state.string(name)
        if state.ql == "JSONata":
            state.jsonata(name)
    for name in ("ErrorPath", "CausePath"):
        if name in state.body:
            check_error_or_cause_path(state.rep, state.at(name), state.body[name], name)


def _check_scope_shape(
    state: _State, scope: object, location: str, what: str, extra: frozenset[str]
) -> None:
    if not isinstance(scope, dict):
        state.rep.schema(location, f"{what} must be an OBJECT but was {json_type(scope)}")
        return
    for key in scope:
        if key == "QueryLanguage":
            # Not a state, so no language of its own: AWS's words, at the processor or branch.
            state.rep.schema(location, "Field 'QueryLanguage' is not supported")
        elif key not in {"StartAt", "States", "Comment"} | extra:
            state.rep.schema(
                pointer_child(location, key), f"Field '{key}' is not supported in {what}"
            )
    state.facts.scopes.append((scope, location))


def _check_parallel(state: _State) -> None:
    branches = state.body.get("Branches")
    if "Branches" not in state.body:
        state.rep.schema(state.location, "These fields are required: [Branches]")
    elif not isinstance(branches, list) or not branches:
        state.rep.schema(
            state.at("Branches"),
            "The value for the field 'Branches' must be a non-empty ARRAY of branches",
        )
    else:
        for index, branch in enumerate(branches):
            _check_scope_shape(state, branch, state.at("Branches", index), "A branch", frozenset())
    _check_retry(state)
    _check_catch(state)


def _check_map(state: _State) -> None:
    body = state.body
    processor_fields = [f for f in ("ItemProcessor", "Iterator") if f in body]
    if not processor_fields:
        state.rep.schema(state.location, "These fields are required: [ItemProcessor]")
    elif len(processor_fields) > 1:
        state.exclusive(*processor_fields)
    else:
        name = processor_fields[0]
        _check_scope_shape(
            state, body[name], state.at(name), f"'{name}'", frozenset({"ProcessorConfig"})
        )
    require(MAP_VALIDATION)
    from statemachine.validate_map import check_map_fields

    check_map_fields(state.rep, body, state.location, state.ql)
    if "Label" in body:
        label = body["Label"]
        if isinstance(label, str):
            _check_label(state, label)
        else:
            state.string("Label")
    _check_retry(state)
    _check_catch(state)


def _check_label(state: _State, label: str) -> None:
    here = state.at("Label")
    if not label or len(label) > MAX_LABEL_LENGTH:
        state.rep.error(
            here,
            "INVALID_LABEL_NAME",
            f"A Map 'Label' must be 1 to {MAX_LABEL_LENGTH} characters long",
        )
    elif FORBIDDEN_NAME_CHARS.search(label):
        state.rep.error(
            here,
            "INVALID_LABEL_NAME",
            f"The Map 'Label' {label!r} contains a character that names cannot contain",
        )
    else:
        state.facts.labels.append((label, here))


_CHECKERS = {
    "Task": _check_task,
    "Parallel": _check_parallel,
    "Map": _check_map,
    "Pass": _check_pass,
    "Wait": _check_wait,
    "Choice": _check_choice,
    "Succeed": _check_succeed,
    "Fail": _check_fail,
}
