"""Validation of the expression-bearing values inside a definition.

This module owns the checks every state type shares: the `Reporter` that
collects diagnostics, JSON type helpers, and the syntax checks of paths,
reference paths, intrinsic functions, payload templates (the `.$` rule),
JSONata `{% %}` strings, `Assign` blocks, variable names and literal
timestamps. The compilers themselves live elsewhere (`paths`, `intrinsics`,
`dataflow`, `jsonata`, `timestamps`); here their `ExpressionSyntaxError` is
turned into a located `Diagnostic`. Nothing here raises on any JSON value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from statemachine.diagnostics import Diagnostic, Severity, pointer_child
from statemachine.errors import ExpressionSyntaxError
from statemachine.parts import compile_call

__all__ = [
    "MAX_VALUE_DEPTH",
    "QueryLanguage",
    "Reporter",
    "check_assign",
    "check_error_or_cause_path",
    "check_jsonata_value",
    "check_path",
    "check_payload_template",
    "check_reference_path",
    "check_timestamp_literal",
    "is_int",
    "is_jsonata",
    "is_number",
    "json_type",
    "other_language_field",
    "query_language_value",
]

QueryLanguage = Literal["JSONPath", "JSONata"]


def other_language_field(ql: str, name: str) -> str:
    """AWS's message for a field of the other query language, which it reports at the state."""
    other = "JSONPath" if ql == "JSONata" else "JSONata"
    return (
        f"The QueryLanguage is set to '{ql}', but field '{name}' is only supported "
        f"for the '{other}' QueryLanguage"
    )


def query_language_value(value: Any) -> str:
    """AWS's message for a `QueryLanguage` that is neither JSONPath nor JSONata."""
    if not isinstance(value, str):
        return "Expected value of type [STRING]"
    return "Value should be one of the following: [JSONPath, JSONata]"


# Values nest freely inside templates and Choice rules; beyond this depth we
# stop walking (validate() reports TOO_DEEPLY_NESTED for the document anyway).
MAX_VALUE_DEPTH = 100

# The compilers are written alongside this module; until one exists its
# syntax check is skipped rather than failing every definition.
_compile_path: Callable[[str], object] | None
_compile_reference_path: Callable[[str], object] | None
_compile_template: Callable[[Any], object] | None
_parse_timestamp: Callable[[str], object] | None
_compile_expression: Callable[[str], object] | None
try:
    from statemachine.paths import compile_path as _compile_path
    from statemachine.paths import compile_reference_path as _compile_reference_path
except ImportError:  # pragma: no cover - only while paths.py is being written
    _compile_path = _compile_reference_path = None
try:
    from statemachine.dataflow import compile_template as _compile_template
except ImportError:  # pragma: no cover
    _compile_template = None
try:
    from statemachine.timestamps import parse_timestamp as _parse_timestamp
except ImportError:  # pragma: no cover
    _parse_timestamp = None
try:
    from statemachine.jsonata import compile_expression as _compile_expression
except ImportError:  # pragma: no cover
    _compile_expression = None


class Reporter:
    """Collects diagnostics; validators call `error`/`warning` and never raise."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error_count(self) -> int:
        """How many ERRORs have been recorded so far."""
        return sum(1 for d in self.diagnostics if d.severity == "ERROR")

    def report(self, severity: Severity, location: str, code: str, message: str) -> None:
        """Record one diagnostic."""
        self.diagnostics.append(Diagnostic(severity, code, message, location))

    def error(self, location: str, code: str, message: str) -> None:
        """Record an ERROR: the definition is invalid."""
        self.report("ERROR", location, code, message)

    def warning(self, location: str, code: str, message: str) -> None:
        """Record a WARNING: the definition is valid but probably not what was meant."""
        self.report("WARNING", location, code, message)

    def schema(self, location: str, message: str) -> None:
        """Record AWS's catch-all SCHEMA_VALIDATION_FAILED error."""
        self.error(location, "SCHEMA_VALIDATION_FAILED", message)


def json_type(value: object) -> str:
    """Name the JSON type of `value` the way AWS messages do (STRING, NUMBER, …)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMBER"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list):
        return "ARRAY"
    if isinstance(value, dict):
        return "OBJECT"
    return type(value).__name__.upper()


def is_int(value: object) -> bool:
    """True for a JSON integer (booleans are not numbers in JSON)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for a JSON number, integer or not."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_jsonata(value: object) -> bool:
    """True for a string that is a JSONata expression: exactly `{% … %}`."""
    return (
        isinstance(value, str)
        and len(value) >= 4
        and value.startswith("{%")
        and value.endswith("%}")
    )


def _compile_error(exc: BaseException) -> str:
    # RecursionError and friends from a compiler still mean "does not parse"
    # to the user; the message is kept so the cause is visible.
    text = str(exc) or type(exc).__name__
    return text.rstrip(".")


