"""The JSONata library at work: compiling `{% … %}` text and evaluating it, bounded.

Everything here touches jsonata-python, so `statemachine.jsonata` imports
this module only when the first expression is compiled or evaluated: a
process whose definitions never use JSONata never loads the library. A
compiled program is the library's Jsonata with the range operator bounded
(`compile_program`, `has_regex`); `Run` is one evaluation call with its
bindings, deadline, depth limit and result conversion, raising
`QueryEvaluationError` worded as AWS words it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from jsonata import jexception, parser, utils
from jsonata.jsonata import Jsonata

from statemachine.errors import ExpressionSyntaxError
from statemachine.jsonata_functions import GuardExceeded, bind_functions, to_jsonata
from statemachine.jsonata_limits import Limits, QueryEvaluationError
from statemachine.nondeterminism import Nondeterminism

__all__ = ["Run", "compile_program", "has_regex"]

_NULL = utils.Utils.NULL_VALUE
_SAFE_INTEGER = 2**53
_EXPONENT_FORM = 10**21


class _GuardedJsonata(Jsonata):  # type: ignore[misc]  # untyped library
    """jsonata-python with the range operator bounded by the evaluation's item limit."""

    max_items: int = Limits().max_items

    def evaluate_range_expression(self, lhs: Any, rhs: Any) -> Any:
        if isinstance(lhs, int | float) and isinstance(rhs, int | float):
            size = rhs - lhs + 1
            if size > self.max_items:
                raise GuardExceeded(f"the range operator would produce {size:g} items")
        return super().evaluate_range_expression(lhs, rhs)


def compile_program(inner: str) -> Any:
    """The library's program for an expression's inner text; raises ExpressionSyntaxError."""
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
    return program


def has_regex(program: Any) -> bool:
    """Whether the compiled program holds a regular-expression literal."""
    return _has_regex(program.ast)


class _Timeout(Exception):
    pass


class _TooDeep(Exception):
    pass


class Run:
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

    def evaluate(self, expr: Any, location: str) -> Any:
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
    def _failure(expr: Any, location: str, detail: str) -> QueryEvaluationError:
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
