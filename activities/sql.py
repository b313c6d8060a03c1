"""The SQL built-in: parameterised statements against the engine's own database.

Off unless the operator enables it (``registry.enable("sql")``). The Task
input is ``{"Sql": "...", "Parameters": {...}}`` or ``{"Statements": [{"Sql",
"Parameters"}, …]}``; statements use named placeholders (``:name``) and the
values are always bound, never interpolated. The engine runs them in one
transaction together with the record of their result (see
engine/callbacks.py), so the effect happens exactly once; the result is
``{"Results": [{"Rows": [{column: value}], "RowCount": n}, …]}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from activities.registry import ActivityError

__all__ = ["SQL_RESOURCE", "SqlStatement", "parse_statements"]

SQL_RESOURCE = "stepwise:sql"


@dataclass(frozen=True)
class SqlStatement:
    """One statement and its bound parameters."""

    sql: str
    parameters: dict[str, Any] = field(default_factory=dict)


def _statement(raw: Any, where: str) -> SqlStatement:
    if not isinstance(raw, dict) or not isinstance(raw.get("Sql"), str) or not raw["Sql"].strip():
        raise ActivityError("States.Runtime", f"{where} needs a non-empty 'Sql' string.")
    parameters = raw.get("Parameters") or {}
    if not isinstance(parameters, dict):
        raise ActivityError(
            "States.Runtime", f"{where}: 'Parameters' must be an object of named values."
        )
    return SqlStatement(raw["Sql"], {str(k): v for k, v in parameters.items()})


def parse_statements(input: Any) -> list[SqlStatement]:
    """The statements a SQL Task's input asks for. Raises ActivityError for a malformed input."""
    if isinstance(input, dict) and "Statements" in input:
        statements = input["Statements"]
        if not isinstance(statements, list) or not statements:
            raise ActivityError("States.Runtime", "'Statements' must be a non-empty list.")
        return [_statement(s, f"Statements[{i}]") for i, s in enumerate(statements)]
    return [_statement(input, "The SQL Task input")]
