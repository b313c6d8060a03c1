"""Validation rules that depend on what a Task's Resource is: today, the SQL built-in.

The SQL built-in (``stepwise:sql``) runs statements against a database, so
its statement text must be exactly what the operator wrote in the
definition. A statement that is built from data — a ``Sql.$`` or
``Statements.$`` field (a path or an intrinsic such as ``States.Format``),
a JSONata ``{% … %}`` expression, Arguments that are one whole expression,
or a SQL Task with no Parameters/Arguments at all (its input *is* the
statement) — is refused here with a ``DYNAMIC_SQL`` error at its JSON
pointer. Data still reaches the database as bound parameters
(``"Parameters": {"id.$": "$.id"}`` with ``:id`` in the statement). Pure:
the rule reads the raw definition only, and imports nothing of the engine
or the activities (the resource name is restated here on purpose).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from statemachine.diagnostics import pointer_child
from statemachine.validate_exprs import Reporter

__all__ = ["DYNAMIC_SQL", "SQL_RESOURCE", "check_resources"]

DYNAMIC_SQL = "DYNAMIC_SQL"
# activities.sql.SQL_RESOURCE; a test keeps the two equal.
SQL_RESOURCE = "stepwise:sql"
_SUFFIXES = (".waitForTaskToken", ".sync:2", ".sync")
_STATEMENT_FIELDS = ("Sql", "Statements")
_ADVICE = (
    "The SQL statement must be written literally in the definition; bind data as named "
    'parameters instead ("Parameters": {"id.$": "$.id"} with :id in the statement).'
)


def _is_jsonata(value: Any) -> bool:
    return (
        isinstance(value, str) and value.strip().startswith("{%") and value.strip().endswith("%}")
    )


def _is_sql_task(state: Mapping[str, Any]) -> bool:
    resource = state.get("Resource")
    if state.get("Type") != "Task" or not isinstance(resource, str):
        return False
    for suffix in _SUFFIXES:
        if resource.endswith(suffix):
            resource = resource[: -len(suffix)]
    return resource == SQL_RESOURCE


def _tasks(
    scope: Mapping[str, Any], location: str, language: str
) -> Iterator[tuple[Mapping[str, Any], str, str]]:
    """Every Task state of `scope` and its nested scopes: (state, pointer, query language)."""
    states = scope.get("States")
    if not isinstance(states, Mapping):
        return
    for name, state in states.items():
        if not isinstance(state, Mapping):
            continue
        here = pointer_child(location, "States", name)
        own = state.get("QueryLanguage")
        state_language = own if own in ("JSONPath", "JSONata") else language
        if state.get("Type") == "Task":
            yield state, here, state_language
        branches = state.get("Branches")
        for index, branch in enumerate(branches if isinstance(branches, list) else ()):
            if isinstance(branch, Mapping):
                yield from _tasks(branch, pointer_child(here, "Branches", index), state_language)
        for field in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(field), Mapping):
                yield from _tasks(state[field], pointer_child(here, field), state_language)


def _dynamic(
    template: Mapping[str, Any], location: str, jsonata: bool
) -> Iterator[tuple[str, str]]:
    """(pointer, what) for every statement text in `template` that is built from data."""
    for field in _STATEMENT_FIELDS:
        if f"{field}.$" in template:
            yield pointer_child(location, f"{field}.$"), f"'{field}.$' builds it from data"
        if jsonata and _is_jsonata(template.get(field)):
            yield pointer_child(location, field), f"'{field}' is a JSONata expression"
    statements = template.get("Statements")
    if isinstance(statements, list):
        for index, statement in enumerate(statements):
            where = pointer_child(location, "Statements", index)
            if jsonata and _is_jsonata(statement):
                yield where, "the statement is a JSONata expression"
            elif isinstance(statement, Mapping):
                if "Sql.$" in statement:
                    yield pointer_child(where, "Sql.$"), "'Sql.$' builds it from data"
                if jsonata and _is_jsonata(statement.get("Sql")):
                    yield pointer_child(where, "Sql"), "'Sql' is a JSONata expression"


def check_resources(rep: Reporter, definition: Mapping[str, Any]) -> None:
    """Report every SQL Task whose statement text is not written literally (``DYNAMIC_SQL``)."""
    machine_language = definition.get("QueryLanguage")
    language = machine_language if machine_language == "JSONata" else "JSONPath"
    for state, location, state_language in _tasks(definition, "", language):
        if not _is_sql_task(state):
            continue
        jsonata = state_language == "JSONata"
        field = "Arguments" if jsonata else "Parameters"
        template = state.get(field)
        if template is None:
            rep.error(
                location,
                DYNAMIC_SQL,
                f"This SQL Task has no {field}, so its statement would be its input. {_ADVICE}",
            )
        elif jsonata and _is_jsonata(template):
            rep.error(
                pointer_child(location, field),
                DYNAMIC_SQL,
                f"{field} is one JSONata expression, so the statement is built from data. "
                f"{_ADVICE}",
            )
        elif isinstance(template, Mapping):
            for pointer, what in _dynamic(template, pointer_child(location, field), jsonata):
                rep.error(
                    pointer, DYNAMIC_SQL, f"The SQL statement is not literal: {what}. {_ADVICE}"
                )
