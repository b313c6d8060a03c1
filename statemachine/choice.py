"""Choice rules: compile them from the definition and evaluate them against data.

A Choice state's `Choices` array holds rules. In JSONPath mode a rule is a
data test (`Variable` plus exactly one comparison or type-test operator),
or a boolean combination (`And`, `Or`, `Not`) of nested rules; in JSONata
mode a rule is a `Condition` that the JSONata module evaluates. This module
compiles a raw rule into frozen structs (paths compiled, StringMatches
patterns pre-split, timestamp literals pre-parsed) and evaluates JSONPath
rules with AWS's semantics: a type mismatch is simply false, booleans are
not numbers, numbers compare as IEEE doubles, timestamps as instants, and a
`Variable` or `…Path` operand that matches nothing fails the state with
``States.Runtime`` — except for `IsPresent`, which answers false. Rule-level
`Assign` and `Output` stay raw JSON for the caller to compile.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from statemachine.errors import ExpressionSyntaxError, States, StatesError
from statemachine.paths import MISSING, Path, compile_find, compile_path, find
from statemachine.timestamps import parse_timestamp

__all__ = [
    "COMPARISON_OPERATORS",
    "TYPE_TEST_OPERATORS",
    "AndRule",
    "ChoiceRule",
    "ConditionRule",
    "DataTestRule",
    "NotRule",
    "OrRule",
    "RuleTest",
    "compile_choice_rule",
    "compile_rule_test",
    "evaluate_rule",
    "first_match",
    "rule_paths",
]

# Only ever given two floats, two strings, two bools or two datetimes: each gives a bool.
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}
# operator name -> (family, comparison); the families decide operand types.
_COMPARISONS: dict[str, tuple[str, str]] = {
    f"{family}{comparison}": (family, comparison)
    for family in ("String", "Numeric", "Timestamp")
    for comparison in _COMPARE
}
_COMPARISONS["BooleanEquals"] = ("Boolean", "Equals")

COMPARISON_OPERATORS: frozenset[str] = frozenset(
    [*_COMPARISONS, *(f"{name}Path" for name in _COMPARISONS), "StringMatches"]
)
"""Every JSONPath comparison operator, the 16 `…Path` twins included."""

TYPE_TEST_OPERATORS: frozenset[str] = frozenset(
    {"IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"}
)
"""The type tests; each takes a boolean operand."""

_OPERATORS = COMPARISON_OPERATORS | TYPE_TEST_OPERATORS
_BOOLEAN_OPERATORS = frozenset({"And", "Or", "Not"})


class ChoiceRule(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every compiled rule.

    Top-level rules carry `next` (nested ones have None) and, when the
    definition gave them, the raw `assign` and `output` JSON values
    (msgspec.UNSET when absent).
    """

    next: str | None = None
    assign: Any = msgspec.UNSET
    output: Any = msgspec.UNSET


class DataTestRule(ChoiceRule, frozen=True, kw_only=True):
    """`Variable` plus one operator.

    `operator` is the ASL name as written (``NumericEqualsPath``,
    ``IsPresent`` …) and `operand` its raw value (the path text for `…Path`
    operators, whose compiled form is `operand_path`). `timestamp` holds a
    Timestamp literal already parsed (None if it is not a valid timestamp,
    which makes the comparison false); `number` a Numeric literal as the
    double it compares as; `segments`/`pattern_error` are the compiled
    StringMatches pattern.
    """

    variable: Path
    operator: str
    operand: Any
    operand_path: Path | None = None
    timestamp: datetime | None = None
    number: float | None = None
    segments: tuple[str, ...] = ()
    pattern_error: str | None = None


class AndRule(ChoiceRule, frozen=True, kw_only=True):
    """True when every nested rule is true; stops at the first false one."""

    rules: tuple[ChoiceRule, ...]


class OrRule(ChoiceRule, frozen=True, kw_only=True):
    """True when any nested rule is true; stops at the first true one."""

    rules: tuple[ChoiceRule, ...]


class NotRule(ChoiceRule, frozen=True, kw_only=True):
    """The negation of one nested rule."""

    rule: ChoiceRule


class ConditionRule(ChoiceRule, frozen=True, kw_only=True):
    """A JSONata rule; `condition` is the raw boolean or ``{% … %}`` string."""

    condition: Any


def _fail(message: str) -> ExpressionSyntaxError:
    return ExpressionSyntaxError(f"choice rule: {message}")


def _compile_path(text: Any, field: str) -> Path:
    if not isinstance(text, str):
        raise _fail(f"{field} must be a path string, got {type(text).__name__}")
    try:
        return compile_path(text)
    except ExpressionSyntaxError as exc:
        raise _fail(f"{field} {text!r} is not a valid path: {exc}") from None


