"""Validation of a Map state's item-handling fields.

This module owns the Map-specific checks other than its nested processor
scope: the item source (`ItemsPath` / JSONata `Items`), `ItemSelector` and its
deprecated twin `Parameters`, `MaxConcurrency` and the tolerated-failure
fields with their `…Path` forms, `ProcessorConfig`, and the structure of
`ItemReader`, `ItemBatcher` and `ResultWriter`.
"""

from __future__ import annotations

from typing import Any

from statemachine.diagnostics import pointer_child
from statemachine.quotas import MAX_PAYLOAD_BYTES
from statemachine.validate_exprs import (
    QueryLanguage,
    Reporter,
    check_jsonata_value,
    check_path,
    check_payload_template,
    is_int,
    is_jsonata,
    is_number,
    json_type,
    other_language_field,
)

__all__ = ["check_map_fields"]

_READER_INPUT_TYPES = ("CSV", "JSON", "JSONL", "PARQUET", "MANIFEST")
_CSV_HEADER_LOCATIONS = ("FIRST_ROW", "GIVEN")
_CSV_DELIMITERS = ("COMMA", "PIPE", "SEMICOLON", "SPACE", "TAB")
_OUTPUT_TYPES = ("JSON", "JSONL")
_TRANSFORMATIONS = ("NONE", "COMPACT", "FLATTEN")


class _Fields:
    """An object of a Map (the state itself, or a reader/batcher/writer) being checked."""

    def __init__(
        self, rep: Reporter, body: dict[str, Any], location: str, ql: QueryLanguage
    ) -> None:
        self.rep, self.body, self.location, self.ql = rep, body, location, ql

    def at(self, *tokens: str | int) -> str:
        return pointer_child(self.location, *tokens)

    def only(self, allowed: set[str], what: str) -> None:
        for key in self.body:
            if key not in allowed:
                self.rep.schema(self.at(key), f"Field '{key}' is not supported in {what}")

    def exclusive(self, *names: str) -> None:
        present = [n for n in names if n in self.body]
        if len(present) > 1:
            self.rep.schema(
                self.at(present[1]),
                f"The fields {', '.join(repr(n) for n in present)}"
                f" are mutually exclusive; use only one",
            )

    def enum(self, name: str, choices: tuple[str, ...]) -> None:
        if name in self.body and self.body[name] not in choices:
            self.rep.schema(
                self.at(name),
                f"The value for the field '{name}' must be one of "
                f"{', '.join(choices)}, but was {self.body[name]!r}",
            )

    def number(self, name: str, low: float, high: float | None, *, integral: bool) -> None:
        if name not in self.body:
            return
        value = self.body[name]
        if self.ql == "JSONata" and is_jsonata(value):
            check_jsonata_value(self.rep, self.at(name), value)
            return
        ok_type = is_int(value) if integral else is_number(value)
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        kind = "an INTEGER" if integral else "a NUMBER"
        if not ok_type:
            self.rep.schema(
                self.at(name),
                f"The value for the field '{name}' must be {kind} "
                f"{bounds} but was {json_type(value)}",
            )
        elif value < low or (high is not None and value > high):
            self.rep.schema(
                self.at(name), f"The value for the field '{name}' must be {bounds}, but was {value}"
            )

    def path(self, name: str) -> None:
        if name in self.body:
            if self.ql == "JSONata":
                self.rep.schema(self.location, other_language_field(self.ql, name))
            else:
                check_path(self.rep, self.at(name), self.body[name], name)

    def sub_object(self, name: str) -> _Fields | None:
        if name not in self.body:
            return None
        value = self.body[name]
        if not isinstance(value, dict):
            self.rep.schema(
                self.at(name),
                f"The value for the field '{name}' must be an OBJECT but was {json_type(value)}",
            )
            return None
        return _Fields(self.rep, value, self.at(name), self.ql)

    def template(self, name: str) -> None:
        """`Parameters` (JSONPath template) or `Arguments` (JSONata value)."""
        if name not in self.body:
            return
        if name == "Parameters" and self.ql == "JSONPath":
            check_payload_template(self.rep, self.at(name), self.body[name], name)
        elif name == "Arguments" and self.ql == "JSONata":
            check_jsonata_value(self.rep, self.at(name), self.body[name])
        else:
            self.rep.schema(self.location, other_language_field(self.ql, name))


def check_map_fields(rep: Reporter, body: dict[str, Any], location: str, ql: QueryLanguage) -> None:
    """Check a Map state's item-handling fields (not its processor's States)."""
    state = _Fields(rep, body, location, ql)
    if ql == "JSONPath":
        if "ItemsPath" in body:
            check_path(rep, state.at("ItemsPath"), body["ItemsPath"], "ItemsPath")
        state.exclusive("Parameters", "ItemSelector")
        if "ItemSelector" in body:
            check_payload_template(
                rep, state.at("ItemSelector"), body["ItemSelector"], "ItemSelector"
            )
    else:
        if "Items" in body:
            items = body["Items"]
            if not isinstance(items, list) and not is_jsonata(items):
                rep.schema(
                    state.at("Items"),
                    "The value for the field 'Items' must be an ARRAY "
                    "or a JSONata expression ({% … %})",
                )
            check_jsonata_value(rep, state.at("Items"), items)
        if "ItemSelector" in body:
            check_jsonata_value(rep, state.at("ItemSelector"), body["ItemSelector"])
    for literal, path in (
        ("MaxConcurrency", "MaxConcurrencyPath"),
        ("ToleratedFailurePercentage", "ToleratedFailurePercentagePath"),
        ("ToleratedFailureCount", "ToleratedFailureCountPath"),
    ):
        state.exclusive(literal, path)
        if ql == "JSONPath":
            state.path(path)
    state.number("MaxConcurrency", 0, None, integral=True)
    state.number("ToleratedFailurePercentage", 0, 100, integral=False)
    state.number("ToleratedFailureCount", 0, None, integral=True)

    for name in ("ItemProcessor", "Iterator"):
        processor = body.get(name)
        if isinstance(processor, dict):
            _check_processor_config(_Fields(rep, processor, state.at(name), ql))
    if (reader := state.sub_object("ItemReader")) is not None:
        _check_reader(reader)
    if (batcher := state.sub_object("ItemBatcher")) is not None:
        _check_batcher(batcher)
    if (writer := state.sub_object("ResultWriter")) is not None:
        _check_writer(writer)


