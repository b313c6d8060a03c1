"""ASL paths: the JSONPath dialect of JSONPath-mode states, compiled once.

This module owns the text → `Path` compiler, evaluation of a path against the
state input (``$``), the context object (``$$``) or a variable (``$name``), and
ResultPath's "put the result here" operation. AWS evaluates paths with Jayway
JsonPath, so this follows Jayway rather than RFC 9535: a *definite* path
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
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from statemachine.errors import ExpressionSyntaxError, States, StatesError

__all__ = [
    "MISSING",
    "Path",
    "apply_result_path",
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


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class _Name:
    names: tuple[str, ...]

    def jayway(self) -> str:
        return "[" + ",".join(f"'{n}'" for n in self.names) + "]"


@dataclass(frozen=True, slots=True)
class _Index:
    indexes: tuple[int, ...]

    def jayway(self) -> str:
        return "[" + ",".join(str(i) for i in self.indexes) + "]"


@dataclass(frozen=True, slots=True)
class _Wildcard:
    def jayway(self) -> str:
        return "[*]"


@dataclass(frozen=True, slots=True)
class _Slice:
    start: int | None
    end: int | None

    def jayway(self) -> str:
        start = "" if self.start is None else str(self.start)
        end = "" if self.end is None else str(self.end)
        return f"[{start}:{end}]"


@dataclass(frozen=True, slots=True)
class _Filter:
    predicate: _Predicate

    def jayway(self) -> str:
        return "[?]"


@dataclass(frozen=True, slots=True)
class _Scan:
    then: _Segment

    def jayway(self) -> str:
        return ".." + self.then.jayway()


_Segment = _Name | _Index | _Wildcard | _Slice | _Filter | _Scan


def _segment_definite(segment: _Segment) -> bool:
    if isinstance(segment, _Name):
        return len(segment.names) == 1
    if isinstance(segment, _Index):
        return len(segment.indexes) == 1
    return False


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled ASL path.

    `root` says which document the path starts from: ``input`` (``$``),
    ``context`` (``$$``) or ``variable`` (``$name``, with `variable` = name).
    `definite` is True when the path names a single node.
    """

    text: str
    root: Literal["input", "context", "variable"]
    variable: str | None
    definite: bool
    segments: tuple[_Segment, ...] = field(repr=False, compare=False)

    def __str__(self) -> str:
        return self.text

    def jayway(self) -> str:
        """The normalized form Jayway prints in its messages (``$['a'][0]``)."""
        return _root_text(self) + "".join(s.jayway() for s in self.segments)


def _root_text(path: Path) -> str:
    if path.root == "context":
        return "$$"
    if path.root == "variable":
        return f"${path.variable}"
    return "$"


# ------------------------------------------------------------------ filter model


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class _RelativePath:
    """``@…`` (relative to the filtered item) or ``$…`` (relative to the document)."""

    relative: bool
    segments: tuple[_Segment, ...]
    definite: bool


@dataclass(frozen=True, slots=True)
class _Regex:
    pattern: re.Pattern[str]


_Operand = _Literal | _RelativePath | _Regex


@dataclass(frozen=True, slots=True)
class _Compare:
    left: _Operand
    op: str | None  # None: existence / truthiness test of `left`
    right: _Operand | None


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Predicate


@dataclass(frozen=True, slots=True)
class _Logical:
    op: Literal["&&", "||"]
    left: _Predicate
    right: _Predicate


_Predicate = _Compare | _Not | _Logical


# ------------------------------------------------------------------------ parser

_COMPARISON_OPS: Final = ("==", "!=", "<=", ">=", "=~", "<", ">")
_WORD_OPS: Final = ("nin", "in")
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_INT: Final = re.compile(r"\s*-?\d+\s*")


def _is_id_start(ch: str) -> bool:
    return ch == "_" or ch.isidentifier()


def _is_id_continue(ch: str) -> bool:
    return ("a" + ch).isidentifier()