def _split_pattern(pattern: str) -> tuple[tuple[str, ...], str | None]:
    """Split a StringMatches pattern at its unescaped stars.

    Returns the literal segments between wildcards (n stars → n+1 segments)
    and, for an escape other than ``\\*`` or ``\\\\``, an error message
    instead (AWS fails at evaluation time, not at creation).
    """
    segments: list[str] = []
    current: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "*":
            segments.append("".join(current))
            current = []
        elif char == "\\":
            escaped = next(chars, None)
            if escaped not in ("*", "\\"):
                shown = "end of pattern" if escaped is None else repr("\\" + escaped)
                return (), f"Invalid escape sequence ({shown}) in StringMatches pattern {pattern!r}"
            current.append(escaped)
        else:
            current.append(char)
    segments.append("".join(current))
    return tuple(segments), None


def _check_operand(operator: str, operand: Any) -> None:
    if operator.endswith("Path"):
        return
    if operator in TYPE_TEST_OPERATORS or operator == "BooleanEquals":
        if not isinstance(operand, bool):
            raise _fail(f"{operator} takes a boolean, got {operand!r}")
    elif operator.startswith("Numeric"):
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            raise _fail(f"{operator} takes a number, got {operand!r}")
    elif not isinstance(operand, str):
        raise _fail(f"{operator} takes a string, got {operand!r}")


def _compile_jsonata(raw: Mapping[str, Any], top_level: bool) -> ConditionRule:
    if not top_level:
        raise _fail("JSONata choice rules cannot be nested")
    unknown = sorted(set(raw) - {"Condition", "Next", "Assign", "Output", "Comment"})
    if unknown:
        raise _fail(f"field(s) {', '.join(unknown)} not allowed in a JSONata rule")
    if "Condition" not in raw:
        raise _fail("a JSONata rule needs a Condition")
    condition = raw["Condition"]
    is_expression = (
        isinstance(condition, str) and condition.startswith("{%") and condition.endswith("%}")
    )
    if not isinstance(condition, bool) and not is_expression:
        raise _fail("Condition must be a boolean or a JSONata expression {% … %}")
    return ConditionRule(
        condition=condition,
        next=_next(raw, top_level=True),
        assign=raw.get("Assign", msgspec.UNSET),
        output=raw.get("Output", msgspec.UNSET),
    )


def _next(raw: Mapping[str, Any], *, top_level: bool) -> str | None:
    if not top_level:
        if "Next" in raw:
            raise _fail("a nested rule (inside And, Or or Not) must not have Next")
        if "Assign" in raw:
            raise _fail("a nested rule (inside And, Or or Not) must not have Assign")
        return None
    next_state = raw.get("Next")
    if not isinstance(next_state, str):
        raise _fail("a top-level rule needs Next, a string naming a state")
    return next_state


def compile_choice_rule(
    raw: Mapping[str, Any], *, top_level: bool, query_language: str = "JSONPath"
) -> ChoiceRule:
    """Compile one element of `Choices` (top_level=True) or a rule nested in And/Or/Not.

    In JSONata mode the rule must be a top-level `Condition` rule, kept raw
    in a `ConditionRule`. Raises ExpressionSyntaxError when the rule is not
    an object, has unknown or misplaced fields (Next/Assign on a nested
    rule, Output in JSONPath), has zero or several operators, lacks
    Variable, has an operand of the wrong JSON type, an empty And/Or, or a
    path that does not parse. A malformed StringMatches escape and an
    invalid Timestamp literal are accepted here, as AWS accepts them.
    """
    if not isinstance(raw, Mapping):
        raise _fail(f"a rule must be a JSON object, got {type(raw).__name__}")
    if query_language == "JSONata":
        return _compile_jsonata(raw, top_level)
    if query_language != "JSONPath":
        raise _fail(f"unknown query language {query_language!r}")
    allowed = {"Comment", "Variable", "Next", "Assign"} | _OPERATORS | _BOOLEAN_OPERATORS
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _fail(f"field(s) {', '.join(unknown)} not allowed in a JSONPath rule")
    next_state = _next(raw, top_level=top_level)
    assign = raw.get("Assign", msgspec.UNSET)
    present = [key for key in raw if key in _OPERATORS or key in _BOOLEAN_OPERATORS]
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        raise _fail(f"a rule needs exactly one operator (found: {found})")
    operator = present[0]
    if operator in _BOOLEAN_OPERATORS:
        if "Variable" in raw:
            raise _fail(f"{operator} rules do not take a Variable")
        return _compile_boolean(raw, operator, next_state, assign)
    if "Variable" not in raw:
        raise _fail(f"a {operator} rule needs a Variable")
    variable = _compile_path(raw["Variable"], "Variable")
    operand = raw[operator]
    _check_operand(operator, operand)
    operand_path = None
    timestamp = None
    number = None
    segments: tuple[str, ...] = ()
    pattern_error = None
    if operator.endswith("Path"):
        operand_path = _compile_path(operand, operator)
    elif operator.startswith("Timestamp"):
        timestamp = parse_timestamp(operand)
    elif operator.startswith("Numeric"):
        number = _double(operand)
    elif operator == "StringMatches":
        segments, pattern_error = _split_pattern(operand)
    return DataTestRule(
        variable=variable,
        operator=operator,
        operand=operand,
        operand_path=operand_path,
        timestamp=timestamp,
        number=number,
        segments=segments,
        pattern_error=pattern_error,
        next=next_state,
        assign=assign,
    )


