"""Intrinsic functions (``States.Format(…)`` and friends) of JSONPath mode.

This module owns the intrinsic call grammar (names, string/number/boolean/null
literals, paths and nested calls, at most 10 calls deep), compiling a call text
into an immutable call tree once, and evaluating that tree with AWS's results:
``States.Format`` renders objects and arrays the way Java's ``toString`` does
(``{a=1, b=[]}``), ``States.MathAdd`` rounds non-integers half-up as Java's
``Math.round``, ``States.StringSplit`` drops empty pieces, ``States.StringToJson``
of a blank string is ``null``. Static mistakes (unknown function, wrong argument
count, bad escape, literal of the wrong type) raise `ExpressionSyntaxError`;
failures at run time raise ``States.IntrinsicFailure``. Randomness comes only
from the caller's `Nondeterminism`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from statemachine.calls import is_intrinsic
from statemachine.errors import ExpressionSyntaxError, States, StatesError
from statemachine.jsontext import JsonTextError, loads_checked
from statemachine.nondeterminism import Nondeterminism
from statemachine.paths import Path, compile_path, json_equal, resolve, to_json

__all__ = [
    "FUNCTIONS",
    "Intrinsic",
    "compile_intrinsic",
    "evaluate_intrinsic",
    "intrinsic_paths",
    "is_intrinsic",
]

MAX_NESTING: Final = 10
MAX_ARRAY_RANGE: Final = 1000
MAX_STRING_INPUT: Final = 10_000

# name → (minimum, maximum) number of arguments; None = unbounded
FUNCTIONS: Final[Mapping[str, tuple[int, int | None]]] = {
    "States.Format": (1, None),
    "States.StringToJson": (1, 1),
    "States.JsonToString": (1, 1),
    "States.Array": (0, None),
    "States.ArrayPartition": (2, 2),
    "States.ArrayContains": (2, 2),
    "States.ArrayRange": (3, 3),
    "States.ArrayGetItem": (2, 2),
    "States.ArrayLength": (1, 1),
    "States.ArrayUnique": (1, 1),
    "States.Base64Encode": (1, 1),
    "States.Base64Decode": (1, 1),
    "States.Hash": (2, 2),
    "States.JsonMerge": (3, 3),
    "States.MathRandom": (2, 3),
    "States.MathAdd": (2, 2),
    "States.StringSplit": (2, 2),
    "States.UUID": (0, 0),
}

_HASH_ALGORITHMS: Final = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}
_NAME: Final = re.compile(r"[A-Za-z0-9_.]+")
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
# AWS rejects `\"` inside an intrinsic's string literal at CreateStateMachine
# (LocalStack's AWS-recorded `test_illegal_escapes`), so it is not listed here.
_ESCAPES: Final = {
    "'": "'",
    "{": "{",
    "}": "}",
    "\\": "\\",
    "/": "/",
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
}


@dataclass(frozen=True, slots=True)
class _StringLiteral:
    value: str
    # The text split at its unescaped `{}` placeholders, for States.Format.
    format_parts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class _PathArgument:
    path: Path


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    arguments: tuple[_Argument, ...]


_Argument = _StringLiteral | _Literal | _PathArgument | _Call


@dataclass(frozen=True, slots=True)
class Intrinsic:
    """A compiled intrinsic function call; `text` is the source."""

    text: str
    call: _Call

    def __str__(self) -> str:
        return self.text


# ------------------------------------------------------------------------ parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> ExpressionSyntaxError:
        return ExpressionSyntaxError(
            f"Invalid intrinsic function '{self.text}' at position {self.pos}: {message}"
        )

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek().isspace():
            self.pos += 1

    def call(self, depth: int) -> _Call:
        if depth > MAX_NESTING:
            raise self.fail(f"intrinsic functions nest at most {MAX_NESTING} deep")
        self.skip_spaces()
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a function name")
        name = match.group()
        if name not in FUNCTIONS:
            raise self.fail(f"unknown intrinsic function '{name}'")
        self.pos = match.end()
        self.skip_spaces()
        if self.peek() != "(":
            raise self.fail("expected '('")
        self.pos += 1
        arguments: list[_Argument] = []
        self.skip_spaces()
        if self.peek() == ")":
            self.pos += 1
        else:
            while True:
                arguments.append(self.argument(depth))
                self.skip_spaces()
                if self.peek() == ",":
                    self.pos += 1
                    continue
                if self.peek() == ")":
                    self.pos += 1
                    break
                raise self.fail("expected ',' or ')'")
        low, high = FUNCTIONS[name]
        if len(arguments) < low or (high is not None and len(arguments) > high):
            expected = str(low) if low == high else f"{low}..{'' if high is None else high}"
            raise self.fail(f"{name} takes {expected} arguments, got {len(arguments)}")
        result = _Call(name, tuple(arguments))
        _check_static(result, self)
        return result

    def argument(self, depth: int) -> _Argument:
        self.skip_spaces()
        ch = self.peek()
        if ch == "'":
            return self.string()
        if ch == "$":
            return _PathArgument(self.path())
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            number = match.group()
            is_int = not any(c in number for c in ".eE")
            return _Literal(int(number) if is_int else float(number))
        for word, value in (("true", True), ("false", False), ("null", None)):
            end = self.pos + len(word)
            if self.text.startswith(word, self.pos) and not _NAME.match(self.text[end : end + 1]):
                self.pos = end
                return _Literal(value)
        if _NAME.match(self.text, self.pos):
            return self.call(depth + 1)
        raise self.fail("expected an argument")

    def string(self) -> _StringLiteral:
        self.pos += 1
        chars: list[str] = []
        parts: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise self.fail("unterminated string literal")
            self.pos += 1
            if ch == "'":
                parts.append("".join(chars))
                return _StringLiteral("".join(parts), tuple(_split_parts(parts)))
            if ch == "\\":
                escaped = self.peek()
                if escaped == "u" and re.fullmatch(
                    r"[0-9a-fA-F]{4}", self.text[self.pos + 1 :][:4]
                ):
                    chars.append(chr(int(self.text[self.pos + 1 : self.pos + 5], 16)))
                    self.pos += 5
                    continue
                if escaped not in _ESCAPES:
                    raise self.fail(f"invalid escape sequence '\\{escaped}' in string literal")
                chars.append(_ESCAPES[escaped])
                self.pos += 1
                continue
            if ch == "{" and self.peek() == "}":
                # An unescaped `{}` is a States.Format placeholder: remember
                # where it was, since `\{\}` reads the same once unescaped.
                self.pos += 1
                parts.append("".join(chars))
                parts.append("{}")
                chars = []
                continue
            chars.append(ch)

    def path(self) -> Path:
        start = self.pos
        depth = 0
        quote = ""
        while self.pos < len(self.text):
            ch = self.peek()
            if quote:
                if ch == "\\":
                    self.pos += 1
                elif ch == quote:
                    quote = ""
            elif ch in ("'", '"'):
                quote = ch
            elif ch in "[(":
                depth += 1
            elif ch in "])":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "," and depth == 0:
                break
            self.pos += 1
        return compile_path(self.text[start : self.pos].rstrip())


def _split_parts(pieces: list[str]) -> list[str]:
    """Turn [text, "{}", text, …] into the texts between placeholders."""
    out: list[str] = [""]
    for piece in pieces:
        if piece == "{}":
            out.append("")
        else:
            out[-1] += piece
    return out


def _check_static(call: _Call, parser: _Parser) -> None:
    """Reject literal arguments that can never work (AWS rejects them at creation)."""
    args = call.arguments
    if call.name == "States.Format":
        template = args[0]
        if isinstance(template, _Literal):
            raise parser.fail("the first argument of States.Format must be a string")
        if isinstance(template, _StringLiteral) and len(template.format_parts) - 1 != len(args) - 1:
            raise parser.fail(
                f"States.Format has {len(template.format_parts) - 1} placeholders "
                f"but {len(args) - 1} arguments"
            )
    merge_flag = args[2] if call.name == "States.JsonMerge" else None
    if isinstance(merge_flag, _Literal | _StringLiteral) and merge_flag.value is not False:
        raise parser.fail("States.JsonMerge supports only a shallow merge (false)")
    algorithm = args[1] if call.name == "States.Hash" else None
    if isinstance(algorithm, _StringLiteral) and algorithm.value not in _HASH_ALGORITHMS:
        raise parser.fail(f"unsupported hash algorithm '{algorithm.value}'")


def compile_intrinsic(text: str) -> Intrinsic:
    """Compile an intrinsic function call such as ``States.Format('{}', $.a)``.

    Raises `ExpressionSyntaxError` for text that does not parse, an unknown
    function, a wrong argument count, a bad escape in a string literal,
    calls nested more than 10 deep, or a literal that can never be valid.
    """
    if not isinstance(text, str):
        raise ExpressionSyntaxError(f"Invalid intrinsic function {text!r}: not a string")
    parser = _Parser(text)
    call = parser.call(depth=1)
    parser.skip_spaces()
    if parser.pos != len(text):
        raise parser.fail("unexpected text after the function call")
    return Intrinsic(text, call)


# -------------------------------------------------------------------- evaluation


def _failure(message: str) -> StatesError:
    return StatesError(States.INTRINSIC_FAILURE, message)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _java_round(value: Any, function: str) -> int:
    if type(value) is int:  # any size: `math.isfinite` would overflow past a double's range
        return value
    if not _is_number(value) or not math.isfinite(value):
        raise _failure(f"The arguments of {function} must be numbers, got: {to_json(value)}")
    if isinstance(value, int):
        return int(value)
    # Java's Math.round: floor(x + 0.5), so 2.5 → 3 and -2.5 → -2.
    return math.floor(float(value) + 0.5)


def _integer(value: Any, function: str, what: str) -> int:
    if type(value) is int:  # any size (`float` of a huge one overflows)
        return value
    if _is_number(value) and float(value).is_integer():
        return int(value)
    raise _failure(f"The {what} of {function} must be an integer, got: {to_json(value)}")


def _array(value: Any, function: str) -> list[Any]:
    if not isinstance(value, list):
        raise _failure(f"The first argument of {function} must be an array, got: {to_json(value)}")
    return value


def _string(value: Any, function: str, what: str = "argument") -> str:
    if not isinstance(value, str):
        raise _failure(f"The {what} of {function} must be a string, got: {to_json(value)}")
    return value


def _java_double(value: float) -> str:
    """Java's Double.toString: plain between 1e-3 and 1e7, else scientific (1.0E10)."""
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(value)
    _sign, digits, exponent = Decimal(repr(abs(value))).as_tuple()
    text = "".join(str(d) for d in digits).rstrip("0") or "0"
    assert isinstance(exponent, int)
    power = exponent + len(digits) - 1
    sign = "-" if value < 0 else ""
    return f"{sign}{text[0]}.{text[1:] or '0'}E{power}"


