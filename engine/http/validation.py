"""Every request checked against AWS's constraints before its operation runs, as AWS does.

AWS validates a request against its service model before the operation
sees it: every member's type, ``required``, ``min``/``max`` (a string's or
list's length, a number's value), ``pattern`` (the whole string) and
``enum``, nested structures and lists included. `check_request` does the
same from `engine.http.shapes` (botocore's model, extracted), and answers
the broken constraints at once in AWS's words::

    2 validation errors detected: Value 'x…' at 'name' failed to satisfy
    constraint: Member must have length less than or equal to 80; Value
    '5000' at 'maxResults' failed to satisfy constraint: …

Lengths are counted as AWS (Java) counts them, in UTF-16 code units (a
character above U+FFFF counts 2); numbers are compared exactly, within
their type's range too (``integer`` 32-bit, ``long`` 64-bit). The message
counts every problem but lists only the first 10, so a request with
thousands of bad tags gets a short answer. A member of a list is named
``tags.1.member.key`` (counted from 1); a sensitive value (a definition,
an input) is never repeated (``Value at 'definition'``). A value of the
wrong JSON type is a ``SerializationException``, as AWS's deserializer answers. Two rules AWS
documents without putting them in the model are checked here too, on tags
being set: keys and values hold only Unicode letters, digits, white space
and ``_ . : / = + - @``, and a key may not start with ``aws:`` (any case),
which AWS reserves for itself. `check_role_arn` is AWS's
``InvalidArn`` for a ``roleArn`` that is no IAM role's ARN. Rules that need
the engine (names' characters, resource ARNs' shapes) stay with the
operations, and so does a payload's size, which the model counts in UTF-8
bytes and AWS answers with the operation's own code.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from engine.http.protocol import AwsError
from engine.http.shapes import INPUTS, SHAPES, Shape

__all__ = ["TAG_PATTERN", "check_request", "check_role_arn"]

# AWS's tag rule (the Tag shape's documentation; the pattern other AWS models carry).
TAG_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
_RESERVED_TAG_PREFIX = "aws:"
_SHOWN_CHARS = 100
# Payloads (input, output, variables): the model counts their length in UTF-8 bytes, and
# the operations that take them answer AWS's own code for an oversized one
# (StartExecution's InvalidExecutionInput, SendTaskSuccess's InvalidOutput).
_MEASURED_BY_OPERATIONS = frozenset({"SensitiveData"})
# An IAM role's ARN in any partition: arn:aws:iam::123456789012:role/path/name.
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/\S+")
# The model's integral types are Java's: `integer` 32-bit, `long` 64-bit.
_TYPE_RANGES: dict[str, tuple[int, int]] = {
    "integer": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}
# A message lists at most this many problems (the count stays true), as AWS's do.
_LISTED = 10


def _utf16_length(text: str) -> int:
    """`text`'s length as AWS (Java) counts it: UTF-16 code units, 2 above U+FFFF."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@functools.cache
def _compiled(pattern: str) -> Any:
    # The model's patterns are Java's (\p{ASCII}); `regex` reads them as Java does.
    import regex

    return regex.compile(pattern)


def _matches(pattern: str, value: str) -> bool:
    return _compiled(pattern).fullmatch(value) is not None


def _shown(value: Any, shape: Shape) -> str:
    if shape.sensitive:
        return "Value"
    if value is None:
        return "Value null"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | dict):
        text = "[...]" if isinstance(value, list) else "{...}"
    else:
        text = str(value)
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "…"
    return f"Value '{text}'"