class _Parser:
    """Recursive-descent parser over one path text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> ExpressionSyntaxError:
        return ExpressionSyntaxError(
            f"Invalid JSONPath '{self.text}' at position {self.pos}: {message}"
        )

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek().isspace():
            self.pos += 1

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise self.fail(f"expected '{token}'")
        self.pos += len(token)

    # segments ---------------------------------------------------------------

    def segments(self, stop: str) -> tuple[_Segment, ...]:
        """Parse segments until the end of text or a character in `stop`."""
        out: list[_Segment] = []
        while self.pos < len(self.text) and self.peek() not in stop:
            ch = self.peek()
            if ch == ".":
                if self.peek(1) == ".":
                    self.pos += 2
                    if self.peek() == "[":
                        out.append(_Scan(self.bracket()))
                    elif self.peek() == "*":
                        self.pos += 1
                        out.append(_Scan(_Wildcard()))
                    else:
                        out.append(_Scan(_Name((self.dot_name(stop),))))
                else:
                    self.pos += 1
                    if self.peek() == "*":
                        self.pos += 1
                        out.append(_Wildcard())
                    else:
                        out.append(_Name((self.dot_name(stop),)))
            elif ch == "[":
                out.append(self.bracket())
            else:
                raise self.fail(f"unexpected character '{ch}'")
        return tuple(out)

    def dot_name(self, stop: str) -> str:
        start = self.pos
        while self.pos < len(self.text):
            ch = self.peek()
            if ch in ".[" or ch in stop:
                break
            if ch == "(":
                raise self.fail("JSONPath functions are not supported")
            if ch.isspace():
                raise self.fail("use bracket notation ['my prop'] for names with blanks")
            if ch in "])'\"":
                raise self.fail(f"unexpected character '{ch}'")
            self.pos += 1
        if self.pos == start:
            raise self.fail("empty property name")
        return self.text[start : self.pos]

    def bracket(self) -> _Segment:
        self.expect("[")
        self.skip_spaces()
        ch = self.peek()
        segment: _Segment
        if ch in "'\"":
            names = [self.quoted()]
            self.skip_spaces()
            while self.peek() == ",":
                self.pos += 1
                self.skip_spaces()
                if self.peek() not in ("'", '"'):
                    raise self.fail("expected a quoted property name")
                names.append(self.quoted())
                self.skip_spaces()
            segment = _Name(tuple(names))
        elif ch == "*":
            self.pos += 1
            segment = _Wildcard()
        elif ch == "?":
            self.pos += 1
            self.skip_spaces()
            self.expect("(")
            predicate = self.predicate_or()
            self.skip_spaces()
            self.expect(")")
            segment = _Filter(predicate)
        else:
            end = self.text.find("]", self.pos)
            if end < 0:
                raise self.fail("unterminated '['")
            body = self.text[self.pos : end]
            if ":" in body:
                parts = body.split(":")
                if len(parts) != 2 or any(p.strip() and not _INT.fullmatch(p) for p in parts):
                    raise self.fail(f"invalid array slice '[{body}]'")
                start = int(parts[0]) if parts[0].strip() else None
                stop = int(parts[1]) if parts[1].strip() else None
                segment = _Slice(start, stop)
            else:
                parts = body.split(",")
                if not all(_INT.fullmatch(p) for p in parts):
                    raise self.fail(f"invalid array index '[{body}]'")
                segment = _Index(tuple(int(p) for p in parts))
            self.pos = end
        self.skip_spaces()
        self.expect("]")
        return segment

    def quoted(self) -> str:
        quote = self.peek()
        self.pos += 1
        chars: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise self.fail("unterminated quoted name")
            if ch == "\\" and self.peek(1) == quote:
                # Only an escaped delimiter is unescaped; AWS keeps any other
                # backslash literally (conformance: `$['Test\\""Name"']`).
                chars.append(quote)
                self.pos += 2
                continue
            self.pos += 1
            if ch == quote:
                return "".join(chars)
            chars.append(ch)

    # filter predicates ------------------------------------------------------

    def predicate_or(self) -> _Predicate:
        left = self.predicate_and()
        while True:
            self.skip_spaces()
            if not self.text.startswith("||", self.pos):
                return left
            self.pos += 2
            left = _Logical("||", left, self.predicate_and())

    def predicate_and(self) -> _Predicate:
        left = self.predicate_unary()
        while True:
            self.skip_spaces()
            if not self.text.startswith("&&", self.pos):
                return left
            self.pos += 2
            left = _Logical("&&", left, self.predicate_unary())

    def predicate_unary(self) -> _Predicate:
        self.skip_spaces()
        if self.peek() == "!" and self.peek(1) != "=":
            self.pos += 1
            return _Not(self.predicate_unary())
        if self.peek() == "(":
            self.pos += 1
            inner = self.predicate_or()
            self.skip_spaces()
            self.expect(")")
            return inner
        left = self.operand()
        self.skip_spaces()
        for op in _COMPARISON_OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return _Compare(left, op, self.operand())
        for op in _WORD_OPS:
            if self.text.startswith(op, self.pos) and not _is_id_continue(
                self.peek(len(op)) or " "
            ):
                self.pos += len(op)
                return _Compare(left, op, self.operand())
        return _Compare(left, None, None)

    def operand(self) -> _Operand:
        self.skip_spaces()
        ch = self.peek()
        if ch in ("@", "$"):
            self.pos += 1
            segments = self.segments(stop=" \t\n\r)=!<>&|,")
            definite = all(_segment_definite(s) for s in segments)
            return _RelativePath(ch == "@", segments, definite)
        if ch in ("'", '"'):
            return _Literal(self.quoted())
        if ch == "/":
            return self.regex()
        if ch == "[":
            return _Literal(self.json_array())
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            number = match.group()
            is_int = not any(c in number for c in ".eE")
            return _Literal(int(number) if is_int else float(number))
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return _Literal(value)
        raise self.fail("expected a filter operand")

    def regex(self) -> _Regex:
        end = self.pos + 1
        while end < len(self.text) and self.text[end] != "/":
            end += 2 if self.text[end] == "\\" else 1
        if end >= len(self.text):
            raise self.fail("unterminated regular expression")
        source = self.text[self.pos + 1 : end]
        self.pos = end + 1
        flags = 0
        while self.peek() in ("i", "m", "s") and self.peek():
            flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}[self.peek()]
            self.pos += 1
        try:
            return _Regex(re.compile(source, flags))
        except re.error as exc:
            raise self.fail(f"invalid regular expression: {exc}") from None

    def json_array(self) -> list[Any]:
        # Filter array literals may use single quotes; swapping them keeps offsets.
        try:
            value, end = json.JSONDecoder().raw_decode(self.text.replace("'", '"'), self.pos)
        except ValueError:
            raise self.fail("invalid array literal") from None
        self.pos = end
        return list(value)


def compile_path(text: str) -> Path:
    """Compile any ASL path (``$…``, ``$$…`` or ``$name…``).

    Raises `ExpressionSyntaxError`, naming the path and position, when the
    text is not a path this dialect accepts.
    """
    if not isinstance(text, str) or not text.startswith("$"):
        raise ExpressionSyntaxError(f"Invalid JSONPath '{text}': a path must start with '$'")
    parser = _Parser(text)
    root: Literal["input", "context", "variable"]
    variable: str | None = None
    if text.startswith("$$"):
        root = "context"
        parser.pos = 2
    elif len(text) > 1 and _is_id_start(text[1]):
        root = "variable"
        end = 2
        while end < len(text) and _is_id_continue(text[end]):
            end += 1
        variable = text[1:end]
        parser.pos = end
    else:
        root = "input"
        parser.pos = 1
    segments = parser.segments(stop="")
    definite = all(_segment_definite(s) for s in segments)
    return Path(text, root, variable, definite, segments)


def compile_reference_path(text: str) -> Path:
    """Compile a Reference Path: a path naming exactly one node.

    Rejects the characters ``@ , : ? *``, recursive descent and anything else
    that could match more than one node. Raises `ExpressionSyntaxError`.
    """
    if isinstance(text, str):
        for ch in "@,:?*":
            if ch in text:
                raise ExpressionSyntaxError(
                    f"Invalid Reference Path '{text}': the character '{ch}' is not allowed"
                )
        if ".." in text:
            raise ExpressionSyntaxError(
                f"Invalid Reference Path '{text}': recursive descent '..' is not allowed"
            )
    path = compile_path(text)
    if not path.definite:
        raise ExpressionSyntaxError(f"Invalid Reference Path '{text}': must name a single node")
    return path


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


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return op == "!=" and not (left is MISSING and right is MISSING)
    if op == "==":
        return json_equal(left, right)
    if op == "!=":
        return not json_equal(left, right)
    if op == "=~":
        return (
            isinstance(right, _Regex)
            and isinstance(left, str)
            and bool(right.pattern.fullmatch(left))
        )
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
    try:
        return _evaluate(path, data, context, variables)
    except _NotFound:
        return MISSING


def resolve(path: Path, data: Any, context: Any, variables: Mapping[str, Any]) -> Any:
    """Like `find`, but a path that selects nothing raises `StatesError`.

    The error is ``States.Runtime`` with AWS's cause, e.g.
    ``Invalid path '$.no.such' : Missing property in path $['no']``.
    """
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
