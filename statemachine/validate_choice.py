"""Validation of Choice state rules.

This module owns the checks of a Choice state's `Choices` array in both query
languages: JSONPath data-test rules (a `Variable` plus exactly one comparison
operator with an operand of the right type), the boolean combinators
`And`/`Or`/`Not`, top-level versus nested `Next`, and JSONata rules
(`Condition`, `Next`, `Assign`, `Output`). Transition targets are returned to
the caller, which owns the graph checks.
"""

from __future__ import annotations

from statemachine.choice import compile_choice_rule
from statemachine.diagnostics import pointer_child
from statemachine.errors import ExpressionSyntaxError
from statemachine.validate_exprs import (
    MAX_VALUE_DEPTH,
    QueryLanguage,
    Reporter,
    check_assign,
    check_jsonata_value,
    check_path,
    check_timestamp_literal,
    is_jsonata,
    is_number,
    json_type,
    other_language_field,
)

__all__ = ["COMPARISON_OPERATORS", "check_choices"]


_STRING_OPS = (
    "StringEquals",
    "StringLessThan",
    "StringGreaterThan",
    "StringLessThanEquals",
    "StringGreaterThanEquals",
)
_NUMERIC_OPS = (
    "NumericEquals",
    "NumericLessThan",
    "NumericGreaterThan",
    "NumericLessThanEquals",
    "NumericGreaterThanEquals",
)
_TIMESTAMP_OPS = (
    "TimestampEquals",
    "TimestampLessThan",
    "TimestampGreaterThan",
    "TimestampLessThanEquals",
    "TimestampGreaterThanEquals",
)
_TYPE_TESTS = ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")

# operator name -> the kind of operand it takes
COMPARISON_OPERATORS: dict[str, str] = {
    **dict.fromkeys(_STRING_OPS, "string"),
    "StringMatches": "string",
    **dict.fromkeys(_NUMERIC_OPS, "number"),
    "BooleanEquals": "boolean",
    **dict.fromkeys(_TIMESTAMP_OPS, "timestamp"),
    **dict.fromkeys(_TYPE_TESTS, "boolean"),
    **{
        f"{op}Path": "path"
        for op in (*_STRING_OPS, *_NUMERIC_OPS, "BooleanEquals", *_TIMESTAMP_OPS)
    },
}
_COMBINATORS = ("And", "Or", "Not")


def check_choices(
    rep: Reporter, location: str, choices: object, ql: QueryLanguage
) -> list[tuple[str, str]]:
    """Check a Choice state's `Choices` value at `location`.

    Returns the (target, pointer) pairs of the top-level rules' `Next` fields
    that are strings, for the caller's transition checks.
    """
    targets: list[tuple[str, str]] = []
    if not isinstance(choices, list):
        rep.schema(
            location,
            f"The value for the field 'Choices' must be an ARRAY but was {json_type(choices)}",
        )
        return targets
    if not choices:
        rep.schema(location, "The field 'Choices' must contain at least one rule")
        return targets
    for index, rule in enumerate(choices):
        here = pointer_child(location, index)
        if not isinstance(rule, dict):
            rep.schema(here, f"A choice rule must be an OBJECT but was {json_type(rule)}")
            continue
        errors_before = rep.error_count()
        if ql == "JSONata":
            _check_jsonata_rule(rep, here, rule)
        else:
            _check_jsonpath_rule(rep, here, rule, top_level=True, depth=0)
        if rep.error_count() == errors_before and "Next" in rule:
            _cross_check_rule(rep, here, rule, ql)
        if "Next" not in rule:
            rep.schema(here, "These fields are required: [Next]")
        elif not isinstance(rule["Next"], str):
            rep.schema(
                pointer_child(here, "Next"),
                f"The value for the field 'Next' must be a "
                f"STRING but was {json_type(rule['Next'])}",
            )
        else:
            targets.append((rule["Next"], pointer_child(here, "Next")))
    return targets


def _cross_check_rule(
    rep: Reporter, location: str, rule: dict[str, object], ql: QueryLanguage
) -> None:
    # The engine builds rules with statemachine.choice; whatever it refuses,
    # validation must refuse too.
    try:
        compile_choice_rule(rule, top_level=True, query_language=ql)
    except (ExpressionSyntaxError, ValueError, TypeError, RecursionError) as exc:
        rep.schema(location, f"Invalid choice rule: {exc}")