def check_path(rep: Reporter, location: str, value: object, field: str) -> None:
    """Report unless `value` is a string that compiles as a JSONPath (`$…`, `$$…`, `$var…`)."""
    if not isinstance(value, str):
        rep.schema(
            location,
            f"The value for the field '{field}' must be a STRING that contains a "
            f"JSONPath but was {json_type(value)}",
        )
        return
    if not value.startswith("$"):
        rep.error(
            location,
            "INVALID_JSONPATH",
            f"The value for the field '{field}' must be a valid JSONPath: {value!r}",
        )
        return
    if _compile_path is None:
        return
    try:
        _compile_path(value)
    except (ExpressionSyntaxError, ValueError, TypeError, RecursionError) as exc:
        rep.error(
            location,
            "INVALID_JSONPATH",
            f"The value for the field '{field}' must be a valid JSONPath: {value!r} "
            f"({_compile_error(exc)})",
        )


def check_reference_path(rep: Reporter, location: str, value: object, field: str) -> None:
    """Report unless `value` is a Reference Path: one node, not `$$…`, not a variable."""
    if not isinstance(value, str):
        rep.schema(
            location,
            f"The value for the field '{field}' must be a STRING that contains a "
            f"JSONPath but was {json_type(value)}",
        )
        return
    if value.startswith("$$"):
        rep.error(
            location,
            "INVALID_JSONPATH",
            f"The field '{field}' cannot refer to the context object: {value!r}",
        )
        return
    if len(value) > 1 and value.startswith("$") and value[1] not in ".[":
        rep.error(
            location,
            "INVALID_JSONPATH",
            f"The field '{field}' cannot refer to a variable: {value!r}",
        )
        return
    if not value.startswith("$"):
        rep.error(
            location,
            "INVALID_JSONPATH",
            f"The value for the field '{field}' must be a valid reference path: {value!r}",
        )
        return
    if _compile_reference_path is None:
        return
    try:
        _compile_reference_path(value)
    except (ExpressionSyntaxError, ValueError, TypeError, RecursionError) as exc:
        rep.error(
            location,
            "INVALID_JSONPATH",
            f"The value for the field '{field}' must be a valid reference path: "
            f"{value!r} ({_compile_error(exc)})",
        )


def _check_intrinsic(rep: Reporter, location: str, value: str, field: str) -> None:
    try:
        compile_call(value)
    except (ExpressionSyntaxError, ValueError, TypeError, RecursionError) as exc:
        rep.error(
            location,
            "INVALID_INTRINSIC",
            f"The value for the field '{field}' must be a valid JSONPath or a valid "
            f"intrinsic function call: {value!r} ({_compile_error(exc)})",
        )


def check_error_or_cause_path(rep: Reporter, location: str, value: object, field: str) -> None:
    """Fail's ErrorPath/CausePath: a path, or an intrinsic function call."""
    if isinstance(value, str) and not value.startswith("$"):
        _check_intrinsic(rep, location, value, field)
    else:
        check_path(rep, location, value, field)


def _check_dollar_value(rep: Reporter, location: str, value: object, key: str) -> None:
    # The `.$` rule: `$…` is a path (input, `$$` context or `$var`), anything
    # else must be an intrinsic function.
    if not isinstance(value, str):
        rep.schema(
            location,
            f"The value for the field '{key}' must be a STRING that contains a "
            f"JSONPath but was {json_type(value)}",
        )
    elif value.startswith("$"):
        check_path(rep, location, value, key)
    else:
        _check_intrinsic(rep, location, value, key)


def _looks_like_path(value: str) -> bool:
    return value == "$" or value.startswith(("$.", "$[", "$$."))


def check_payload_template(rep: Reporter, location: str, value: object, field: str) -> None:
    """A JSONPath Payload Template (Parameters, ResultSelector, ItemSelector …).

    Every `.$` key's value must be a path or an intrinsic; keys may not repeat
    once `.$` is stripped; a path-like string under a plain key earns the
    NO_DOLLAR warning. Must be a JSON object.
    """
    if not isinstance(value, dict):
        rep.schema(
            location,
            f"The value for the field '{field}' must be an OBJECT but was {json_type(value)}",
        )
        return
    errors_before = rep.error_count()
    _walk_template(rep, location, value, 0)
    if rep.error_count() == errors_before:
        _cross_check_template(rep, location, value, field)


def _cross_check_template(rep: Reporter, location: str, value: object, field: str) -> None:
    # The per-key walk locates problems precisely; this runs the compiler the
    # engine builds with, so validate() never accepts what building rejects.
    if _compile_template is None:
        return
    try:
        _compile_template(value)
    except (ExpressionSyntaxError, ValueError, TypeError, RecursionError) as exc:
        rep.error(
            location,
            "INVALID_JSONPATH",
            f"The value for the field '{field}' is not a valid payload template "
            f"({_compile_error(exc)})",
        )