def _format_value(value: Any) -> str:
    """How AWS renders an argument of States.Format (Java toString of the JSON value)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k}={_format_value(v)}" for k, v in value.items()) + "}"


def _format(args: list[Any], template_parts: tuple[str, ...] | None) -> str:
    if template_parts is None:
        template = _string(args[0], "States.Format", "template")
        template_parts = tuple(template.split("{}"))
    values = args[1:]
    if len(template_parts) - 1 != len(values):
        raise _failure(
            f"The number of arguments to States.Format ({len(values)}) does not match "
            f"the number of placeholders ({len(template_parts) - 1})"
        )
    out = [template_parts[0]]
    for value, text in zip(values, template_parts[1:], strict=True):
        out.append(_format_value(value))
        out.append(text)
    return "".join(out)


def _string_to_json(value: Any) -> Any:
    text = _string(value, "States.StringToJson")
    if not text.strip():
        return None
    try:
        return loads_checked(text)
    except JsonTextError as error:
        # Too deep or not valid Unicode is as unparseable as a syntax error.
        why = "" if error.syntax else f" ({error})"
        raise _failure(
            f"The argument of States.StringToJson is not valid JSON{why}: {text}"
        ) from None


def _array_partition(array: Any, size: Any) -> list[list[Any]]:
    items = _array(array, "States.ArrayPartition")
    chunk = _integer(size, "States.ArrayPartition", "chunk size")
    if chunk <= 0:
        raise _failure(f"The chunk size of States.ArrayPartition must be positive, got: {chunk}")
    return [items[i : i + chunk] for i in range(0, len(items), chunk)]


def _array_range(first: Any, last: Any, step: Any) -> list[int]:
    start = _integer(first, "States.ArrayRange", "start")
    end = _integer(last, "States.ArrayRange", "end")
    increment = _integer(step, "States.ArrayRange", "step")
    if increment == 0:
        raise _failure("The step of States.ArrayRange must not be 0")
    count = max(0, (end - start) // increment + 1)
    if count > MAX_ARRAY_RANGE:
        raise _failure(
            f"States.ArrayRange would produce {count} items; at most {MAX_ARRAY_RANGE} are allowed"
        )
    return [start + i * increment for i in range(count)]


def _array_get_item(array: Any, index: Any) -> Any:
    items = _array(array, "States.ArrayGetItem")
    position = _integer(index, "States.ArrayGetItem", "index")
    if not 0 <= position < len(items):
        raise _failure(
            f"The index {position} is out of bounds for an array of length {len(items)} "
            "in States.ArrayGetItem"
        )
    return items[position]


def _array_unique(array: Any) -> list[Any]:
    unique: list[Any] = []
    for item in _array(array, "States.ArrayUnique"):
        if not any(json_equal(item, seen) for seen in unique):
            unique.append(item)
    return unique


def _limited(value: Any, function: str) -> str:
    text = _string(value, function)
    if len(text) > MAX_STRING_INPUT:
        raise _failure(
            f"The input of {function} is {len(text)} characters; "
            f"at most {MAX_STRING_INPUT} are allowed"
        )
    return text


def _base64_decode(value: Any) -> str:
    text = _limited(value, "States.Base64Decode")
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _failure(f"The argument of States.Base64Decode is not valid base64: {text}") from None


def _hash(data: Any, algorithm: Any) -> str:
    text = data if isinstance(data, str) else to_json(data)
    _limited(text, "States.Hash")
    name = _string(algorithm, "States.Hash", "algorithm")
    if name not in _HASH_ALGORITHMS:
        raise _failure(
            f"The algorithm '{name}' is not supported by States.Hash; use one of "
            + ", ".join(_HASH_ALGORITHMS)
        )
    return hashlib.new(_HASH_ALGORITHMS[name], text.encode("utf-8")).hexdigest()


def _json_merge(first: Any, second: Any, deep: Any) -> dict[str, Any]:
    if not isinstance(first, dict) or not isinstance(second, dict):
        raise _failure("The first two arguments of States.JsonMerge must be JSON objects")
    if deep is not False:
        raise _failure(
            "States.JsonMerge supports only a shallow merge: its third argument must be false"
        )
    return {**first, **second}


def _math_random(args: list[Any], nondeterminism: Nondeterminism) -> int:
    start = _java_round(args[0], "States.MathRandom")
    end = _java_round(args[1], "States.MathRandom")
    if start > end:
        raise _failure(f"The start {start} of States.MathRandom is greater than its end {end}")
    if len(args) == 3:
        seed = _java_round(args[2], "States.MathRandom")
        return random.Random(seed).randint(start, end)
    return start + min(int(nondeterminism.random() * (end - start + 1)), end - start)


def _string_split(value: Any, delimiters: Any) -> list[str]:
    text = _string(value, "States.StringSplit")
    separators = _string(delimiters, "States.StringSplit", "delimiter")
    if not separators:
        return [text] if text else []
    pattern = "[" + re.escape(separators) + "]"
    return [piece for piece in re.split(pattern, text) if piece]


_Implementation = Callable[[list[Any], Nondeterminism], Any]

_IMPLEMENTATIONS: Final[Mapping[str, _Implementation]] = {
    "States.StringToJson": lambda a, _: _string_to_json(a[0]),
    "States.JsonToString": lambda a, _: to_json(a[0]),
    "States.Array": lambda a, _: list(a),
    "States.ArrayPartition": lambda a, _: _array_partition(a[0], a[1]),
    "States.ArrayContains": lambda a, _: any(
        json_equal(x, a[1]) for x in _array(a[0], "States.ArrayContains")
    ),
    "States.ArrayRange": lambda a, _: _array_range(a[0], a[1], a[2]),
    "States.ArrayGetItem": lambda a, _: _array_get_item(a[0], a[1]),
    "States.ArrayLength": lambda a, _: len(_array(a[0], "States.ArrayLength")),
    "States.ArrayUnique": lambda a, _: _array_unique(a[0]),
    "States.Base64Encode": lambda a, _: base64.b64encode(
        _limited(a[0], "States.Base64Encode").encode("utf-8")
    ).decode("ascii"),
    "States.Base64Decode": lambda a, _: _base64_decode(a[0]),
    "States.Hash": lambda a, _: _hash(a[0], a[1]),
    "States.JsonMerge": lambda a, _: _json_merge(a[0], a[1], a[2]),
    "States.MathRandom": _math_random,
    "States.MathAdd": lambda a, _: (
        _java_round(a[0], "States.MathAdd") + _java_round(a[1], "States.MathAdd")
    ),
    "States.StringSplit": lambda a, _: _string_split(a[0], a[1]),
    "States.UUID": lambda _a, n: n.uuid(),
}


def _evaluate_call(
    call: _Call,
    data: Any,
    context: Any,
    variables: Mapping[str, Any],
    nondeterminism: Nondeterminism,
) -> Any:
    args: list[Any] = []
    for argument in call.arguments:
        if isinstance(argument, _PathArgument):  # commonest first: one check each
            args.append(resolve(argument.path, data, context, variables))
        elif isinstance(argument, _Call):
            args.append(_evaluate_call(argument, data, context, variables, nondeterminism))
        else:
            args.append(argument.value)
    if call.name == "States.Format":
        template = call.arguments[0]
        parts = template.format_parts if isinstance(template, _StringLiteral) else None
        return _format(args, parts)
    return _IMPLEMENTATIONS[call.name](args, nondeterminism)


def evaluate_intrinsic(
    fn: Intrinsic,
    data: Any,
    context: Any,
    variables: Mapping[str, Any],
    nondeterminism: Nondeterminism,
) -> Any:
    """Evaluate a compiled call against the input, the context object and variables.

    Returns a fresh JSON value. Raises ``States.IntrinsicFailure`` when an
    argument has the wrong type or value, and ``States.Runtime`` when a path
    argument selects nothing.
    """
    return _evaluate_call(fn.call, data, context, variables, nondeterminism)


def intrinsic_paths(fn: Intrinsic) -> Iterator[Path]:
    """Every path a compiled call reads as an argument, nested calls' too."""
    calls = [fn.call]
    while calls:
        for argument in calls.pop().arguments:
            if isinstance(argument, _PathArgument):
                yield argument.path
            elif isinstance(argument, _Call):
                calls.append(argument)
