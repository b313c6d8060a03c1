"""ASL path syntax: the compiled form of a path and the parser that builds it.

This module owns the text → `Path` compiler of the JSONPath dialect that
JSONPath-mode states use (Jayway's, as AWS runs it): the segment and filter
model a compiled path is made of, the recursive-descent parser with its
position-naming `ExpressionSyntaxError` messages, and the Reference Path rule
(a path naming exactly one node). Evaluating a compiled path and ResultPath's
"put the result here" live in `statemachine.paths`, which re-exports
`Path`, `compile_path` and `compile_reference_path`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from statemachine.errors import ExpressionSyntaxError

if TYPE_CHECKING:
    import regex  # loaded by the first `=~` filter compiled, not with the language

__all__ = ["Path", "compile_path", "compile_reference_path"]


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
    `definite` is True when the path names a single node. `names` is the
    path's property names when every segment is one name (``$.a.b`` →
    ``("a", "b")``; ``$`` → ``()``), else None: such a path is evaluated by
    a plain lookup of each name (`statemachine.paths`), the common case.
    """

    text: str
    root: Literal["input", "context", "variable"]
    variable: str | None
    definite: bool
    segments: tuple[_Segment, ...] = field(repr=False, compare=False)
    names: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

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
    """A `=~` operand: compiled by the `regex` engine, whose matching takes a timeout."""

    source: str
    pattern: regex.Pattern[str]


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
                    if self.peek() == "[":
                        # Jayway reads `.[` as `[`: `$.[0]`, `$.a.[0].b`, `$.[?(@.x)]`.
                        out.append(self.bracket())
                    elif self.peek() == "*":
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
        import regex

        flags = 0
        while self.peek() in ("i", "m", "s") and self.peek():
            flags |= {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL}[self.peek()]
            self.pos += 1
        try:
            return _Regex(source, regex.compile(source, flags))
        except regex.error as exc:
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
    names = None
    if all(isinstance(s, _Name) and len(s.names) == 1 for s in segments):
        names = tuple(s.names[0] for s in segments if isinstance(s, _Name))
    return Path(text, root, variable, definite, segments, names)


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
