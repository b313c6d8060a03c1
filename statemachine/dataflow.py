"""The JSONPath-mode data-flow steps: payload templates, InputPath and OutputPath.

This module owns Payload Templates — the JSON objects of Parameters,
ResultSelector, ItemSelector and JSONPath ``Assign`` — compiled once into an
immutable tree (a key ending in ``.$`` loses the suffix and its value becomes a
`Path` or an `Intrinsic`; everything else stays literal) and evaluated many
times, plus the InputPath/OutputPath selection steps. ResultPath lives in
`statemachine.paths.apply_result_path`. Missing paths raise ``States.Runtime``
with the causes AWS gives (the engine prefixes the "An error occurred while
executing the state …" part).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from statemachine.calls import is_intrinsic
from statemachine.errors import ExpressionSyntaxError, States, StatesError
from statemachine.nondeterminism import Nondeterminism
from statemachine.parts import compile_call
from statemachine.paths import MISSING, Path, compile_path, find, resolve, to_json

if TYPE_CHECKING:  # loaded with the first call compiled (statemachine.parts)
    from statemachine.intrinsics import Intrinsic

__all__ = [
    "Template",
    "apply_input_path",
    "apply_output_path",
    "compile_template",
    "evaluate_template",
]


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any  # a JSON scalar


@dataclass(frozen=True, slots=True)
class _Dynamic:
    field: str  # the original key, with its ".$"
    expression: Path | Intrinsic


@dataclass(frozen=True, slots=True)
class _Object:
    fields: tuple[tuple[str, _Node], ...]


@dataclass(frozen=True, slots=True)
class _Array:
    items: tuple[_Node, ...]


_Node = _Literal | _Dynamic | _Object | _Array


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled payload template; `source` is the JSON it was compiled from.

    `reads_context`/`reads_variables`: whether any of its paths reads ``$$``
    or a variable (`_node_paths`); when not, its evaluation may be given
    neither.
    """

    source: Any
    root: _Node
    reads_context: bool = False
    reads_variables: bool = False


def _compile_dynamic(key: str, value: Any, where: str) -> _Dynamic:
    message = (
        f"The value for the field '{key}' must be a valid JSONPath or a valid "
        f"intrinsic function call (at {where})"
    )
    if not isinstance(value, str):
        raise ExpressionSyntaxError(message)
    try:
        if value.startswith("$"):
            return _Dynamic(key, compile_path(value))
        if is_intrinsic(value):
            return _Dynamic(key, compile_call(value))
    except ExpressionSyntaxError as exc:
        raise ExpressionSyntaxError(f"{message}: {exc}") from None
    raise ExpressionSyntaxError(message)


def _compile(value: Any, where: str) -> _Node:
    if isinstance(value, dict):
        fields: list[tuple[str, _Node]] = []
        seen: set[str] = set()
        for key, child in value.items():
            location = f"{where}/{key}"
            if key.endswith(".$"):
                name = key[:-2]
                node: _Node = _compile_dynamic(key, child, location)
            else:
                name = key
                node = _compile(child, location)
            if name in seen:
                raise ExpressionSyntaxError(
                    f"The field '{name}' appears twice once '.$' is stripped (at {location})"
                )
            seen.add(name)
            fields.append((name, node))
        return _Object(tuple(fields))
    if isinstance(value, list):
        return _Array(tuple(_compile(item, f"{where}/{i}") for i, item in enumerate(value)))
    return _Literal(value)


def compile_template(value: Any) -> Template:
    """Compile a payload template (any JSON value; usually an object).

    Raises `ExpressionSyntaxError` naming the offending key when a ``.$``
    value is neither a valid path nor a valid intrinsic call, or when two keys
    are the same once ``.$`` is stripped.
    """
    root = _compile(value, "")
    roots = {path.root for path in _node_paths(root)}
    return Template(value, root, "context" in roots, "variable" in roots)


def _document_for(path: Path, data: Any, context: Any, variables: Mapping[str, Any]) -> Any:
    if path.root == "context":
        return context
    if path.root == "variable":
        return variables.get(path.variable or "", None)
    return data


def _evaluate(
    node: _Node,
    data: Any,
    context: Any,
    variables: Mapping[str, Any],
    nondeterminism: Nondeterminism,
) -> Any:
    # Commonest node first, and a loop rather than a comprehension's frame.
    if isinstance(node, _Dynamic):
        expression = node.expression
        if not isinstance(expression, Path):  # an Intrinsic: its module made it
            from statemachine.intrinsics import evaluate_intrinsic

            return evaluate_intrinsic(expression, data, context, variables, nondeterminism)
        value = find(expression, data, context, variables)
        if value is MISSING:
            document = _document_for(expression, data, context, variables)
            raise StatesError(
                States.RUNTIME,
                f"The JSONPath '{expression.text}' specified for the field '{node.field}' "
                f"could not be found in the input '{to_json(document)}'",
            )
        return value
    if isinstance(node, _Object):
        built: dict[str, Any] = {}
        for name, child in node.fields:
            built[name] = _evaluate(child, data, context, variables, nondeterminism)
        return built
    if isinstance(node, _Literal):
        return node.value
    return [_evaluate(item, data, context, variables, nondeterminism) for item in node.items]


def evaluate_template(
    t: Template,
    data: Any,
    context: Any,
    variables: Mapping[str, Any],
    nondeterminism: Nondeterminism,
) -> Any:
    """Build the template's output from `data` (``$``), `context` (``$$``) and variables.

    Values selected by paths are shared with `data`, not copied; callers must
    not mutate the result in place. Raises ``States.Runtime`` when a path
    selects nothing and ``States.IntrinsicFailure`` when an intrinsic fails.
    """
    return _evaluate(t.root, data, context, variables, nondeterminism)


def _node_paths(root: _Node) -> Iterator[Path]:
    """Every path a template node reads: its ``.$`` fields' paths, their intrinsics' arguments."""
    nodes: list[_Node] = [root]
    while nodes:
        node = nodes.pop()
        if isinstance(node, _Dynamic):
            expression = node.expression
            if isinstance(expression, Path):
                yield expression
            else:
                from statemachine.intrinsics import intrinsic_paths

                yield from intrinsic_paths(expression)
        elif isinstance(node, _Object):
            nodes.extend(child for _, child in node.fields)
        elif isinstance(node, _Array):
            nodes.extend(node.items)


def apply_input_path(
    path: Path | None, data: Any, context: Any, variables: Mapping[str, Any]
) -> Any:
    """The effective input after InputPath: ``None`` (InputPath null) gives ``{}``.

    Raises ``States.Runtime`` (``Invalid path '$.x' : …``) when nothing matches.
    """
    if path is None:
        return {}
    return resolve(path, data, context, variables)


def apply_output_path(
    path: Path | None, data: Any, context: Any, variables: Mapping[str, Any]
) -> Any:
    """The state output after OutputPath: ``None`` (OutputPath null) gives ``{}``.

    Raises ``States.Runtime`` (``Invalid path '$.x' : …``) when nothing matches.
    """
    if path is None:
        return {}
    return resolve(path, data, context, variables)