def _compile_boolean(
    raw: Mapping[str, Any], operator: str, next_state: str | None, assign: Any
) -> ChoiceRule:
    operand = raw[operator]
    if operator == "Not":
        if not isinstance(operand, Mapping):
            raise _fail("Not takes a single rule object")
        inner = compile_choice_rule(operand, top_level=False)
        return NotRule(rule=inner, next=next_state, assign=assign)
    if not isinstance(operand, list) or not operand:
        raise _fail(f"{operator} takes a non-empty array of rules")
    rules = tuple(compile_choice_rule(item, top_level=False) for item in operand)
    if operator == "And":
        return AndRule(rules=rules, next=next_state, assign=assign)
    return OrRule(rules=rules, next=next_state, assign=assign)


def _invalid_path(path: Path) -> StatesError:
    return StatesError(
        States.RUNTIME,
        f"Invalid path '{path.text}': "
        "The choice state's condition path references an invalid value.",
    )


def _double(value: Any) -> float | None:
    # JSON numbers are IEEE doubles on AWS; bool is an int subclass in Python but not a number.
    kind = type(value)
    if kind is float:  # as float(value) gives it
        return value  # type: ignore[no-any-return]
    if kind is not int and (isinstance(value, bool) or not isinstance(value, int | float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _string_matches(segments: tuple[str, ...], value: str) -> bool:
    # Leftmost matching of the literal pieces between stars is exact for `*`-only
    # globs and linear, unlike a backtracking regex on patterns such as "*a*a*a*b".
    if len(segments) == 1:
        return value == segments[0]
    prefix, *middle, suffix = segments
    if len(value) < len(prefix) + len(suffix):
        return False
    if not value.startswith(prefix) or not value.endswith(suffix):
        return False
    position, end = len(prefix), len(value) - len(suffix)
    for piece in middle:
        found = value.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def _type_test(operator: str, value: Any) -> bool:
    if operator == "IsNull":
        return value is None
    if operator == "IsNumeric":
        return _double(value) is not None
    if operator == "IsString":
        return isinstance(value, str)
    if operator == "IsBoolean":
        return isinstance(value, bool)
    return isinstance(value, str) and parse_timestamp(value) is not None


def _compare(family: str, comparison: str, value: Any, operand: Any) -> bool:
    compare = _COMPARE[comparison]
    if family == "String":
        return isinstance(value, str) and isinstance(operand, str) and compare(value, operand)
    if family == "Numeric":
        left, right = _double(value), _double(operand)
        return left is not None and right is not None and compare(left, right)
    if family == "Boolean":
        return isinstance(value, bool) and isinstance(operand, bool) and value == operand
    left_time = parse_timestamp(value) if isinstance(value, str) else None
    right_time = operand if isinstance(operand, datetime) else None
    if isinstance(operand, str):
        right_time = parse_timestamp(operand)
    return left_time is not None and right_time is not None and compare(left_time, right_time)


def _evaluate_test(
    rule: DataTestRule, data: Any, context: Any, variables: Mapping[str, Any]
) -> bool:
    value = find(rule.variable, data, context, variables)
    number = rule.number
    if number is not None:  # a Numeric literal comparison, the commonest rule: as below
        if value is MISSING:
            raise _invalid_path(rule.variable)
        left = _double(value)
        return left is not None and _COMPARE[_COMPARISONS[rule.operator][1]](left, number)
    if rule.operator == "IsPresent":
        return (value is not MISSING) is rule.operand
    if value is MISSING:
        raise _invalid_path(rule.variable)
    if rule.operator in TYPE_TEST_OPERATORS:
        return _type_test(rule.operator, value) is rule.operand
    if rule.operator == "StringMatches":
        if rule.pattern_error is not None:
            raise StatesError(States.RUNTIME, rule.pattern_error)
        return isinstance(value, str) and _string_matches(rule.segments, value)
    if rule.operand_path is not None:
        operand = find(rule.operand_path, data, context, variables)
        if operand is MISSING:
            raise _invalid_path(rule.operand_path)
        family, comparison = _COMPARISONS[rule.operator.removesuffix("Path")]
        return _compare(family, comparison, value, operand)
    family, comparison = _COMPARISONS[rule.operator]
    if family == "Timestamp":
        return _compare(family, comparison, value, rule.timestamp)
    return _compare(family, comparison, value, rule.operand)


def evaluate_rule(rule: ChoiceRule, data: Any, context: Any, variables: Mapping[str, Any]) -> bool:
    """Whether a compiled JSONPath rule holds for the effective input `data`.

    `context` is the context object (for ``$$`` paths) and `variables` the
    variables visible in the state (for ``$name`` paths). Returns a bool and
    never raises for type mismatches. Raises StatesError(States.Runtime)
    when a Variable or `…Path` operand matches nothing (except IsPresent)
    or a StringMatches pattern has a bad escape, and TypeError for a
    JSONata `ConditionRule`, which the caller evaluates itself. And/Or stop
    at the first deciding sub-rule, so later sub-rules cannot fail.
    """
    if isinstance(rule, DataTestRule):
        return _evaluate_test(rule, data, context, variables)
    if isinstance(rule, AndRule):
        return all(evaluate_rule(inner, data, context, variables) for inner in rule.rules)
    if isinstance(rule, OrRule):
        return any(evaluate_rule(inner, data, context, variables) for inner in rule.rules)
    if isinstance(rule, NotRule):
        return not evaluate_rule(rule.rule, data, context, variables)
    if isinstance(rule, ConditionRule):
        raise TypeError("JSONata Condition rules are evaluated by the JSONata module")
    raise TypeError(f"not a compiled choice rule: {rule!r}")


def first_match(
    rules: Sequence[ChoiceRule], data: Any, context: Any, variables: Mapping[str, Any]
) -> int | None:
    """Index of the first JSONPath rule that holds (the one whose Next is taken), else None.

    None means the Default applies, or States.NoChoiceMatched without one.
    Raises what `evaluate_rule` raises.
    """
    for index, rule in enumerate(rules):
        if evaluate_rule(rule, data, context, variables):
            return index
    return None


RuleTest = Callable[[Any, Any, Mapping[str, Any]], bool]
"""A compiled JSONPath rule: (data, context, variables) → whether it holds."""


def compile_rule_test(rule: ChoiceRule) -> RuleTest:
    """`evaluate_rule` for one rule, with what it can work out once worked out once.

    A Numeric comparison with a literal (the commonest rule) becomes one
    closure over its Variable's `compile_find`, its comparison function and
    its operand's double; And/Or/Not combine their rules' tests, stopping
    where `evaluate_rule` stops. Every other rule is `evaluate_rule` itself.
    The same answers and the same errors as `evaluate_rule`, for any data.
    """
    if isinstance(rule, DataTestRule) and rule.number is not None:
        return _numeric_test(rule, rule.number)
    if isinstance(rule, AndRule):
        tests = tuple(compile_rule_test(inner) for inner in rule.rules)
        return lambda data, context, variables: all(t(data, context, variables) for t in tests)
    if isinstance(rule, OrRule):
        tests = tuple(compile_rule_test(inner) for inner in rule.rules)
        return lambda data, context, variables: any(t(data, context, variables) for t in tests)
    if isinstance(rule, NotRule):
        negated = compile_rule_test(rule.rule)
        return lambda data, context, variables: not negated(data, context, variables)
    return lambda data, context, variables: evaluate_rule(rule, data, context, variables)


def _numeric_test(rule: DataTestRule, number: float) -> RuleTest:
    lookup = compile_find(rule.variable)
    compare = _COMPARE[_COMPARISONS[rule.operator][1]]
    variable = rule.variable

    def numeric_test(data: Any, context: Any, variables: Mapping[str, Any]) -> bool:
        value = lookup(data, context, variables)
        if type(value) is float:
            return compare(value, number)
        if value is MISSING:
            raise _invalid_path(variable)
        left = _double(value)
        return left is not None and compare(left, number)

    return numeric_test


def rule_paths(rule: ChoiceRule) -> Iterator[Path]:
    """Every path a JSONPath rule may read: its Variables and `…Path` operands, nested too."""
    if isinstance(rule, DataTestRule):
        yield rule.variable
        if rule.operand_path is not None:
            yield rule.operand_path
    elif isinstance(rule, AndRule | OrRule):
        for inner in rule.rules:
            yield from rule_paths(inner)
    elif isinstance(rule, NotRule):
        yield from rule_paths(rule.rule)
