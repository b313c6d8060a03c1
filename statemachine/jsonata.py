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
process-level guard of `engine/sandbox.py`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from jsonata import jexception, parser, utils
from jsonata.jsonata import Jsonata

from statemachine.errors import ExpressionSyntaxError, States, StatesError
from statemachine.jsonata_functions import GuardExceeded, bind_functions, to_jsonata
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

_NULL = utils.Utils.NULL_VALUE
_MAX_VARIABLE_NAME = 80
_SAFE_INTEGER = 2**53
_EXPONENT_FORM = 10**21


class Limits(msgspec.Struct, frozen=True):
    """Bounds on one evaluation (one template or one expression).

    `max_depth` bounds the evaluator's recursion and the nesting of the result;
    `max_items` the length of any array/object built and of the result in
    total; `max_string_bytes` any string built and the result's characters in
    total.
    """

    timeout_seconds: float = 1.0
    max_depth: int = 1000
    max_items: int = 100_000
    max_string_bytes: int = 4 * 1024 * 1024


class QueryEvaluationError(StatesError):
    """`States.QueryEvaluationError` with the field it happened in (`location`)."""

    def __init__(self, cause: str, *, location: str, timed_out: bool = False) -> None:
        super().__init__(States.QUERY_EVALUATION_ERROR, cause)
        self.location = location
        # True when the evaluation ran out of time (D1012): the engine may run it again elsewhere.
        self.timed_out = timed_out

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.cause, self.location))


def _rebuild_error(cause: str, location: str) -> QueryEvaluationError:
    return QueryEvaluationError(cause, location=location)


class _GuardedJsonata(Jsonata):  # type: ignore[misc]  # untyped library
    """jsonata-python with the range operator bounded by the evaluation's item limit."""

    max_items: int = Limits().max_items

    def evaluate_range_expression(self, lhs: Any, rhs: Any) -> Any:
        if isinstance(lhs, int | float) and isinstance(rhs, int | float):
            size = rhs - lhs + 1
            if size > self.max_items:
                raise GuardExceeded(f"the range operator would produce {size:g} items")
        return super().evaluate_range_expression(lhs, rhs)


@dataclass(frozen=True, eq=False)
class Expression:
    """One compiled `{% … %}` expression; `text` is its inner source, trimmed."""

    text: str
    source: str
    uses_regex: bool
    _program: _GuardedJsonata = field(repr=False, compare=False)

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
    previous = getattr(Jsonata.CURRENT, "jsonata", None)
    try:
        program = _GuardedJsonata(inner)
    except jexception.JException as error:
        raise ExpressionSyntaxError(f"{error.error}: {_library_message(error)}") from None
    except (RecursionError, ValueError, IndexError) as error:
        raise ExpressionSyntaxError(f"unparsable JSONata expression: {error}") from None
    finally:
        # The library's constructor rebinds a thread-global "current program".
        _restore_current(previous)
    if program.errors:
        raise ExpressionSyntaxError(str(program.errors[0]))
    return Expression(text=inner, source=text, uses_regex=_has_regex(program.ast), _program=program)


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
    run = _Run(states, variables, nondeterminism, limits)

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
    return _Run(states, variables, nondeterminism, limits).evaluate(expr, field)


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


class _Timeout(Exception):
    pass


class _TooDeep(Exception):
    pass


