"""Names of state machines, executions and activities, checked as AWS checks them.

The rule itself (1 to 80 characters; no white space, none of
``< > { } [ ] ? * " # % \\ ^ | ~ ` $ & , ; : /`` and no control characters)
lives in `statemachine.quotas`; this module turns a broken rule into the
engine's `InvalidName` error. Names end up in ARNs, so the same rules keep
ours parseable.
"""

from __future__ import annotations

from engine.errors import InvalidName
from statemachine.quotas import name_problem

__all__ = ["check_name"]


def check_name(name: str, *, what: str) -> None:
    """Raise InvalidName when `name` is not a valid name for a `what`."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidName(f"Invalid Name: '{name}' ({what} {problem})")
