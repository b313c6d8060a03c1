"""ASL paths: the JSONPath dialect of JSONPath-mode states, compiled once.

This module owns evaluation of a compiled path against the state input
(``$``), the context object (``$$``) or a variable (``$name``), and
ResultPath's "put the result here" operation; the text → `Path` compiler
lives in `statemachine.path_syntax` and is re-exported here. AWS evaluates
paths with Jayway JsonPath, so this follows Jayway rather than RFC 9535: a *definite* path
(no wildcard, slice, filter, union or ``..``) yields the bare value and fails
when nothing matches, an indefinite path gathers its matches into a list
(possibly empty), and the failure messages use Jayway's wording
(``Missing property in path $['no']``, ``No results for path: $['x']``),
which AWS copies into its ``States.Runtime`` causes. JSONPath functions such as
``length()`` are rejected: AWS's validator does not accept them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from statemachine.errors import States, StatesError
from statemachine.path_syntax import (
    Path,
    _Filter,
    _Index,
    _Literal,
    _Logical,
    _Name,
    _Not,
    _Operand,
    _Predicate,
    _Regex,
    _RelativePath,
    _root_text,
    _Segment,
    _Slice,
    _Wildcard,
    compile_path,
    compile_reference_path,
)

__all__ = [
    "MISSING",
    "Finder",
    "Path",
    "apply_result_path",
    "compile_find",
    "compile_path",
    "compile_reference_path",
    "find",
    "json_equal",
    "resolve",
    "to_json",
]


class _Missing:
    """Type of the `MISSING` sentinel."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()
"""Returned by `find` when a path matches nothing."""


def to_json(value: Any) -> str:
    """Compact JSON text of `value`, the way AWS prints payloads in error causes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -------------------------------------------------------------------- evaluation


class _NotFound(Exception):
    """A definite step of a path found nothing; the message is Jayway's."""


def _java_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "java.lang.Boolean"
    if isinstance(value, int):
        return "java.lang.Integer"
    if isinstance(value, float):
        return "java.lang.Double"
    if isinstance(value, str):
        return "java.lang.String"
    if isinstance(value, list):
        return "net.minidev.json.JSONArray"
    return "net.minidev.json.JSONObject"


