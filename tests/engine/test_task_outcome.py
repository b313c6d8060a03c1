"""A handler's result becomes an outcome only as JSON an execution can hold.

`encode_result` skips the nesting walk for short encodings (nesting past
500 levels takes more than 1,000 bytes), so the boundary is pinned here:
500 levels pass, 501 fail, in the shortest text either can have; a lone
surrogate fails wherever it is (value or key, short or long).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.tasks.outcome import Failed, Succeeded, encode_result
from statemachine.errors import States
from statemachine.jsontext import MAX_JSON_DEPTH


def _nested(levels: int, leaf: Any = None) -> Any:
    value: Any = [] if leaf is None else [leaf]
    for _ in range(levels - 1):
        value = [value]
    return value


def test_a_result_nested_to_the_limit_passes_and_one_level_more_fails() -> None:
    assert isinstance(encode_result(_nested(MAX_JSON_DEPTH), "S"), Succeeded)
    deep = encode_result(_nested(MAX_JSON_DEPTH + 1), "S")
    assert isinstance(deep, Failed) and deep.error == States.RUNTIME
    assert f"nests deeper than {MAX_JSON_DEPTH} levels" in (deep.cause or "")


def test_objects_count_as_levels_like_arrays() -> None:
    value: Any = {}
    for _ in range(MAX_JSON_DEPTH):
        value = {"k": value}
    failed = encode_result(value, "S")  # 501 objects deep
    assert isinstance(failed, Failed) and "nests deeper" in (failed.cause or "")


@pytest.mark.parametrize(
    "value", [{"a": "\ud800"}, {"\udcff": 1}, ["x" * 2000, "\ud800"], {"k" * 2000: "\udfff"}]
)
def test_a_lone_surrogate_fails_short_or_long(value: Any) -> None:
    failed = encode_result(value, "S")
    assert isinstance(failed, Failed) and "lone surrogate" in (failed.cause or "")


def test_a_result_is_a_json_copy_of_the_handlers_value() -> None:
    handed = {"t": (1, 2), "n": {"x": 1.5}}
    outcome = encode_result(handed, "S")
    assert isinstance(outcome, Succeeded)
    assert outcome.value == {"t": [1, 2], "n": {"x": 1.5}}
    assert outcome.value["n"] is not handed["n"]
