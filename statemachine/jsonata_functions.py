"""The function library Step Functions puts in front of JSONata 2.0.6.

This module owns every function binding that differs from jsonata-python's
stock library: the AWS additions (`$partition`, `$range`, `$hash`, `$random`,
`$uuid`, `$parse`), the nondeterministic built-ins rerouted through the
caller's `Nondeterminism` (`$now`, `$millis`, `$random`, `$uuid`, `$shuffle`),
`$eval` removed, and size guards in front of the built-ins that can allocate
a huge value in one uninterruptible call (`$pad`, `$join`, `$split`,
`$replace`, `$string`, `$distinct`). `bind_functions` builds the bindings for
one evaluation; it does no I/O of its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import random as _random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any

from jsonata import functions as _jfunctions
from jsonata import jexception, utils
from jsonata.jsonata import Jsonata
from jsonata.signature import Signature

from statemachine.nondeterminism import Nondeterminism

__all__ = ["GuardExceeded", "bind_functions", "from_json_text", "to_jsonata"]

NULL = utils.Utils.NULL_VALUE

_HASH_ALGORITHMS: Mapping[str, str] = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


class GuardExceeded(Exception):
    """A size or depth guard stopped the evaluation before it allocated too much."""


def to_jsonata(value: Any) -> Any:
    """Copy a JSON value into jsonata-python's data model (JSON null → NULL_VALUE).

    The library reads Python None as JSONata *undefined*, so a null in the
    input would silently vanish without this. The copy also keeps the
    caller's data safe from anything the evaluation does to it.
    """
    if value is None:
        return NULL
    if isinstance(value, dict):
        return {key: to_jsonata(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonata(item) for item in value]
    return value


def from_json_text(text: str) -> Any:
    """Parse JSON text into jsonata-python's data model."""
    return json.loads(text, object_hook=_null_object, parse_constant=_reject_constant)


def _null_object(pairs: dict[str, Any]) -> dict[str, Any]:
    return {key: NULL if value is None else value for key, value in pairs.items()}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _Native(Jsonata.JFunctionCallable):  # type: ignore[misc]  # untyped library
    """A Python callable exposed to JSONata with a signature."""

    def __init__(self, impl: Callable[..., Any], nargs: int) -> None:
        self._impl = impl
        self._nargs = nargs

    def call(self, input: Any, args: Sequence[Any] | None) -> Any:
        call_args = list(args or [])
        call_args += [None] * (self._nargs - len(call_args))
        result = self._impl(*call_args[: self._nargs])
        if utils.Utils.is_numeric(result):
            result = utils.Utils.convert_number(result)
        return result


_SIGNATURES: dict[str, Any] = {}


def _function(impl: Callable[..., Any], nargs: int, signature: str) -> Any:
    wrapped = Jsonata.JFunction(_Native(impl, nargs), None)
    # Parsing a signature costs more than the rest of a small evaluation;
    # parsed signatures hold no per-call state, so one per text is shared.
    parsed = _SIGNATURES.get(signature)
    if parsed is None:
        parsed = _SIGNATURES.setdefault(signature, Signature(signature, "function"))
    wrapped.signature = parsed
    return wrapped


class _Guarded(Jsonata.JFunctionCallable):  # type: ignore[misc]  # untyped library
    """A stock built-in with a check run on its arguments before it is called."""

    def __init__(self, native: Any, check: Callable[[list[Any]], None]) -> None:
        self._native = native
        self._check = check

    def call(self, input: Any, args: Sequence[Any] | None) -> Any:
        self._check(list(args or []))
        return self._native.call(input, args)


def _guard(name: str, check: Callable[[list[Any]], None]) -> Any:
    native = Jsonata.static_frame.lookup(name)
    wrapped = Jsonata.JFunction(_Guarded(native, check), None)
    # Share the stock signature so argument validation, context binding and
    # arity (which $map/$filter use to decide what to pass) stay identical.
    wrapped.signature = native.signature
    return wrapped


def _arg(args: list[Any], index: int) -> Any:
    return args[index] if index < len(args) else None


def _is_integer(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
    )