def _check_processor_config(processor: _Fields) -> None:
    config = processor.sub_object("ProcessorConfig")
    if config is None:
        return
    config.only({"Mode", "ExecutionType"}, "'ProcessorConfig'")
    config.enum("Mode", ("INLINE", "DISTRIBUTED"))
    config.enum("ExecutionType", ("STANDARD", "EXPRESS"))


def _check_resource(fields: _Fields) -> None:
    if "Resource" not in fields.body:
        fields.rep.schema(fields.location, "These fields are required: [Resource]")
    elif not isinstance(fields.body["Resource"], str):
        fields.rep.schema(
            fields.at("Resource"), "The value for the field 'Resource' must be a STRING"
        )


def _check_reader(reader: _Fields) -> None:
    reader.only({"Resource", "Parameters", "Arguments", "ReaderConfig"}, "'ItemReader'")
    _check_resource(reader)
    reader.template("Parameters")
    reader.template("Arguments")
    config = reader.sub_object("ReaderConfig")
    if config is None:
        return
    config.only(
        {
            "InputType",
            "CSVHeaderLocation",
            "CSVHeaders",
            "CSVDelimiter",
            "MaxItems",
            "MaxItemsPath",
            "ManifestType",
            "ItemsPointer",
        },
        "'ReaderConfig'",
    )
    config.enum("InputType", _READER_INPUT_TYPES)
    config.enum("CSVHeaderLocation", _CSV_HEADER_LOCATIONS)
    config.enum("CSVDelimiter", _CSV_DELIMITERS)
    if "CSVHeaders" in config.body:
        headers = config.body["CSVHeaders"]
        if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
            config.rep.schema(
                config.at("CSVHeaders"),
                "The value for the field 'CSVHeaders' must be an ARRAY of STRINGs",
            )
    if config.body.get("CSVHeaderLocation") == "GIVEN" and "CSVHeaders" not in config.body:
        config.rep.schema(
            config.location, "'CSVHeaders' is required when 'CSVHeaderLocation' is 'GIVEN'"
        )
    config.exclusive("MaxItems", "MaxItemsPath")
    config.number("MaxItems", 1, None, integral=True)
    config.path("MaxItemsPath")


def _check_batcher(batcher: _Fields) -> None:
    batcher.only(
        {
            "MaxItemsPerBatch",
            "MaxItemsPerBatchPath",
            "MaxInputBytesPerBatch",
            "MaxInputBytesPerBatchPath",
            "BatchInput",
        },
        "'ItemBatcher'",
    )
    batcher.exclusive("MaxItemsPerBatch", "MaxItemsPerBatchPath")
    batcher.exclusive("MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath")
    if not any(
        f in batcher.body
        for f in (
            "MaxItemsPerBatch",
            "MaxItemsPerBatchPath",
            "MaxInputBytesPerBatch",
            "MaxInputBytesPerBatchPath",
        )
    ):
        batcher.rep.schema(
            batcher.location,
            "'ItemBatcher' needs 'MaxItemsPerBatch' or "
            "'MaxInputBytesPerBatch' (or their Path forms)",
        )
    batcher.number("MaxItemsPerBatch", 1, None, integral=True)
    batcher.number("MaxInputBytesPerBatch", 1, MAX_PAYLOAD_BYTES, integral=True)
    batcher.path("MaxItemsPerBatchPath")
    batcher.path("MaxInputBytesPerBatchPath")
    if "BatchInput" in batcher.body:
        if batcher.ql == "JSONPath":
            check_payload_template(
                batcher.rep, batcher.at("BatchInput"), batcher.body["BatchInput"], "BatchInput"
            )
        else:
            check_jsonata_value(batcher.rep, batcher.at("BatchInput"), batcher.body["BatchInput"])


def _check_writer(writer: _Fields) -> None:
    writer.only({"Resource", "Parameters", "Arguments", "WriterConfig"}, "'ResultWriter'")
    if "Resource" in writer.body or "WriterConfig" not in writer.body:
        _check_resource(writer)
    writer.template("Parameters")
    writer.template("Arguments")
    config = writer.sub_object("WriterConfig")
    if config is None:
        return
    config.only({"OutputType", "Transformation"}, "'WriterConfig'")
    config.enum("OutputType", _OUTPUT_TYPES)
    config.enum("Transformation", _TRANSFORMATIONS)
