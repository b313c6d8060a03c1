"""AWS's name rules (state machines, executions, activities, aliases, Map Run labels)."""

from __future__ import annotations

import pytest

from statemachine.quotas import name_problem


@pytest.mark.parametrize(
    "name",
    [
        "a\ufffe",
        "a\uffff",
        "a\U0010ffff",
        "a\ud800",
        "\udfff",
        "a b",
        "a\x7f",
        "a\x9f",
        "a/b",
        "a:b",
    ],
)
def test_names_aws_refuses_are_refused(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize(
    "name",
    ["Order-42_x.y", "é日本", "a\ufffd", "a\U0001f600", "a\U0010fffd", "a\ufdd0", "(ok)!@'=+"],
)
def test_non_ascii_and_punctuation_aws_allows_are_allowed(name: str) -> None:
    assert name_problem(name) is None