class _Run:
    """One evaluation call: its bindings, its deadline and its counters."""

    def __init__(
        self,
        states: Mapping[str, Any],
        variables: Mapping[str, Any],
        nondeterminism: Nondeterminism,
        limits: Limits,
    ) -> None:
        self._states = states
        self._variables = variables
        self._nondeterminism = nondeterminism
        self._limits = limits
        self._deadline = time.monotonic() + limits.timeout_seconds
        self._frame: Any = None
        self._depth = 0

    def _bindings(self, program: Jsonata) -> Any:
        # Converted once per call: a template's expressions share one frame,
        # hence one $now() and one copy of the (possibly large) input.
        if self._frame is None:
            functions = program.create_frame(program.environment)
            limits = self._limits
            bind_functions(
                functions,
                nondeterminism=self._nondeterminism,
                max_items=limits.max_items,
                max_string_bytes=limits.max_string_bytes,
            )
            frame = program.create_frame(functions)
            for name, value in self._variables.items():
                frame.bind(name, to_jsonata(value))
            frame.bind("states", to_jsonata(dict(self._states)))
            frame.bind("$", None)
            frame.bind("__evaluate_entry", self._on_entry)
            frame.bind("__evaluate_exit", self._on_exit)
            self._frame = frame
        return self._frame

    def _on_entry(self, expr: Any, input: Any, environment: Any) -> None:
        self._depth += 1
        if self._depth > self._limits.max_depth:
            raise _TooDeep
        if time.monotonic() > self._deadline:
            raise _Timeout

    def _on_exit(self, expr: Any, input: Any, environment: Any, result: Any) -> None:
        self._depth -= 1
        limits = self._limits
        if isinstance(result, str):
            if len(result) > limits.max_string_bytes:
                raise GuardExceeded(f"a string of {len(result)} characters was built")
        elif isinstance(result, list | dict) and len(result) > limits.max_items:
            raise GuardExceeded(f"a value of {len(result)} items was built")
        if time.monotonic() > self._deadline:
            raise _Timeout

    def evaluate(self, expr: Expression, location: str) -> Any:
        base = expr._program
        program = copy.copy(base)  # per-call instance: the library keeps state on it
        program.max_items = self._limits.max_items
        previous = getattr(Jsonata.CURRENT, "jsonata", None)
        Jsonata.CURRENT.jsonata = program
        self._depth = 0
        try:
            frame = self._bindings(program)
            raw = program.eval(program.ast, None, frame)
        except jexception.JException as error:
            raise self._failure(
                expr, location, f"{error.error}: {_library_message(error)}"
            ) from None
        except _Timeout:
            failure = self._failure(
                expr,
                location,
                "D1012: Expression evaluation timeout: Check for infinite loop",
            )
            failure.timed_out = True
            raise failure from None
        except (_TooDeep, RecursionError):
            raise self._failure(
                expr,
                location,
                "D1011: Stack overflow error: Check for non-terminating recursive function",
            ) from None
        except GuardExceeded as error:
            raise self._failure(expr, location, f"Evaluation limit exceeded: {error}") from None
        except MemoryError:
            raise self._failure(
                expr, location, "Evaluation limit exceeded: out of memory"
            ) from None
        except (
            TypeError,
            ValueError,
            ArithmeticError,
            KeyError,
            IndexError,
            AttributeError,
        ) as error:
            # The library lets some Python errors through (e.g. sorting mixed types).
            raise self._failure(expr, location, f"{type(error).__name__}: {error}") from None
        finally:
            _restore_current(previous)
        if raw is None:
            raise QueryEvaluationError(
                f"The JSONata expression '{expr.text}' specified for the field '{location}' "
                "returned nothing (undefined).",
                location=location,
            )
        if _is_function(raw):
            raise QueryEvaluationError(
                f"The JSONata expression '{expr.text}' specified for the field '{location}' "
                "returned an unsupported result type.",
                location=location,
            )
        try:
            return _Output(self._limits).convert(raw)
        except GuardExceeded as error:
            raise self._failure(expr, location, f"Evaluation limit exceeded: {error}") from None
        except _NotUnicode:
            raise self._failure(
                expr, location, "The result holds a lone surrogate (not valid Unicode)."
            ) from None

    @staticmethod
    def _failure(expr: Expression, location: str, detail: str) -> QueryEvaluationError:
        return QueryEvaluationError(
            f"The JSONata expression '{expr.text}' specified for the field '{location}' "
            f"threw an error during evaluation. {detail}",
            location=location,
        )


class _Output:
    """Turns a library result into plain JSON, bounded in size and nesting."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._items = 0
        self._chars = 0

    def convert(self, value: Any, depth: int = 0) -> Any:
        if depth > self._limits.max_depth:
            raise GuardExceeded(f"the result is nested deeper than {self._limits.max_depth}")
        if value is None or value is _NULL:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, float):
            # Only where the integer is exact in a double, as AWS's JSON writes it.
            return int(value) if value.is_integer() and abs(value) <= _SAFE_INTEGER else value
        if isinstance(value, int):
            # The library turns every integral double into an int; JavaScript
            # (and so AWS) writes those of 1e21 and beyond in exponent form.
            return float(value) if abs(value) >= _EXPONENT_FORM else value
        if isinstance(value, str):
            self._chars += len(value)
            self._check()
            _check_unicode(value)
            return value
        if isinstance(value, dict):
            self._items += len(value)
            self._check()
            return {
                _check_unicode(key): self.convert(item, depth + 1)
                for key, item in value.items()
                if item is not None and not _is_function(item)
            }
        if isinstance(value, list):
            self._items += len(value)
            self._check()
            # JSON.stringify writes a function inside an array as null.
            return [None if _is_function(item) else self.convert(item, depth + 1) for item in value]
        if _is_function(value):
            return None
        return str(value)

    def _check(self) -> None:
        if self._items > self._limits.max_items:
            raise GuardExceeded(f"the result holds more than {self._limits.max_items} items")
        if self._chars > self._limits.max_string_bytes:
            raise GuardExceeded(
                f"the result holds more than {self._limits.max_string_bytes} characters"
            )


class _NotUnicode(Exception):
    """A result string holding a lone surrogate: no UTF-8 JSON can carry it."""


def _check_unicode(text: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _NotUnicode from None
    return text


def _is_function(value: Any) -> bool:
    return isinstance(value, Jsonata.JFunctionCallable | parser.Parser.Symbol)


def _library_message(error: jexception.JException) -> str:
    # jsonata-python inherits jsonata-java's catalogue, which says "Object"
    # where jsonata-js (and so AWS) says "function".
    message = str(error.args[0]) if error.args else str(error)
    return message.replace("Object ", "function ").replace(" Object", " function")


def _restore_current(previous: Any) -> None:
    if previous is None:
        if hasattr(Jsonata.CURRENT, "jsonata"):
            del Jsonata.CURRENT.jsonata
    else:
        Jsonata.CURRENT.jsonata = previous


def _has_regex(node: Any) -> bool:
    stack = [node]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, parser.Parser.Symbol):
            if getattr(item, "type", None) == "regex":
                return True
            stack.extend(
                child
                for name, child in vars(item).items()
                if name != "_outer_instance" and child is not None
            )
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False
