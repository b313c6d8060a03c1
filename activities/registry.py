"""The activity registry: what a Task's `Resource` resolves to.

`@activity("name")` registers a function for Tasks whose Resource is
``"name"``. Handlers are called ``fn(input, context)`` when they take two
positional parameters and ``fn(input)`` when they take one; sync handlers
run in a worker thread, async ones on the event loop. A Resource resolves
only to a registered handler: nothing in a definition is ever imported or
evaluated as code.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

__all__ = [
    "ActivityContext",
    "ActivityError",
    "Handler",
    "Registry",
    "activity",
    "default_registry",
]

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)


class ActivityError(Exception):
    """Raise from a handler to fail the Task with an explicit ASL error name and cause."""

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(cause or error)
        self.error = error
        self.cause = cause


@dataclass
class ActivityContext:
    """What a handler knows about the step it runs.

    `idempotency_key` is the same every time this attempt runs, including
    when it reruns after a crash: pass it to external systems to make the
    effect happen once.
    """

    execution_id: str
    state_name: str
    attempt: int
    idempotency_key: str
    resource: str
    deadline: datetime | None = None
    task_token: str | None = None
    state_path: str = ""
    traceparent: str | None = None
    _heartbeat: Callable[[], Awaitable[None] | None] | None = field(default=None, repr=False)

    def heartbeat(self) -> None:
        """Tell the engine this handler is alive (resets HeartbeatSeconds)."""
        if self._heartbeat is not None:
            self._heartbeat()


@dataclass(frozen=True)
class Registration:
    """A handler and how to call it."""

    pattern: str
    handler: Handler
    wants_context: bool
    is_async: bool


def _positional_count(fn: Handler) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in kinds)


class Registry:
    """Resource → handler. Exact names win over `*` patterns; patterns match in registration order."""

    def __init__(self) -> None:
        self._exact: dict[str, Registration] = {}
        self._patterns: list[Registration] = []

    def register(self, resource: str, handler: Handler) -> None:
        """Bind `resource` (an exact name/ARN or a pattern with `*`) to `handler`."""
        registration = Registration(
            pattern=resource,
            handler=handler,
            wants_context=_positional_count(handler) >= 2,
            is_async=inspect.iscoroutinefunction(handler),
        )
        if "*" in resource:
            self._patterns = [r for r in self._patterns if r.pattern != resource]
            self._patterns.append(registration)
        else:
            self._exact[resource] = registration

    def resolve(self, resource: str) -> Registration | None:
        """The registration for `resource`, or None when nothing is registered for it."""
        found = self._exact.get(resource)
        if found is not None:
            return found
        for registration in self._patterns:
            if fnmatch.fnmatchcase(resource, registration.pattern):
                return registration
        return None

    def merged(self, other: Registry) -> Registry:
        """A new registry with this one's entries, then `other`'s (which win)."""
        result = Registry()
        for source in (self, other):
            result._exact.update(source._exact)
            for registration in source._patterns:
                result._patterns = [r for r in result._patterns if r.pattern != registration.pattern]
                result._patterns.append(registration)
        return result

    def __contains__(self, resource: str) -> bool:
        return self.resolve(resource) is not None


default_registry = Registry()


def activity(*names: str, resource: str | None = None, registry: Registry | None = None) -> Callable[[F], F]:
    """Register the decorated function for each Resource name (or `resource=` ARN/pattern)."""
    targets = [*names, *([resource] if resource else [])]
    if not targets:
        raise TypeError("activity() needs at least one resource name")

    def decorate(fn: F) -> F:
        for target in targets:
            (registry or default_registry).register(target, fn)
        return fn

    return decorate