def _json_size(value: Any, budget: int) -> int:
    """An upper bound of `value`'s JSON text length, stopping once past `budget`."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) * 6 + 2
        elif isinstance(item, dict):
            total += 2 + 2 * len(item)
            for key, child in item.items():
                total += len(key) * 6 + 3
                stack.append(child)
        elif isinstance(item, list):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 24
        if total > budget:
            return total
    return total


def bind_functions(
    frame: Any,
    *,
    nondeterminism: Nondeterminism,
    max_items: int,
    max_string_bytes: int,
) -> None:
    """Bind Step Functions' function library into `frame` for one evaluation.

    `$now`/`$millis` read `nondeterminism.now()` at most once per frame (JSONata
    promises one timestamp per evaluation); `$uuid`, `$random()` and
    `$shuffle` draw from `nondeterminism`. Guards raise `GuardExceeded` before a
    built-in allocates more than `max_items` items or `max_string_bytes`
    characters.
    """
    timestamp: list[int] = []

    def millis() -> int:
        if not timestamp:
            moment = nondeterminism.now().astimezone(UTC)
            timestamp.append(int(moment.timestamp() * 1000))
        return timestamp[0]

    def now(picture: str | None, timezone: str | None) -> str | None:
        result: str | None = _jfunctions.Functions.datetime_from_millis(millis(), picture, timezone)
        return result

    def random_(seed: Any) -> float:
        if seed is None:
            return nondeterminism.random()
        # A seeded draw is a pure function of its seed, so it needs no journal.
        return _random.Random(str(seed)).random()

    def uuid() -> str:
        return nondeterminism.uuid()

    def shuffle(array: Any) -> Any:
        if array is None:
            return None
        items = list(array)
        _random.Random(nondeterminism.random()).shuffle(items)
        return items

    def partition(array: Any, size: Any) -> Any:
        if array is None:
            return None
        if not _is_integer(size) or size <= 0:
            raise jexception.JException(
                "D3137", -1, "The size argument of $partition must be a positive integer"
            )
        items = list(array)
        step = int(size)
        return [items[start : start + step] for start in range(0, len(items), step)]

    def range_(start: Any, end: Any, step: Any) -> Any:
        step = 1 if step is None else step
        for name, value in (("start", start), ("end", end), ("step", step)):
            if not _is_integer(value):
                raise jexception.JException(
                    "D3137", -1, f"The {name} argument of $range must be an integer"
                )
        if step == 0:
            raise jexception.JException("D3137", -1, "The step argument of $range must not be 0")
        count = max(0, math.floor((end - start) / step) + 1)
        if count > max_items:
            raise GuardExceeded(f"$range would produce {count} items (limit {max_items})")
        if count == 0:
            return []
        # AWS's $range yields a JSONata sequence: one item comes out as that item.
        result = utils.Utils.create_sequence()
        result.extend(int(start) + index * int(step) for index in range(count))
        return result

    def hash_(value: Any, algorithm: Any) -> Any:
        if value is None:
            return None
        name = "SHA-256" if algorithm is None else algorithm
        if name not in _HASH_ALGORITHMS:
            raise jexception.JException(
                "D3137",
                -1,
                f"Unsupported hash algorithm '{name}'; use one of {', '.join(_HASH_ALGORITHMS)}",
            )
        digest = hashlib.new(_HASH_ALGORITHMS[name], str(value).encode("utf-8"))
        return digest.hexdigest()

    def parse(text: Any) -> Any:
        if text is None:
            return None
        try:
            return from_json_text(text)
        except (ValueError, RecursionError) as error:
            raise jexception.JException(
                "D3137", -1, f"$parse: invalid JSON text: {error}"
            ) from None

    def check_pad(args: list[Any]) -> None:
        width = _arg(args, 1)
        if isinstance(width, int | float) and abs(width) > max_string_bytes:
            raise GuardExceeded(f"$pad width {width} exceeds {max_string_bytes} characters")

    def check_join(args: list[Any]) -> None:
        strings, separator = _arg(args, 0), _arg(args, 1)
        if not isinstance(strings, list):
            return
        total = len(separator or "") * max(0, len(strings) - 1)
        total += sum(len(item) for item in strings if isinstance(item, str))
        if total > max_string_bytes:
            raise GuardExceeded(f"$join would build {total} characters")

    def check_split(args: list[Any]) -> None:
        text, pattern = _arg(args, 0), _arg(args, 1)
        if isinstance(text, str) and isinstance(pattern, str):
            parts = len(text) if pattern == "" else text.count(pattern) + 1
            if parts > max_items:
                raise GuardExceeded(f"$split would produce {parts} items")

    def check_replace(args: list[Any]) -> None:
        text, pattern, replacement = _arg(args, 0), _arg(args, 1), _arg(args, 2)
        if not isinstance(text, str) or not isinstance(replacement, str):
            return
        if isinstance(pattern, str):
            matches = text.count(pattern) if pattern else 0
        else:
            matches = len(text) + 1
        limit = _arg(args, 3)
        if isinstance(limit, int | float) and limit >= 0:
            matches = min(matches, int(limit))
        if len(text) + matches * len(replacement) > max_string_bytes:
            raise GuardExceeded("$replace would build a string over the size limit")

    def check_string(args: list[Any]) -> None:
        if _json_size(_arg(args, 0), max_string_bytes) > max_string_bytes:
            raise GuardExceeded("$string would build a string over the size limit")

    def distinct(array: Any) -> Any:
        # The stock $distinct is quadratic; canonical JSON keys make it linear
        # while keeping JSONata's deep, key-order-insensitive equality.
        if not isinstance(array, list) or len(array) <= 1:
            return array
        seen: set[str] = set()
        result = utils.Utils.create_sequence() if isinstance(array, utils.Utils.JList) else []
        for item in array:
            key = json.dumps(item, sort_keys=True, default=_canonical)
            if key not in seen:
                seen.add(key)
                result.append(item)
        return result

    bindings: dict[str, Any] = {
        "now": _function(now, 2, "<s?s?:s>"),
        "millis": _function(millis, 0, "<:n>"),
        "random": _function(random_, 1, "<j?:n>"),
        "uuid": _function(uuid, 0, "<:s>"),
        "shuffle": _function(shuffle, 1, "<a:a>"),
        "partition": _function(partition, 2, "<an:a>"),
        "range": _function(range_, 3, "<nnn?:a<n>>"),
        "hash": _function(hash_, 2, "<j-s?:s>"),
        "parse": _function(parse, 1, "<s-:j>"),
        "distinct": _function(distinct, 1, "<x:x>"),
        "pad": _guard("pad", check_pad),
        "join": _guard("join", check_join),
        "split": _guard("split", check_split),
        "replace": _guard("replace", check_replace),
        "string": _guard("string", check_string),
        # Step Functions removes $eval; binding it to nothing makes a call
        # fail the way a call of any undefined function does (T1006).
        "eval": None,
    }
    for name, function in bindings.items():
        frame.bind(name, function)


def _canonical(value: Any) -> Any:
    if value is NULL:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return repr(value)
