"""What a Task's Resource names and resolves to: the one dispatch rule, and the `--strict` check.

A Resource is written with an optional integration-pattern suffix
(``.waitForTaskToken``, ``.sync``); `base_resource` strips it and
`resource_parts` names it as AWS's Task events do. `resolve_resource` is the
one rule for what runs in process: a registered Lambda function, the
``lambda:invoke`` integration, a registered handler, or an enabled built-in
(HTTP, SQL, shell) — `engine.tasks` runs what it returns. A definition may
name Resources nothing in this process can serve (a typo, a module not
loaded with `--activities`); at run time such a Task fails with
States.Runtime, and `--strict` reports every one before anything runs,
each as an UNKNOWN_RESOURCE diagnostic at the Resource's JSON pointer.
Resources resolved only at run time (`lambda:invoke` reads its
FunctionName from the input) and external activity ARNs (served by
pollers) always pass.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from activities.builtins import HTTP_RESOURCE, SHELL_RESOURCE, SQL_RESOURCE
from activities.registry import Registration, Registry
from statemachine.diagnostics import Diagnostic, json_pointer

__all__ = [
    "LAMBDA_INVOKE",
    "Resolution",
    "base_resource",
    "is_activity_arn",
    "is_resolvable",
    "resolve_resource",
    "resource_parts",
    "unknown_resources",
]

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
_SUFFIXES = (".waitForTaskToken", ".sync:2", ".sync")
_BUILTINS = {HTTP_RESOURCE: "http", SQL_RESOURCE: "sql", SHELL_RESOURCE: "shell"}


@functools.lru_cache(maxsize=4096)
def base_resource(resource: str) -> str:
    """The Resource without its integration-pattern suffix.

    Cached: every Task attempt asks (`resolve_resource`), with the few
    Resources its definitions name.
    """
    for suffix in _SUFFIXES:
        if resource.endswith(suffix):
            return resource[: -len(suffix)]
    return resource


def resource_parts(resource: str) -> tuple[str, str]:
    """(resourceType, resource) as AWS's Task events name them."""
    if resource.startswith("arn:aws:states:::"):
        rest = resource[len("arn:aws:states:::") :]
        service, _, api = rest.partition(":")
        return service, api or service
    if resource.startswith("arn:aws:lambda:"):
        return "lambda", resource
    return "stepwise", resource


def is_activity_arn(resource: str) -> bool:
    """Whether `resource` is an external activity ARN (…:states:REGION:ACCOUNT:activity:NAME)."""
    parts = resource.split(":")
    return len(parts) == 7 and parts[:3] == ["arn", "aws", "states"] and parts[5] == "activity"


@dataclass(frozen=True)
class Resolution:
    """What a Resource runs in process: its kind, and the handler or built-in's name.

    ``unresolved`` carries the States.Runtime cause a Task fails with.
    """

    kind: Literal["lambda", "lambda_invoke", "handler", "builtin", "unresolved"]
    registration: Registration | None = None
    builtin: str = ""
    cause: str = ""


def resolve_resource(resource: str, registry: Registry) -> Resolution:
    """The one dispatch rule: what `resource` (as written, suffix included) runs here."""
    base = base_resource(resource)
    if base.startswith("arn:aws:lambda:"):
        function = registry.resolve_lambda(base)
        if function is not None:
            return Resolution("lambda", registration=function)
    if base == LAMBDA_INVOKE:
        return Resolution("lambda_invoke")
    registration = registry.resolve(resource) or registry.resolve(base)
    if registration is not None:
        return _handler_resolution(registration)
    builtin = _BUILTINS.get(base)
    if builtin is not None and builtin in registry.builtins:
        return Resolution("builtin", builtin=builtin)
    if builtin is not None:
        cause = (
            f"The built-in activity '{builtin}' for the resource '{resource}' is not "
            "enabled by the operator."
        )
    else:
        cause = f"No handler is registered for the resource '{resource}'."
    return Resolution("unresolved", cause=cause)


# Each registration's "handler" Resolution, made once: building the frozen
# dataclass was half of a Task attempt's `resolve_resource`. Keyed by identity
# (a handler need not be hashable), each entry holding its registration so the
# id is not reused while cached; emptied when full.
_HANDLER_RESOLUTIONS: dict[int, tuple[Registration, Resolution]] = {}
_MAX_CACHED = 1024


def _handler_resolution(registration: Registration) -> Resolution:
    cached = _HANDLER_RESOLUTIONS.get(id(registration))
    if cached is not None and cached[0] is registration:
        return cached[1]
    if len(_HANDLER_RESOLUTIONS) >= _MAX_CACHED:
        _HANDLER_RESOLUTIONS.clear()
    resolution = Resolution("handler", registration=registration)
    _HANDLER_RESOLUTIONS[id(registration)] = (registration, resolution)
    return resolution


def is_resolvable(resource: str, registry: Registry) -> bool:
    """Whether a Task with this Resource would find work to run in `registry`."""
    if is_activity_arn(base_resource(resource)) or registry.mocks is not None:
        return True
    return resolve_resource(resource, registry).kind != "unresolved"


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
