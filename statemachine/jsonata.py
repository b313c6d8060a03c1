"""JSONata expressions and templates as Step Functions evaluates them.

This module owns ASL's JSONata mode at the expression level: recognising a
`{% … %}` string, compiling it once (`compile_expression`,
`compile_jsonata_template`), evaluating it with `$states` and the workflow
variables bound (`evaluate_expression`, `evaluate_template`), checking the
result's type for a field (`check_result_type`) and variable names
(`check_variable_name`). Every failure is a `QueryEvaluationError` worded as
AWS words it and carrying the field `location`. Evaluation is bounded: a
deadline and an evaluation-depth limit are checked on every step of the
evaluator, built-ins that could allocate without bound are guarded, and the
result is bounded in items, characters and nesting. A regular-expression
literal can still backtrack inside C code that no cooperative check reaches;
`Expression.uses_regex` tells the engine to run such an expression under the
process-level guard of `engine/sandbox.py`. The library itself is touched
only by `statemachine.jsonata_eval`, imported with the first expression
compiled, so a process that never meets JSONata never loads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from statemachine.errors import ExpressionSyntaxError
from statemachine.jsonata_limits import Limits, QueryEvaluationError
from statemachine.nondeterminism import Nondeterminism

__all__ = [
    "Expression",
    "JsonataTemplate",
    "Limits",
    "QueryEvaluationError",
    "check_result_type",
    "check_variable_name",
    "compile_expression",
    "compile_jsonata_template",
    "evaluate_expression",
    "evaluate_template",
    "is_expression",
    "json_type",
]

_MAX_VARIABLE_NAME = 80


@dataclass(frozen=True, eq=False)
class Expression:
    """One compiled `{% … %}` expression; `text` is its inner source, trimmed."""

    text: str
    source: str
    uses_regex: bool
    # The library's compiled program (jsonata_eval's guarded Jsonata).
    _program: Any = field(repr=False, compare=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __reduce__(self) -> tuple[Any, ...]:
        # The library's AST is not picklable; the sandbox recompiles from text.
        return (compile_expression, (self.source,))


@dataclass(frozen=True)
class JsonataTemplate:
    """A JSON value whose `{% %}` strings (at any depth, never keys) are compiled.

    `value` mirrors the source JSON with each expression string replaced by its
    `Expression`; `expressions` lists them all, in document order.
    """

    value: Any
    expressions: tuple[Expression, ...]

    @property
    def uses_regex(self) -> bool:
        """Whether any expression holds a regular-expression literal."""
        return any(expression.uses_regex for expression in self.expressions)


def is_expression(value: Any) -> bool:
    """True for a string that starts exactly with `{%` and ends exactly with `%}`."""
    return isinstance(value, str) and len(value) >= 4 and value[:2] == "{%" and value[-2:] == "%}"


def compile_expression(text: str) -> Expression:
    """Compile a whole `{% … %}` string once.

    Raises `ExpressionSyntaxError` with the library's message (and its error
    code) when the inner text does not parse, or when `text` lacks the
    delimiters.
    """
    if not is_expression(text):
        raise ExpressionSyntaxError(f"not a JSONata expression (needs {{% … %}}): {text!r}")
    inner = text[2:-2].strip()
    if not inner:
        raise ExpressionSyntaxError("empty JSONata expression")
    from statemachine import jsonata_eval  # the library loads with the first expression

    program = jsonata_eval.compile_program(inner)
    return Expression(
        text=inner, source=text, uses_regex=jsonata_eval.has_regex(program), _program=program
    )


def compile_jsonata_template(value: Any) -> JsonataTemplate:
    """Compile every expression string inside a JSON value (keys stay literal).

    Raises `ExpressionSyntaxError` for the first expression that does not parse.
    """
    found: list[Expression] = []

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            if is_expression(node):
                expression = compile_expression(node)
                found.append(expression)
                return expression
            return node
        if isinstance(node, dict):
            return {key: walk(item) for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return JsonataTemplate(value=walk(value), expressions=tuple(found))


def evaluate_template(
    template: JsonataTemplate,
    *,
    field: str,
    states: Mapping[str, Any],
    variables: Mapping[str, Any],
    nondeterminism: Nondeterminism,
    limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
) -> Any:
    """Evaluate a template to plain JSON (dict/list/str/int/float/bool/None).

    `field` names the template (e.g. "Output"); an expression nested under key
    `error` reports "Output/error". Raises `QueryEvaluationError` for a JSONata
    error, an undefined result, or a limit exceeded; the whole template shares
    one deadline of `limits.timeout_seconds`.
    """
    from statemachine.jsonata_eval import Run

    run = Run(states, variables, nondeterminism, limits)

    def walk(node: Any, location: str) -> Any:
        if isinstance(node, Expression):
            return run.evaluate(node, location)
        if isinstance(node, dict):
            return {key: walk(item, f"{location}/{key}") for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item, location) for item in node]
        return node

    return walk(template.value, field)


def evaluate_expression(
    expr: Expression,
    *,
    field: str,
    states: Mapping[str, Any],
    variables: Mapping[str, Any],
    nondeterminism: Nondeterminism,
    limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
) -> Any:
    """Evaluate one expression to plain JSON; raises `QueryEvaluationError` as above."""
    from statemachine.jsonata_eval import Run

    return Run(states, variables, nondeterminism, limits).evaluate(expr, field)


_TYPE_NAMES = ("array", "object", "string", "number", "integer", "boolean", "null")


def check_result_type(value: Any, *, expected: str, field: str, expression_text: str) -> Any:
    """Return `value` if it has the JSON type `expected`, else raise AWS's error.

    `expected` is one of array, object, string, number, integer (a number with
    no fraction; returned as int), boolean, null. Raises `QueryEvaluationError`
    "… returned an unexpected result type. Expected 'array', but was 'boolean'
    for value: true".
    """
    if expected not in _TYPE_NAMES:
        raise ValueError(f"unknown JSON type {expected!r}")
    actual = json_type(value)
    if expected == "integer":
        if type(value) is int:  # any size (`float` of a huge one overflows)
            return value
        if actual == "number" and math.isfinite(value) and float(value).is_integer():
            return int(value)
    elif actual == expected:
        return value
    rendered = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    raise QueryEvaluationError(
        f"The JSONata expression '{expression_text}' specified for the field '{field}' "
        f"returned an unexpected result type. Expected '{expected}', but was '{actual}' "
        f"for value: {rendered}",
        location=field,
    )


def check_variable_name(name: str) -> str | None:
    """Return why `name` cannot be a workflow variable, or None if it can.

    A name has at most 80 characters, is a Unicode identifier (ID_Start then
    ID_Continue characters) and is not the reserved `states`.
    """
    if not name:
        return "A variable name must not be empty"
    if len(name) > _MAX_VARIABLE_NAME:
        return f"The variable name '{name}' is longer than {_MAX_VARIABLE_NAME} characters"
    if name == "states":
        return "The variable name 'states' is reserved"
    if not name.isidentifier():
        return f"The variable name '{name}' is not a valid identifier"
    return None


def json_type(value: Any) -> str:
    """The JSON type name of `value` as AWS's messages spell it (null, boolean, number …)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