def _walk_template(rep: Reporter, location: str, value: object, depth: int) -> None:
    if depth > MAX_VALUE_DEPTH:
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _walk_template(rep, pointer_child(location, index), item, depth + 1)
        return
    if not isinstance(value, dict):
        return
    plain_keys = {key for key in value if not key.endswith(".$")}
    for key, item in value.items():
        here = pointer_child(location, key)
        if key.endswith(".$"):
            if key[:-2] in plain_keys:
                rep.schema(
                    here, f"The field '{key[:-2]}' appears twice, once with '.$' and once without"
                )
            _check_dollar_value(rep, here, item, key)
        else:
            if isinstance(item, str) and _looks_like_path(item):
                rep.warning(
                    here,
                    "NO_DOLLAR",
                    f"The value of the field '{key}' looks like a path, but the field "
                    f"name does not end with '.$', so it is passed as a literal string",
                )
            _walk_template(rep, here, item, depth + 1)


def _check_jsonata_text(rep: Reporter, location: str, text: str) -> None:
    if _compile_expression is None:
        return
    try:
        _compile_expression(text)
    except (ExpressionSyntaxError, ValueError, TypeError, RecursionError) as exc:
        rep.error(
            location,
            "INVALID_JSONATA",
            f"The JSONata expression {text!r} is not valid ({_compile_error(exc)})",
        )


def check_jsonata_value(rep: Reporter, location: str, value: object, depth: int = 0) -> None:
    """A JSONata-mode value: every `{% %}` string in it, at any depth, must parse.

    Keys are literal in JSONata: a key ending in `.$` is a plain key, as AWS
    accepts it (its value is not a path, and the key keeps its `.$`).
    """
    if depth > MAX_VALUE_DEPTH:
        return
    if isinstance(value, str):
        if is_jsonata(value):
            _check_jsonata_text(rep, location, value)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_jsonata_value(rep, pointer_child(location, index), item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_jsonata_value(rep, pointer_child(location, key), item, depth + 1)


def _check_variable_name(rep: Reporter, location: str, name: str) -> None:
    if name == "states":
        rep.error(
            location,
            "INVALID_VARIABLE_NAME",
            "The variable name 'states' is reserved and cannot be assigned",
        )
    elif len(name) > 80:
        rep.error(
            location,
            "INVALID_VARIABLE_NAME",
            f"The variable name '{name[:20]}…' is longer than 80 characters",
        )
    elif not name.isidentifier():
        rep.error(
            location,
            "INVALID_VARIABLE_NAME",
            f"The variable name {name!r} is not valid: it must start with a letter or "
            f"underscore and contain only letters, digits and underscores",
        )


def check_assign(rep: Reporter, location: str, value: object, ql: QueryLanguage) -> None:
    """An `Assign` block: an object keyed by variable names with JSONPath or JSONata values."""
    if not isinstance(value, dict):
        rep.schema(
            location,
            f"The value for the field 'Assign' must be an OBJECT but was {json_type(value)}",
        )
        return
    if ql == "JSONata":
        # Keys are literal here: `x.$` names a variable `x.$`, which is not an identifier.
        for key in value:
            _check_variable_name(rep, pointer_child(location, key), key)
        check_jsonata_value(rep, location, value)
        return
    names = set()
    for key in value:
        name = key[:-2] if key.endswith(".$") else key
        here = pointer_child(location, key)
        if name in names:
            rep.schema(here, f"The variable '{name}' is assigned twice")
        names.add(name)
        _check_variable_name(rep, here, name)
    errors_before = rep.error_count()
    _walk_template(rep, location, value, 0)
    if rep.error_count() == errors_before:
        _cross_check_template(rep, location, value, "Assign")


def check_timestamp_literal(rep: Reporter, location: str, value: object, field: str) -> None:
    """Report unless `value` is an RFC 3339 timestamp string (upper-case T, Z or offset)."""
    if not isinstance(value, str):
        rep.schema(
            location,
            f"The value for the field '{field}' must be a STRING that contains a "
            f"timestamp but was {json_type(value)}",
        )
        return
    if _parse_timestamp is None:
        return
    try:
        parsed = _parse_timestamp(value)
    except (ExpressionSyntaxError, ValueError, TypeError, OverflowError):
        parsed = None
    if parsed is None:
        rep.schema(
            location,
            f"The value for the field '{field}' must be a valid RFC 3339 "
            f"timestamp (for example 2016-03-14T01:59:00Z): {value!r}",
        )
