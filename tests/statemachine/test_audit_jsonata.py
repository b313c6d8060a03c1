"""Semantics audit, JSONata functions: AWS's own functions compared with what AWS recorded.

Each case comes from an execution recorded on AWS (LocalStack's snapshot
tests, `intrinsic_functions/test_array_jsonata.snapshot.json`), evaluated
here at the expression level through the same template evaluator the
engine uses.
"""

from __future__ import annotations

from typing import Any

import pytest

from statemachine.jsonata import (
    Limits,
    QueryEvaluationError,
    compile_jsonata_template,
    evaluate_template,
)
from statemachine.nondeterminism import Fixed


def output(template: Any, input: Any = None) -> Any:
    return evaluate_template(
        compile_jsonata_template(template),
        field="Output",
        states={"input": input, "context": {"Execution": {"Id": "x"}}},
        variables={},
        nondeterminism=Fixed(),
        limits=Limits(),
    )


@pytest.mark.parametrize(
    ("start", "end", "step", "expected"),
    [
        (0, 9, 3, [0, 3, 6, 9]),
        (0, 10, 3, [0, 3, 6, 9]),
        # AWS answers 1, not [1]: $range yields a JSONata sequence, and a
        # sequence of one item is that item.
        (1, 9, 9, 1),
        (1, 9, 2, [1, 3, 5, 7, 9]),
    ],
)
def test_range_as_aws_recorded(start: int, end: int, step: int, expected: Any) -> None:
    text = "{% $range($states.input.fst, $states.input.snd, $states.input.trd) %}"
    assert output(text, {"fst": start, "snd": end, "trd": step}) == expected


def test_range_of_one_item_inside_an_expression_still_counts_as_one() -> None:
    assert output({"n": "{% $count($range(1, 1)) %}", "v": "{% $range(4, 4) %}"}) == {
        "n": 1,
        "v": 4,
    }


def test_a_function_result_is_an_unsupported_result_type() -> None:
    """AWS-recorded (`test_map_state_items_eval_jsonata_fail[function]`) for a Map's Items."""
    with pytest.raises(QueryEvaluationError) as caught:
        output({"Items": "{% $fn := function($x){$x} %}"})
    assert caught.value.location == "Output/Items"
    assert caught.value.cause == (
        "The JSONata expression '$fn := function($x){$x}' specified for the field "
        "'Output/Items' returned an unsupported result type."
    )


def test_nothing_is_still_undefined() -> None:
    with pytest.raises(QueryEvaluationError, match=r"returned nothing \(undefined\)"):
        output("{% $nothing %}")
