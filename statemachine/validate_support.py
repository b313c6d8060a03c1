"""What Stepwise implements: fields AWS accepts that this engine would otherwise ignore.

AWS's verdict (`statemachine.validate`) accepts every field of the language.
Stepwise runs most of them; a field it does not run must never be skipped
silently (a Distributed Map that reads a CSV must not iterate its input
instead). This module owns that audit: `unsupported_features` walks a
definition — every scope, Parallel branch and Map processor — and reports one
``UNSUPPORTED_FEATURE`` ERROR, at the field's JSON pointer, for each field
or value the engine does not implement: Task ``Credentials`` (no roles are
assumed locally), and the parts of a Map's ``ItemReader`` and
``ResultWriter`` that local storage does not serve (other resources,
PARQUET, ``ManifestType``, ``ItemsPointer``, either on a Map that is not
DISTRIBUTED, ``ItemsPath``/``Items`` beside a reader). `local_diagnostics` (the
rules the engine loads definitions by) adds these to AWS's verdict. Pure:
reads the raw definition only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from statemachine.diagnostics import Diagnostic, pointer_child

__all__ = [
    "LIST_OBJECTS_RESOURCE",
    "PUT_OBJECT_RESOURCE",
    "READER_INPUT_TYPES",
    "S3_GET_OBJECT_RESOURCE",
    "UNSUPPORTED_FEATURE",
    "unsupported_features",
]

UNSUPPORTED_FEATURE = "UNSUPPORTED_FEATURE"
S3_GET_OBJECT_RESOURCE = "arn:aws:states:::s3:getObject"
LIST_OBJECTS_RESOURCE = "arn:aws:states:::s3:listObjectsV2"
PUT_OBJECT_RESOURCE = "arn:aws:states:::s3:putObject"
# The ReaderConfig.InputType values the local reader streams.
READER_INPUT_TYPES = ("CSV", "JSON", "JSONL", "MANIFEST")


def _states(scope: Mapping[str, Any], location: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    """Every state of `scope` and of its nested scopes, with its JSON pointer."""
    states = scope.get("States")
    if not isinstance(states, Mapping):
        return
    for name, state in states.items():
        if not isinstance(state, Mapping):
            continue
        here = pointer_child(location, "States", name)
        yield state, here
        branches = state.get("Branches")
        for index, branch in enumerate(branches if isinstance(branches, list) else ()):
            if isinstance(branch, Mapping):
                yield from _states(branch, pointer_child(here, "Branches", index))
        for field in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(field), Mapping):
                yield from _states(state[field], pointer_child(here, field))


def _error(location: str, message: str) -> Diagnostic:
    return Diagnostic("ERROR", UNSUPPORTED_FEATURE, message, location)


def _mode(state: Mapping[str, Any]) -> Any:
    processor = state.get("ItemProcessor", state.get("Iterator"))
    config = processor.get("ProcessorConfig") if isinstance(processor, Mapping) else None
    return config.get("Mode") if isinstance(config, Mapping) else None


def _reader(state: Mapping[str, Any], here: str) -> Iterator[Diagnostic]:
    reader = state.get("ItemReader")
    if not isinstance(reader, Mapping):
        return
    at = pointer_child(here, "ItemReader")
    if _mode(state) != "DISTRIBUTED":
        yield _error(
            at,
            "'ItemReader' is supported only in a Map whose ProcessorConfig.Mode is 'DISTRIBUTED'",
        )
    for field in ("ItemsPath", "Items"):
        if field in state:
            yield _error(
                pointer_child(here, field),
                f"'{field}' together with an 'ItemReader' is not supported: the items are "
                "what the reader reads",
            )
    resource = reader.get("Resource")
    if resource not in (S3_GET_OBJECT_RESOURCE, LIST_OBJECTS_RESOURCE):
        yield _error(
            pointer_child(at, "Resource"),
            f"Stepwise reads items only with {S3_GET_OBJECT_RESOURCE!r} or "
            f"{LIST_OBJECTS_RESOURCE!r} (from local storage); {resource!r} is not supported",
        )
    reader_config = reader.get("ReaderConfig")
    reader_config = reader_config if isinstance(reader_config, Mapping) else {}
    input_type = reader_config.get("InputType")
    if resource == S3_GET_OBJECT_RESOURCE and input_type is None:
        yield _error(
            pointer_child(at, "ReaderConfig"),
            "An s3:getObject ItemReader needs 'ReaderConfig.InputType' "
            f"({', '.join(READER_INPUT_TYPES)})",
        )
    if input_type is not None and input_type not in READER_INPUT_TYPES:
        yield _error(
            pointer_child(at, "ReaderConfig", "InputType"),
            f"Stepwise reads InputType {', '.join(READER_INPUT_TYPES)}; "
            f"{input_type!r} is not supported",
        )
    for field in ("ManifestType", "ItemsPointer"):
        if field in reader_config:
            yield _error(
                pointer_child(at, "ReaderConfig", field),
                f"'ReaderConfig.{field}' is not supported by Stepwise's item reader",
            )


def _writer(state: Mapping[str, Any], here: str) -> Iterator[Diagnostic]:
    writer = state.get("ResultWriter")
    if not isinstance(writer, Mapping):
        return
    at = pointer_child(here, "ResultWriter")
    if _mode(state) != "DISTRIBUTED":
        yield _error(
            at,
            "'ResultWriter' is supported only in a Map whose ProcessorConfig.Mode is 'DISTRIBUTED'",
        )
    if "Resource" in writer and writer["Resource"] != PUT_OBJECT_RESOURCE:
        yield _error(
            pointer_child(at, "Resource"),
            f"Stepwise writes results only with {PUT_OBJECT_RESOURCE!r} (to local storage); "
            f"{writer['Resource']!r} is not supported",
        )


def unsupported_features(definition: Any) -> list[Diagnostic]:
    """One ``UNSUPPORTED_FEATURE`` ERROR per field of `definition` the engine does not run.

    Never raises on any JSON value; structural problems are `validate`'s to report.
    """
    if not isinstance(definition, Mapping):
        return []
    found: list[Diagnostic] = []
    for state, here in _states(definition, ""):
        kind = state.get("Type")
        if kind == "Task" and "Credentials" in state:
            found.append(
                _error(
                    pointer_child(here, "Credentials"),
                    "'Credentials' is not supported: Stepwise assumes no roles, so the Task "
                    "would run with the worker's own identity",
                )
            )
        if kind == "Map":
            found.extend(_reader(state, here))
            found.extend(_writer(state, here))
    return found
