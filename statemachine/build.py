"""Turn a definition into the typed model: validate first, then compile.

`load(definition)` is the one entry point the engine uses: it accepts JSON
text or an already-parsed value, runs `statemachine.validate` (which reports
every problem at once), raises `DefinitionError` carrying those diagnostics
when any is an ERROR, and otherwise builds the frozen model of
`statemachine.model` with every path, template and expression compiled.
A definition over AWS's 1 MiB (`quotas.MAX_DEFINITION_BYTES`, measured as
the UTF-8 JSON text given, or as compact JSON for a parsed value) is
refused before anything else (`check_definition_size`).
The builder trusts the validator for structure; what it compiles here cannot
fail on a definition the validator accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from statemachine.calls import is_intrinsic
from statemachine.dataflow import Template, compile_template
from statemachine.diagnostics import Diagnostic
from statemachine.errors import DefinitionError
from statemachine.jsonata import (
    JsonataTemplate,
    compile_jsonata_template,
    is_expression,
)
from statemachine.model import (
    Batcher,
    CatcherPlan,
    ChoiceState,
    Dynamic,
    FailState,
    MapState,
    ParallelState,
    PassState,
    QueryLanguage,
    Scope,
    State,
    StateMachine,
    SucceedState,
    TaskState,
    WaitState,
)
from statemachine.parts import CHOICE, compile_call, require
from statemachine.paths import Path, compile_path, compile_reference_path
from statemachine.quotas import MAX_DEFINITION_BYTES
from statemachine.retry import parse_catcher, parse_retrier
from statemachine.validate import is_valid, validate
from statemachine.validate_support import unsupported_features

__all__ = ["build", "check_definition_size", "load", "local_diagnostics", "parse_definition"]

MachineType = Literal["STANDARD", "EXPRESS"]


def parse_definition(definition: str | bytes | Mapping[str, Any]) -> Any:
    """Decode JSON text (or pass a parsed value through); raise DefinitionError if not JSON."""
    if isinstance(definition, str | bytes):
        try:
            return msgspec.json.decode(definition)
        except msgspec.DecodeError as exc:
            raise DefinitionError(
                [
                    Diagnostic(
                        severity="ERROR",
                        code="INVALID_JSON_DESCRIPTION",
                        message=f"the definition is not valid JSON: {exc}",
                        location="",
                    )
                ]
            ) from None
    return definition


def check_definition_size(definition: str | bytes | Mapping[str, Any]) -> None:
    """Raise DefinitionError (DEFINITION_TOO_LARGE) for a definition over 1 MiB.

    JSON text is measured as given (UTF-8 bytes), a parsed value as compact
    JSON: AWS's quota ("Maximum size of a state machine definition: 1 MB",
    CreateStateMachine's `definition` of at most 1,048,576) is a hard one.
    """
    if isinstance(definition, str):
        # A lone surrogate is measured too; the validator refuses it next.
        size = len(definition.encode("utf-8", "surrogatepass"))
    elif isinstance(definition, bytes):
        size = len(definition)
    else:
        try:
            size = len(msgspec.json.encode(definition))
        except (TypeError, msgspec.EncodeError, UnicodeEncodeError):
            # Not JSON-shaped, or text holding a lone surrogate: the validator
            # reports what is wrong with it.
            return
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionError(
            [
                Diagnostic(
                    severity="ERROR",
                    code="DEFINITION_TOO_LARGE",
                    message=(
                        f"the definition is {size} bytes, over the {MAX_DEFINITION_BYTES}-byte "
                        "(1 MiB) limit of a state machine definition"
                    ),
                    location="",
                )
            ]
        )


def local_diagnostics(
    raw: Any, *, machine_type: MachineType = "STANDARD", local_resources: bool = True
) -> list[Diagnostic]:
    """`validate`, except that a plain Resource name is a WARNING when `local_resources`.

    A definition AWS accepts also gets an ``UNSUPPORTED_FEATURE`` ERROR for
    each field Stepwise does not run (`unsupported_features`).

    AWS accepts only ARNs as Resources. Stepwise also binds plain names
    (``"Resource": "charge-card"``) to handlers registered under that name;
    such a definition runs here but would be rejected by AWS, which the
    warning says.
    """
    diagnostics = validate(raw, machine_type=machine_type)
    # What AWS accepts but this engine would not run is refused, never skipped.
    diagnostics = sorted([*diagnostics, *unsupported_features(raw)], key=lambda d: d.location)
    if not local_resources:
        return diagnostics
    result = []
    for diagnostic in diagnostics:
        if diagnostic.code == "INVALID_RESOURCE" and _is_plain_name(raw, diagnostic.location):
            diagnostic = Diagnostic(
                severity="WARNING",
                code="LOCAL_RESOURCE",
                message=(
                    "this Resource is not an ARN: Stepwise runs it with the handler registered "
                    "under that name, but AWS Step Functions would reject the definition"
                ),
                location=diagnostic.location,
            )
        result.append(diagnostic)
    return result


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(:[A-Za-z0-9_.\-]+)*$")


def _is_plain_name(raw: Any, pointer: str) -> bool:
    node = raw
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return isinstance(node, str) and not node.startswith("arn:") and bool(_PLAIN_NAME.match(node))


def load(
    definition: str | bytes | Mapping[str, Any],
    *,
    machine_type: MachineType = "STANDARD",
    local_resources: bool = True,
) -> StateMachine:
    """Validate and build a state machine; raise DefinitionError listing every ERROR.

    With `local_resources` (the engine's default) plain Resource names are
    accepted, to be resolved by the activity registry; see `local_diagnostics`.
    """
    check_definition_size(definition)
    raw = parse_definition(definition)
    diagnostics = local_diagnostics(raw, machine_type=machine_type, local_resources=local_resources)
    if not is_valid(diagnostics):
        raise DefinitionError([d for d in diagnostics if d.severity == "ERROR"])
    return build(raw)


def build(raw: Mapping[str, Any]) -> StateMachine:
    """Build the model from a definition the validator accepted."""
    language: QueryLanguage = raw.get("QueryLanguage", "JSONPath")
    return StateMachine(
        scope=_scope(raw, language),
        query_language=language,
        timeout_seconds=raw.get("TimeoutSeconds"),
        version=raw.get("Version"),
        comment=raw.get("Comment"),
    )


def _scope(raw: Mapping[str, Any], machine_language: QueryLanguage) -> Scope:
    states = {name: _state(name, body, machine_language) for name, body in raw["States"].items()}
    return Scope(start_at=raw["StartAt"], states=states, comment=raw.get("Comment"))


def _optional_path(raw: Mapping[str, Any], field: str) -> tuple[Path | None, bool]:
    """(compiled path, given-as-null) for InputPath/OutputPath-like fields."""
    if field not in raw:
        return None, False
    value = raw[field]
    if value is None:
        return None, True
    return compile_path(value), False


def _result_path(raw: Mapping[str, Any]) -> tuple[Path | None, bool]:
    if "ResultPath" not in raw:
        return None, False
    value = raw["ResultPath"]
    if value is None:
        return None, True
    return compile_reference_path(value), False


def _template(raw: Mapping[str, Any], field: str) -> Template | None:
    return compile_template(raw[field]) if field in raw else None


def _jsonata(raw: Mapping[str, Any], field: str) -> JsonataTemplate | None:
    return compile_jsonata_template(raw[field]) if field in raw else None


def _assign(raw: Mapping[str, Any], jsonata: bool) -> Template | JsonataTemplate | None:
    if "Assign" not in raw:
        return None
    return compile_jsonata_template(raw["Assign"]) if jsonata else compile_template(raw["Assign"])


def _dynamic(raw: Mapping[str, Any], field: str, *, jsonata: bool) -> Dynamic | None:
    """A literal field, its `…Path` twin, or (JSONata) an expression string."""
    if field in raw:
        value = raw[field]
        if jsonata and is_expression(value):
            return Dynamic(field=field, expression=compile_jsonata_template(value))
        return Dynamic(field=field, literal=value)
    path_field = field + "Path"
    if path_field in raw:
        text = raw[path_field]
        if is_intrinsic(text):
            return Dynamic(field=path_field, intrinsic=compile_call(text))
        return Dynamic(field=path_field, path=compile_path(text))
    return None


def _state(name: str, raw: Mapping[str, Any], machine_language: QueryLanguage) -> State:
    language: QueryLanguage = raw.get("QueryLanguage", machine_language)
    jsonata = language == "JSONata"
    input_path, input_null = _optional_path(raw, "InputPath")
    output_path, output_null = _optional_path(raw, "OutputPath")
    common: dict[str, Any] = {
        "name": name,
        "query_language": language,
        "comment": raw.get("Comment"),
        "next": raw.get("Next"),
        "end": bool(raw.get("End", False)),
        "input_path": input_path,
        "input_path_null": input_null,
        "output_path": output_path,
        "output_path_null": output_null,
        "assign": _assign(raw, jsonata),
        "output": _jsonata(raw, "Output") if jsonata else None,
    }
    kind = raw["Type"]
    if kind in ("Task", "Parallel", "Map"):
        result_path, result_null = _result_path(raw)
        common.update(
            parameters=None if jsonata else _template(raw, "Parameters"),
            arguments=_jsonata(raw, "Arguments") if jsonata else None,
            result_selector=_template(raw, "ResultSelector"),
            result_path=result_path,
            result_path_null=result_null,
            retry=tuple(parse_retrier(r) for r in raw.get("Retry", ())),
            catch=tuple(parse_catcher(c) for c in raw.get("Catch", ())),
            catch_plans=tuple(_catcher_plan(c, jsonata) for c in raw.get("Catch", ())),
        )
    if kind == "Task":
        return TaskState(
            **common,
            resource=raw["Resource"],
            timeout=_dynamic(raw, "TimeoutSeconds", jsonata=jsonata),
            heartbeat=_dynamic(raw, "HeartbeatSeconds", jsonata=jsonata),
            credentials=raw.get("Credentials"),
        )
    if kind == "Pass":
        result_path, result_null = _result_path(raw)
        return PassState(
            **common,
            parameters=None if jsonata else _template(raw, "Parameters"),
            result=raw.get("Result"),
            has_result="Result" in raw,
            result_path=result_path,
            result_path_null=result_null,
        )
    if kind == "Choice":
        return _choice(raw, common, jsonata)
    if kind == "Wait":
        return WaitState(
            **common,
            seconds=_dynamic(raw, "Seconds", jsonata=jsonata),
            timestamp=_dynamic(raw, "Timestamp", jsonata=jsonata),
        )
    if kind == "Succeed":
        return SucceedState(**common)
    if kind == "Fail":
        return FailState(
            **common,
            error=_dynamic(raw, "Error", jsonata=jsonata),
            cause=_dynamic(raw, "Cause", jsonata=jsonata),
        )
    if kind == "Parallel":
        return ParallelState(
            **common, branches=tuple(_scope(b, machine_language) for b in raw["Branches"])
        )
    if kind == "Map":
        return _map(raw, common, jsonata, machine_language)
    raise AssertionError(f"validator accepted unknown state type {kind!r}")


def _catcher_plan(raw: Mapping[str, Any], jsonata: bool) -> CatcherPlan:
    result_path, result_null = _result_path(raw)
    return CatcherPlan(
        result_path=result_path,
        result_path_null=result_null,
        assign=_assign(raw, jsonata),
        output=_jsonata(raw, "Output") if jsonata else None,
    )


def _batcher(raw: Mapping[str, Any] | None, jsonata: bool) -> Batcher | None:
    if raw is None:
        return None
    batch_input: Template | JsonataTemplate | None = None
    if "BatchInput" in raw:
        value = raw["BatchInput"]
        batch_input = compile_jsonata_template(value) if jsonata else compile_template(value)
    return Batcher(
        max_items=_dynamic(raw, "MaxItemsPerBatch", jsonata=jsonata),
        max_bytes=_dynamic(raw, "MaxInputBytesPerBatch", jsonata=jsonata),
        batch_input=batch_input,
        has_batch_input="BatchInput" in raw,
    )


def _choice(raw: Mapping[str, Any], common: dict[str, Any], jsonata: bool) -> ChoiceState:
    require(CHOICE)
    from statemachine.choice import compile_choice_rule

    language = "JSONata" if jsonata else "JSONPath"
    rules = tuple(
        compile_choice_rule(rule, top_level=True, query_language=language)
        for rule in raw["Choices"]
    )
    conditions: list[JsonataTemplate | None] = []
    outputs: list[JsonataTemplate | None] = []
    assigns: list[Template | JsonataTemplate | None] = []
    for rule in raw["Choices"]:
        conditions.append(compile_jsonata_template(rule["Condition"]) if jsonata else None)
        outputs.append(_jsonata(rule, "Output") if jsonata else None)
        assigns.append(_assign(rule, jsonata))
    return ChoiceState(
        **common,
        choices=rules,
        conditions=tuple(conditions),
        rule_outputs=tuple(outputs),
        rule_assigns=tuple(assigns),
        default=raw.get("Default"),
    )


def _map(
    raw: Mapping[str, Any],
    common: dict[str, Any],
    jsonata: bool,
    machine_language: QueryLanguage,
) -> MapState:
    processor_raw = raw.get("ItemProcessor", raw.get("Iterator"))
    config = processor_raw.get("ProcessorConfig", {}) if processor_raw else {}
    processor = _scope(processor_raw, machine_language)
    selector_field = "ItemSelector" if "ItemSelector" in raw else "Parameters"
    item_selector: Template | JsonataTemplate | None = None
    if selector_field in raw:
        item_selector = (
            compile_jsonata_template(raw[selector_field])
            if jsonata
            else compile_template(raw[selector_field])
        )
    # A literal Items array is a template too: it may hold expressions at any depth.
    items = compile_jsonata_template(raw["Items"]) if jsonata and "Items" in raw else None
    items_path = compile_path(raw["ItemsPath"]) if "ItemsPath" in raw else None
    # Map's deprecated Parameters is the item selector, not the state's Parameters.
    common = {**common, "parameters": None}
    return MapState(
        **common,
        processor=processor,
        mode=config.get("Mode", "INLINE"),
        execution_type=config.get("ExecutionType"),
        items_path=items_path,
        items=items,
        item_selector=item_selector,
        max_concurrency=_dynamic(raw, "MaxConcurrency", jsonata=jsonata),
        tolerated_failure_percentage=_dynamic(raw, "ToleratedFailurePercentage", jsonata=jsonata),
        tolerated_failure_count=_dynamic(raw, "ToleratedFailureCount", jsonata=jsonata),
        label=raw.get("Label"),
        item_reader=raw.get("ItemReader"),
        item_batcher=_batcher(raw.get("ItemBatcher"), jsonata),
        result_writer=raw.get("ResultWriter"),
    )
