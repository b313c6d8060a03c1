"""The SQL built-in: parameterised statements against the engine's own database.

Off unless the operator enables it (``registry.enable("sql")``). The Task
input is ``{"Sql": "...", "Parameters": {...}}`` or ``{"Statements": [{"Sql",
"Parameters"}, …]}``; statements use named placeholders (``:name``) and the
values are always bound, never interpolated. The engine runs them in one
transaction together with the record of their result (see
engine/callbacks.py), so the effect happens exactly once; the result is
``{"Results": [{"Rows": [{column: value}], "RowCount": n}, …]}``.

The statement text comes only from the definition: validation refuses a
SQL Task whose statement is built from data (``DYNAMIC_SQL``, see
statemachine/validate_resources.py), so an execution's input can fill in
parameters but never write SQL. On PostgreSQL the operator may name a role
(`SqlPolicy`) that the statements run under: `set_role_statement` gives the
``SET LOCAL ROLE`` that scopes it to the effect's transaction, so a
statement cannot touch Stepwise's own tables when that role has no grant on
them, while the record of the result still commits with the effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from activities.builtins import SQL_RESOURCE
from activities.registry import ActivityError

__all__ = ["SQL_RESOURCE", "SqlPolicy", "SqlStatement", "parse_statements", "set_role_statement"]


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


@dataclass(frozen=True)
class SqlPolicy:
    """The operator's settings for the SQL built-in.

    `role`: on PostgreSQL, the role the statements run as (``SET LOCAL ROLE``
    inside the effect's transaction); None runs them as the engine's own user.
    """

    role: str | None = None

    def __post_init__(self) -> None:
        if self.role is not None:
            set_role_statement(
                self.role
            )  # refuse a malformed role when configured, not at run time


def set_role_statement(role: str) -> str:
    """``SET LOCAL ROLE "role"``, the role quoted as a PostgreSQL identifier.

    Raises ValueError for an empty role or one containing a NUL character
    (PostgreSQL identifiers cannot hold it); any other text is quoted, so a
    role name can never end the statement or start another.
    """
    if not isinstance(role, str) or not role or "\x00" in role:
        raise ValueError(f"the SQL role must be a non-empty name without NUL, not {role!r}")
    return 'SET LOCAL ROLE "' + role.replace('"', '""') + '"'