def _java_text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_java_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_java_text(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_array(segment: _Segment, node: Any, current: str, definite_so_far: bool) -> bool:
    if isinstance(node, list):
        return True
    if definite_so_far:
        if node is None:
            raise _NotFound(f"The path {current} is null")
        raise _NotFound(
            f"Filter: {segment.jayway()} can only be applied to arrays. "
            f"Current context is: {_java_text(node)}"
        )
    return False


_Emit = Callable[[Any], None]


def _walk(
    segments: tuple[_Segment, ...],
    i: int,
    node: Any,
    current: str,
    definite_so_far: bool,
    root: Any,
    emit: _Emit,
) -> None:
    if i == len(segments):
        emit(node)
        return
    segment = segments[i]
    leaf = i == len(segments) - 1

    if isinstance(segment, _Name):
        if not isinstance(node, dict):
            if definite_so_far and len(segment.names) == 1:
                raise _NotFound(
                    f"Expected to find an object with property {segment.jayway()} in path "
                    f"{current} but found '{_java_type(node)}'. This is not a json object "
                    "according to the JsonProvider: "
                    "'com.jayway.jsonpath.spi.json.JsonSmartJsonProvider'."
                )
            return
        if len(segment.names) == 1:
            name = segment.names[0]
            if name not in node:
                if not leaf and definite_so_far:
                    raise _NotFound(f"Missing property in path {current}['{name}']")
                return
            _walk(segments, i + 1, node[name], f"{current}['{name}']", definite_so_far, root, emit)
            return
        for name in segment.names:
            if name in node:
                _walk(segments, i + 1, node[name], f"{current}['{name}']", False, root, emit)
        return

    if isinstance(segment, _Index):
        if not _check_array(segment, node, current, definite_so_far):
            return
        single = len(segment.indexes) == 1
        for index in segment.indexes:
            effective = index + len(node) if index < 0 else index
            if 0 <= effective < len(node):
                _walk(
                    segments,
                    i + 1,
                    node[effective],
                    f"{current}[{index}]",
                    definite_so_far and single,
                    root,
                    emit,
                )
        return

    if isinstance(segment, _Wildcard):
        if isinstance(node, dict):
            for key, value in node.items():
                _walk(segments, i + 1, value, f"{current}['{key}']", False, root, emit)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                _walk(segments, i + 1, value, f"{current}[{index}]", False, root, emit)
        return

    if isinstance(segment, _Slice):
        if not _check_array(segment, node, current, definite_so_far):
            return
        indexes = range(len(node))[segment.start : segment.end]
        for index in indexes:
            _walk(segments, i + 1, node[index], f"{current}[{index}]", False, root, emit)
        return

    if isinstance(segment, _Filter):
        if isinstance(node, list):
            for index, value in enumerate(node):
                if _test(segment.predicate, value, root):
                    _walk(segments, i + 1, value, f"{current}[{index}]", False, root, emit)
        elif isinstance(node, dict) and _test(segment.predicate, node, root):
            _walk(segments, i + 1, node, current, False, root, emit)
        return

    # _Scan: apply the next step at this node and at every container below it,
    # in document (pre-)order, as Jayway's ScanPathToken does.
    rest = (segment.then, *segments[i + 1 :])

    def visit(value: Any, path_text: str) -> None:
        if isinstance(value, dict):
            if not isinstance(segment.then, _Name) or any(n in value for n in segment.then.names):
                _walk(rest, 0, value, path_text, False, root, emit)
            for key, child in value.items():
                visit(child, f"{path_text}['{key}']")
        elif isinstance(value, list):
            if not isinstance(segment.then, _Name):
                _walk(rest, 0, value, path_text, False, root, emit)
            for index, child in enumerate(value):
                visit(child, f"{path_text}[{index}]")

    visit(node, current)


# filter evaluation -------------------------------------------------------------


def _operand_value(operand: _Operand, item: Any, root: Any) -> Any:
    if isinstance(operand, _Literal):
        return operand.value
    if isinstance(operand, _Regex):
        return operand
    found: list[Any] = []
    try:
        _walk(
            operand.segments, 0, item if operand.relative else root, "@", False, root, found.append
        )
    except _NotFound:
        return MISSING
    if operand.definite:
        return found[0] if found else MISSING
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(left: Any, right: Any) -> bool:
    """JSON equality: numbers by value, never a boolean equal to a number."""
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if type(left) is not type(right):
        return False
    if isinstance(left, list):
        if len(left) != len(right):
            return False
        return all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    return bool(left == right)


# How long one `=~` match may run on the event loop. A catastrophically
# backtracking pattern stops here instead of wedging the worker.
REGEX_TIMEOUT_SECONDS: Final = 0.25


def _full_match(operand: _Regex, text: str) -> bool:
    try:
        return operand.pattern.fullmatch(text, timeout=REGEX_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        raise StatesError(
            States.RUNTIME,
            f"The regular expression /{operand.source}/ did not finish matching a "
            f"{len(text)}-character string within {REGEX_TIMEOUT_SECONDS} s "
            "(catastrophic backtracking).",
        ) from None


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return op == "!=" and not (left is MISSING and right is MISSING)
    if op == "==":
        return json_equal(left, right)
    if op == "!=":
        return not json_equal(left, right)
    if op == "=~":
        return isinstance(right, _Regex) and isinstance(left, str) and _full_match(right, left)
    if op in ("in", "nin"):
        if not isinstance(right, list):
            return False
        contained = any(json_equal(left, r) for r in right)
        return contained if op == "in" else not contained
    comparable = (_is_number(left) and _is_number(right)) or (
        isinstance(left, str) and isinstance(right, str)
    )
    if not comparable:
        return False
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def _test(predicate: _Predicate, item: Any, root: Any) -> bool:
    if isinstance(predicate, _Logical):
        if predicate.op == "&&":
            return _test(predicate.left, item, root) and _test(predicate.right, item, root)
        return _test(predicate.left, item, root) or _test(predicate.right, item, root)
    if isinstance(predicate, _Not):
        return not _test(predicate.operand, item, root)
    left = _operand_value(predicate.left, item, root)
    if predicate.op is None or predicate.right is None:
        if isinstance(predicate.left, _RelativePath):
            return left is not MISSING
        return bool(left)
    return _compare(predicate.op, left, _operand_value(predicate.right, item, root))


# public evaluation ---------------------------------------------------------------


def _lookup(path: Path, data: Any, context: Any, variables: Mapping[str, Any]) -> Any:
    """A path of names only (`Path.names`) by plain lookups: its value, or MISSING.

    What `_evaluate` finds for such a path, without its walk: a definite
    path of single names selects the node each name leads to, and nothing
    when one is missing or its parent is not an object. MISSING also for a
    path with other segments, and for an undefined variable; `_evaluate`
    then says why.
    """
    names = path.names
    if names is None:
        return MISSING
    root = path.root
    if root == "input":
        node = data
    elif root == "context":
        node = context
    else:
        variable = path.variable
        if variable is None or variable not in variables:
            return MISSING
        node = variables[variable]
    for name in names:
        if not isinstance(node, dict) or name not in node:
            return MISSING
        node = node[name]
    return node


def _evaluate(path: Path, data: Any, context: Any, variables: Mapping[str, Any]) -> Any:
    """Evaluate `path`; raises `_NotFound` with Jayway's message when nothing matches."""
    if path.root == "input":
        document = data
    elif path.root == "context":
        document = context
    else:
        assert path.variable is not None
        if path.variable not in variables:
            raise _NotFound(f"The variable '{path.variable}' is not defined")
        document = variables[path.variable]
    results: list[Any] = []
    # AWS never fails an indefinite path, even when a definite prefix of it is
    # missing (`$.items[*]` on `{}` is `[]`): only definite paths raise.
    _walk(path.segments, 0, document, _root_text(path), path.definite, document, results.append)
    if path.definite:
        if not results:
            raise _NotFound(f"No results for path: {path.jayway()}")
        return results[0]
    return results


def find(path: Path, data: Any, context: Any, variables: Mapping[str, Any]) -> Any:
    """Value(s) `path` selects, or `MISSING` when it selects nothing.

    A definite path gives the bare value; an indefinite path gives a list of
    its matches, ``[]`` when there are none. The returned value is not
    copied. Never raises for data reasons.
    """
    if path.names is not None:  # names only: found by lookups, or nothing
        return _lookup(path, data, context, variables)
    try:
        return _evaluate(path, data, context, variables)
    except _NotFound:
        return MISSING


Finder = Callable[[Any, Any, Mapping[str, Any]], Any]
"""`find` for one path: (data, context, variables) → its value(s), or MISSING."""


def compile_find(path: Path) -> Finder:
    """`find` for `path` with its root and names worked out once (a Choice rule's Variable).

    A path rooted at ``$`` of one or two names (``$.v``, ``$.a.b``) is two
    or three plain lookups in one call; any other path is `find` itself.
    Same values and same MISSING as `find`, for any data.
    """
    names = path.names
    if path.root != "input" or names is None or not 1 <= len(names) <= 2:
        return lambda data, context, variables: find(path, data, context, variables)
    if len(names) == 1:
        (name,) = names

        def one_name(data: Any, _context: Any, _variables: Mapping[str, Any]) -> Any:
            return data.get(name, MISSING) if isinstance(data, dict) else MISSING

        return one_name
    first, second = names

    def two_names(data: Any, _context: Any, _variables: Mapping[str, Any]) -> Any:
        node = data.get(first, MISSING) if isinstance(data, dict) else MISSING
        return node.get(second, MISSING) if isinstance(node, dict) else MISSING

    return two_names


def resolve(path: Path, data: Any, context: Any, variables: Mapping[str, Any]) -> Any:
    """Like `find`, but a path that selects nothing raises `StatesError`.

    The error is ``States.Runtime`` with AWS's cause, e.g.
    ``Invalid path '$.no.such' : Missing property in path $['no']``.
    """
    value = _lookup(path, data, context, variables)
    if value is not MISSING:
        return value
    try:
        return _evaluate(path, data, context, variables)
    except _NotFound as exc:
        raise StatesError(States.RUNTIME, f"Invalid path '{path.text}' : {exc}") from None


def apply_result_path(raw_input: Any, result_path: Path | None, result: Any) -> Any:
    """Place `result` into `raw_input` where `result_path` says, as ResultPath does.

    ``None`` (ResultPath null) discards the result and returns `raw_input`;
    ``$`` returns `result`; ``$.a.b`` returns a deep copy of `raw_input` with
    ``a.b`` set, creating missing intermediate objects. `raw_input` is never
    mutated. Raises ``States.ResultPathMatchFailure`` when the path runs into
    something that is not an object (or an array, for an index step).
    """
    if result_path is None:
        return raw_input
    if not result_path.segments:
        return result
    if result_path.root != "input" or not result_path.definite:
        raise StatesError(
            States.RESULT_PATH_MATCH_FAILURE,
            f"Unable to apply ReferencePath {result_path.text} to input {to_json(raw_input)}",
        )
    output = copy.deepcopy(raw_input)
    node = output
    segments = result_path.segments
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if isinstance(segment, _Name) and isinstance(node, dict):
            name = segment.names[0]
            if last:
                node[name] = result
            else:
                if name not in node:
                    node[name] = {}
                node = node[name]
            continue
        if isinstance(segment, _Index) and isinstance(node, list):
            index = segment.indexes[0]
            effective = index + len(node) if index < 0 else index
            if 0 <= effective < len(node):
                if last:
                    node[effective] = result
                else:
                    node = node[effective]
                continue
        raise StatesError(
            States.RESULT_PATH_MATCH_FAILURE,
            f"Unable to apply ReferencePath {result_path.text} to input {to_json(raw_input)}",
        )
    return output
