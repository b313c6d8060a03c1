"""What a JSON value must be to cross into an execution: valid Unicode, bounded nesting.

Payloads enter an execution at its edges (execution input, a task's
result, a callback's output, `States.StringToJson`) and are then stored as
UTF-8 JSON and walked by recursive evaluators. Two things Python accepts
cannot be stored or walked safely: a string holding a lone UTF-16 surrogate
(``"\\ud800"`` decodes to a Python `str` that UTF-8 cannot encode), and
nesting so deep that recursion runs out. `json_problem` names the first
such problem in a value (None when there is none), without recursing;
`loads_checked` decodes JSON text and applies the same check. The nesting
bound is Jackson's default (``StreamReadConstraints``, 500 since 2.16), the
parser AWS's Java services use.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["MAX_JSON_DEPTH", "JsonTextError", "json_problem", "loads_checked"]

MAX_JSON_DEPTH: Final = 500

_WHY: Final = "not valid Unicode; invalid UTF-8 reads as one"


class JsonTextError(ValueError):
    """JSON text that is not JSON an execution can hold; the message says why.

    `syntax` is True when the text is not JSON at all (the message is then
    the parser's), False when it parses but nests too deeply or holds a lone
    surrogate.
    """

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.syntax = syntax


def _bad_string(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why `value` cannot be held by an execution (a lone surrogate, nesting), or None."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _bad_string(item):
                return f"a string holds a lone surrogate ({_WHY})"
        elif isinstance(item, dict):
            if depth > max_depth:
                return f"JSON nests deeper than {max_depth} levels"
            for key, member in item.items():
                if isinstance(key, str) and _bad_string(key):
                    return f"an object key holds a lone surrogate ({_WHY})"
                if isinstance(member, str | dict | list):
                    stack.append((member, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                return f"JSON nests deeper than {max_depth} levels"
            stack.extend(
                (member, depth + 1) for member in item if isinstance(member, str | dict | list)
            )
    return None


def loads_checked(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode JSON `text`; raises JsonTextError when it is not JSON or `json_problem` finds one."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonTextError(f"JSON nests deeper than {max_depth} levels") from None
    except ValueError as error:
        raise JsonTextError(str(error), syntax=True) from None
    problem = json_problem(value, max_depth=max_depth)
    if problem is not None:
        raise JsonTextError(problem)
    return value