def _check_jsonata_rule(rep: Reporter, location: str, rule: dict[str, object]) -> None:
    for key in rule:
        if key not in ("Condition", "Next", "Assign", "Output", "Comment"):
            rep.schema(
                pointer_child(location, key),
                f"Field '{key}' is not supported in a JSONata choice rule",
            )
    if "Condition" not in rule:
        rep.schema(location, "These fields are required: [Condition]")
    else:
        condition = rule["Condition"]
        here = pointer_child(location, "Condition")
        if is_jsonata(condition):
            check_jsonata_value(rep, here, condition)
        elif not isinstance(condition, bool):
            rep.schema(
                here,
                "The value for the field 'Condition' must be a boolean or a JSONata "
                "expression ({% … %})",
            )
    if "Output" in rule:
        check_jsonata_value(rep, pointer_child(location, "Output"), rule["Output"])
    if "Assign" in rule:
        check_assign(rep, pointer_child(location, "Assign"), rule["Assign"], "JSONata")
    _check_comment(rep, location, rule)


def _check_comment(rep: Reporter, location: str, rule: dict[str, object]) -> None:
    if "Comment" in rule and not isinstance(rule["Comment"], str):
        rep.schema(
            pointer_child(location, "Comment"), "The value for the field 'Comment' must be a STRING"
        )


def _check_jsonpath_rule(
    rep: Reporter, location: str, rule: dict[str, object], *, top_level: bool, depth: int
) -> None:
    if depth > MAX_VALUE_DEPTH:
        return
    allowed = {"Variable", "Comment", *COMPARISON_OPERATORS, *_COMBINATORS}
    if top_level:
        allowed |= {"Next", "Assign"}
    for key in rule:
        if key not in allowed:
            if key == "Next":
                message = "A nested choice rule (inside And, Or or Not) cannot have 'Next'"
            elif key in ("Condition", "Output"):
                message = other_language_field("JSONPath", key)
            else:
                message = f"Field '{key}' is not supported in a choice rule"
            rep.schema(pointer_child(location, key), message)
    _check_comment(rep, location, rule)
    if top_level and "Assign" in rule:
        check_assign(rep, pointer_child(location, "Assign"), rule["Assign"], "JSONPath")

    operators = [key for key in rule if key in COMPARISON_OPERATORS]
    combinators = [key for key in rule if key in _COMBINATORS]
    kinds = len(operators) + len(combinators)
    if kinds == 0:
        rep.schema(
            location,
            "A choice rule must have exactly one comparison operator, or 'And', 'Or' or 'Not'",
        )
        return
    if kinds > 1:
        names = ", ".join(operators + combinators)
        rep.error(
            location,
            "MUTUALLY_EXCLUSIVE_CHOICE_PROPERTIES",
            f"A choice rule must have exactly one comparison operator or combinator, "
            f"but has: {names}",
        )
        return
    if combinators:
        if "Variable" in rule:
            rep.schema(
                pointer_child(location, "Variable"),
                f"Field 'Variable' is not supported with '{combinators[0]}'",
            )
        _check_combinator(rep, location, rule, combinators[0], depth)
        return
    if "Variable" not in rule:
        rep.schema(location, "These fields are required: [Variable]")
    else:
        check_path(rep, pointer_child(location, "Variable"), rule["Variable"], "Variable")
    _check_operand(rep, pointer_child(location, operators[0]), operators[0], rule[operators[0]])


def _check_combinator(
    rep: Reporter, location: str, rule: dict[str, object], name: str, depth: int
) -> None:
    value = rule[name]
    here = pointer_child(location, name)
    if name == "Not":
        if not isinstance(value, dict):
            rep.schema(
                here,
                f"The value for the field 'Not' must be an OBJECT (one rule) but "
                f"was {json_type(value)}",
            )
            return
        _check_jsonpath_rule(rep, here, value, top_level=False, depth=depth + 1)
        return
    if not isinstance(value, list):
        rep.schema(
            here, f"The value for the field '{name}' must be an ARRAY but was {json_type(value)}"
        )
        return
    if not value:
        rep.schema(here, f"The field '{name}' must contain at least one rule")
    for index, nested in enumerate(value):
        nested_here = pointer_child(here, index)
        if not isinstance(nested, dict):
            rep.schema(nested_here, f"A choice rule must be an OBJECT but was {json_type(nested)}")
            continue
        _check_jsonpath_rule(rep, nested_here, nested, top_level=False, depth=depth + 1)


def _check_operand(rep: Reporter, location: str, operator: str, operand: object) -> None:
    kind = COMPARISON_OPERATORS[operator]
    if kind == "path":
        check_path(rep, location, operand, operator)
    elif kind == "string":
        if not isinstance(operand, str):
            rep.schema(
                location,
                f"The value for the field '{operator}' must be a STRING but "
                f"was {json_type(operand)}",
            )
    elif kind == "number":
        if not is_number(operand):
            rep.schema(
                location,
                f"The value for the field '{operator}' must be a NUMBER but "
                f"was {json_type(operand)}",
            )
    elif kind == "boolean":
        if not isinstance(operand, bool):
            rep.schema(
                location,
                f"The value for the field '{operator}' must be a BOOLEAN but "
                f"was {json_type(operand)}",
            )
    else:
        check_timestamp_literal(rep, location, operand, operator)