class _Checker:
    """Walks one request against its shapes, collecting AWS's messages."""

    def __init__(self) -> None:
        self.count = 0
        self.problems: list[str] = []  # the first `_LISTED` of `count`

    def fail(self, value: Any, shape: Shape, path: str, constraint: str) -> None:
        self.count += 1
        if len(self.problems) < _LISTED:
            self.problems.append(
                f"{_shown(value, shape)} at '{path}' failed to satisfy constraint: {constraint}"
            )

    def check(self, value: Any, name: str, path: str) -> None:
        shape = SHAPES[name]
        kind = shape.type
        if kind == "string":
            if name in _MEASURED_BY_OPERATIONS:
                shape = Shape("string", sensitive=shape.sensitive)
            self._string(value, shape, path)
        elif kind in ("integer", "long", "float", "double"):
            self._number(value, shape, path, kind=kind)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise AwsError("SerializationException", f"'{path}' must be a boolean")
        elif kind == "list":
            self._list(value, shape, path)
        elif kind == "structure":
            self._structure(value, shape, path)
            if name == "Tag":
                self._tag(value, path)
        # Types the served inputs do not use (blob, timestamp, map) pass unchecked.

    def _string(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, str):
            raise AwsError("SerializationException", f"'{path}' must be a string")
        if not self._length(value, shape, path):
            return  # one problem per member, as AWS reports them
        if shape.pattern is not None and not _matches(shape.pattern, value):
            constraint = f"Member must satisfy regular expression pattern: {shape.pattern}"
            self.fail(value, shape, path, constraint)
        elif shape.enum and value not in shape.enum:
            constraint = f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"
            self.fail(value, shape, path, constraint)

    def _length(self, value: str | list[Any], shape: Shape, path: str) -> bool:
        """Check a string's or list's length; False (with the problem noted) when it is wrong."""
        size = _utf16_length(value) if isinstance(value, str) else len(value)
        if shape.min is not None and size < shape.min:
            self.fail(
                value, shape, path, f"Member must have length greater than or equal to {shape.min}"
            )
            return False
        if shape.max is not None and size > shape.max:
            self.fail(
                value, shape, path, f"Member must have length less than or equal to {shape.max}"
            )
            return False
        return True

    def _number(self, value: Any, shape: Shape, path: str, *, kind: str) -> None:
        integral = kind in _TYPE_RANGES
        if isinstance(value, bool) or not isinstance(value, int if integral else int | float):
            noun = "an integer" if integral else "a number"
            raise AwsError("SerializationException", f"'{path}' must be {noun}")
        # Compared as given (Python compares ints and floats exactly, however large), within
        # the tighter of the shape's bounds and its type's (Java's int and long).
        low, high = _TYPE_RANGES.get(kind, (None, None))
        if shape.min is not None:
            low = shape.min if low is None else max(low, shape.min)
        if shape.max is not None:
            high = shape.max if high is None else min(high, shape.max)
        if low is not None and value < low:
            self.fail(value, shape, path, f"Member must have value greater than or equal to {low}")
        elif high is not None and value > high:
            self.fail(value, shape, path, f"Member must have value less than or equal to {high}")

    def _list(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, list):
            raise AwsError("SerializationException", f"'{path}' must be a list")
        self._length(value, shape, path)
        assert shape.member is not None
        for index, item in enumerate(value, start=1):
            if item is None:
                self.fail(
                    item, SHAPES[shape.member], f"{path}.{index}.member", "Member must not be null"
                )
            else:
                self.check(item, shape.member, f"{path}.{index}.member")

    def _structure(self, value: Any, shape: Shape, path: str) -> None:
        if not isinstance(value, dict):
            raise AwsError("SerializationException", f"'{path or 'body'}' must be an object")
        for member, member_shape in shape.members:
            where = f"{path}.{member}" if path else member
            given = value.get(member)
            if given is None:
                if member in shape.required:
                    self.fail(None, SHAPES[member_shape], where, "Member must not be null")
                continue
            self.check(given, member_shape, where)

    def _tag(self, tag: dict[str, Any], path: str) -> None:
        """AWS's documented tag rules that its model leaves out (a key is required too)."""
        key, value = tag.get("key"), tag.get("value")
        if key is None:
            self.fail(None, SHAPES["TagKey"], f"{path}.key", "Member must not be null")
        for member, text in (("key", key), ("value", value)):
            if isinstance(text, str) and not _matches(TAG_PATTERN, text):
                self.fail(
                    text,
                    SHAPES["TagKey" if member == "key" else "TagValue"],
                    f"{path}.{member}",
                    f"Member must satisfy regular expression pattern: {TAG_PATTERN}",
                )
        if isinstance(key, str) and key.lower().startswith(_RESERVED_TAG_PREFIX):
            self.fail(
                key,
                SHAPES["TagKey"],
                f"{path}.key",
                "Member must not start with 'aws:' (a prefix reserved for AWS's own tags)",
            )


def check_request(operation: str, body: dict[str, Any]) -> None:
    """Check `body` against `operation`'s input shape; ValidationException with every problem.

    Raises SerializationException (at the first) when a member has the
    wrong JSON type. An operation the model does not describe passes.
    """
    name = INPUTS.get(operation)
    if name is None:
        return
    checker = _Checker()
    checker.check(body, name, "")
    count, problems = checker.count, checker.problems
    if count:
        plural = "error" if count == 1 else "errors"
        raise AwsError(
            "ValidationException",
            f"{count} validation {plural} detected: {'; '.join(problems)}",
        )


def check_role_arn(value: str | None) -> None:
    """AWS's ``InvalidArn`` ("Invalid Role Arn") when `value` is not an IAM role's ARN."""
    if value is not None and _ROLE_ARN.fullmatch(value) is None:
        raise AwsError("InvalidArn", f"Invalid Role Arn: '{value[:_SHOWN_CHARS]}'")
