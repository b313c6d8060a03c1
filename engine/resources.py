"""Which Task Resources have something to run here: the `--strict` check.

A definition may name Resources nothing in this process can serve (a typo,
a module not loaded with `--activities`). At run time such a Task fails with
States.Runtime; `--strict` reports every one before anything runs, each as
an UNKNOWN_RESOURCE diagnostic at the Resource's JSON pointer. The rules are
those `engine/tasks.py` dispatches by; Resources resolved only at run time
(`lambda:invoke` reads its FunctionName from the input) and external
activity ARNs (served by pollers) always pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from activities.http import HTTP_RESOURCE
from activities.registry import Registry
from activities.shell import SHELL_RESOURCE
from activities.sql import SQL_RESOURCE
from engine.tasks import LAMBDA_INVOKE, base_resource, is_activity_arn
from statemachine.diagnostics import Diagnostic, json_pointer

__all__ = ["is_resolvable", "unknown_resources"]

_BUILTINS = {HTTP_RESOURCE: "http", SQL_RESOURCE: "sql", SHELL_RESOURCE: "shell"}


def is_resolvable(resource: str, registry: Registry) -> bool:
    """Whether a Task with this Resource would find work to run in `registry`."""
    base = base_resource(resource)
    if is_activity_arn(base) or base == LAMBDA_INVOKE or registry.mocks is not None:
        return True
    if base.startswith("arn:aws:lambda:") and registry.resolve_lambda(base) is not None:
        return True
    if registry.resolve(resource) is not None or registry.resolve(base) is not None:
        return True
    builtin = _BUILTINS.get(base)
    return builtin is not None and builtin in registry.builtins


def _tasks(scope: Mapping[str, Any], path: tuple[str | int, ...]) -> Iterator[tuple[Any, str]]:
    states = scope.get("States")
    if not isinstance(states, Mapping):
        return
    for name, state in states.items():
        if not isinstance(state, Mapping):
            continue
        here = (*path, "States", name)
        if state.get("Type") == "Task" and isinstance(state.get("Resource"), str):
            yield state["Resource"], json_pointer(*here, "Resource")
        for index, branch in enumerate(state.get("Branches") or ()):
            if isinstance(branch, Mapping):
                yield from _tasks(branch, (*here, "Branches", index))
        for field in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(field), Mapping):
                yield from _tasks(state[field], (*here, field))


def unknown_resources(definition: Any, registry: Registry) -> list[Diagnostic]:
    """An UNKNOWN_RESOURCE error for every Task Resource nothing in `registry` serves."""
    if not isinstance(definition, Mapping):
        return []
    return [
        Diagnostic(
            severity="ERROR",
            code="UNKNOWN_RESOURCE",
            message=(
                f"no handler is registered for the resource '{resource}' (register one with "
                "@activity, load its module with --activities, or map it with --resources)"
            ),
            location=pointer,
        )
        for resource, pointer in _tasks(definition, ())
        if not is_resolvable(resource, registry)
    ]
