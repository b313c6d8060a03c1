"""The activity registry: what a Task's `Resource` resolves to.

`@activity("name")` registers a function for Tasks whose Resource is
``"name"`` (or an ARN, or a pattern with ``*``). Handlers are called
``fn(input, context)`` when they take two positional parameters and
``fn(input)`` when they take one; sync handlers run in a worker thread,
async ones on the event loop. A sync handler registered with
``inline=True`` runs on the event loop too, without the thread hop (about a
quarter of a short Task step's CPU): only for handlers that return at once
and never block — while one runs, every execution of the worker waits, and
no timer can interrupt it, so TimeoutSeconds and HeartbeatSeconds are
checked when it returns (an attempt that ran past either fails with
States.Timeout, its result dropped). Lambda functions (`lambda_function`) are kept
apart, by function name, because AWS reaches them two ways (the function
ARN and ``lambda:invoke`` with ``FunctionName``). A Resource resolves only
to a registered handler, a Lambda function, a built-in the operator enabled
or a ``python:package.module:function`` whose module the operator
allow-listed: nothing in a definition is ever imported or evaluated as code
otherwise. The registry also carries the operator's run settings the engine
reads (built-ins enabled, mock responses, the HTTP built-in's network policy).
"""

from __future__ import annotations

import contextvars
import fnmatch
import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio.lowlevel

from activities import cancelcheck
from activities.handler_threads import run_in_thread
from activities.netpolicy import HttpPolicy, parse_allow

__all__ = [
    "ActivityContext",
    "ActivityError",
    "Handler",
    "HandlerStopIteration",
    "Registration",
    "Registry",
    "activity",
    "call_handler",
    "default_registry",
    "lambda_name",
]

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)

PYTHON_PREFIX = "python:"


class ActivityError(Exception):
    """Raise from a handler to fail the Task with an explicit ASL error name and cause."""

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(cause or error)
        self.error = error
        self.cause = cause


class HandlerStopIteration(ActivityError):
    """A sync handler's StopIteration: its Task fails ``StopIteration`` with the message as cause.

    That is what any other exception a handler raises gets (its class name
    and message), but StopIteration cannot travel as itself from the
    handler's thread to the Task: asyncio's futures refuse it and a
    coroutine turns it into a RuntimeError (PEP 479), each with its own
    text. The thread raises this in its place (`stop` is the original), so
    the failure is the same on asyncio and trio.
    """

    def __init__(self, stop: StopIteration) -> None:
        super().__init__("StopIteration", str(stop))
        self.stop = stop


def _carrying_stop_iteration(handler: Handler, *args: Any) -> Any:
    """Call a sync handler (in its thread), its StopIteration raised as `HandlerStopIteration`."""
    try:
        return handler(*args)
    except StopIteration as stop:
        raise HandlerStopIteration(stop) from stop


@dataclass
class ActivityContext:
    """What a handler knows about the step it runs.

    `idempotency_key` is the same every time this attempt runs, including
    when it reruns after a crash: pass it to external systems to make the
    effect happen once. `deadline` is when TimeoutSeconds expires (None: no
    explicit timeout). `task_token` is set for `.waitForTaskToken` Tasks.
    `traceparent` is the W3C trace context of the task's span, when traced.
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
    # A sync handler run on the event loop itself (opt-in: see the module docstring).
    inline: bool = False


def _positional_count(fn: Handler) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in kinds)


def _registration(pattern: str, handler: Handler, *, inline: bool = False) -> Registration:
    is_async = inspect.iscoroutinefunction(handler)
    if inline and is_async:
        raise ValueError(
            f"inline=True is for sync handlers; {pattern!r}'s handler is async and already "
            "runs on the event loop"
        )
    return Registration(
        pattern=pattern,
        handler=handler,
        wants_context=_positional_count(handler) >= 2,
        is_async=is_async,
        inline=inline,
    )


async def call_handler(registration: Registration, event: Any, context: Any) -> Any:
    """Call a handler the way it is registered: with `context` if it takes two arguments,
    awaited if async, called on the event loop if registered `inline`, else in one
    of the long-lived handler threads (`activities.handler_threads`; abandoned,
    not waited for, on cancellation).

    An inline handler runs in a copy of the caller's contextvars, as a thread's
    would, and not at all when the caller is already cancelled. Whatever the
    handler raises propagates, except a sync handler's StopIteration, which is
    raised as `HandlerStopIteration`.
    """
    args = (event, context) if registration.wants_context else (event,)
    if registration.is_async:
        return await registration.handler(*args)
    if registration.inline:
        if not cancelcheck.surely_not_cancelled():
            await anyio.lowlevel.checkpoint_if_cancelled()
        return contextvars.copy_context().run(_carrying_stop_iteration, registration.handler, *args)
    return await run_in_thread(_carrying_stop_iteration, registration.handler, *args)


def lambda_name(reference: str) -> str:
    """The function name in any form Lambda accepts (name, ARN, partial ARN, with qualifier)."""
    if ":function:" in reference:
        return reference.split(":function:", 1)[1].split(":", 1)[0]
    return reference.split(":", 1)[0]


class Registry:
    """Resource → handler. Exact names win over `*` patterns, which match in registration order."""

    def __init__(self) -> None:
        self._exact: dict[str, Registration] = {}
        self._patterns: list[Registration] = []
        self._lambdas: dict[str, Registration] = {}
        self._lambda_patterns: list[Registration] = []
        self.allowed_modules: set[str] = set()
        # Built-ins the engine runs itself: "http" (on by default), "sql", "shell".
        self.builtins: set[str] = {"http"}
        self.shell_commands: set[str] | None = None
        self.mocks: Any = None
        self.mock_test_case: str | None = None
        # Where the HTTP built-in may connect, its caps and named connections.
        self.http_policy: HttpPolicy = HttpPolicy()
        # The PostgreSQL role the SQL built-in's statements run as (activities.sql.SqlPolicy).
        self.sql_role: str | None = None

    def allow_http_to(self, *targets: str) -> None:
        """Let the HTTP built-in call these CIDRs / addresses / host names (``--allow-http-to``).

        Link-local and cloud metadata addresses stay refused. Raises
        netpolicy.PolicyError for an entry that is not a CIDR, address or host name.
        """
        self.http_policy = self.http_policy.allowing(*parse_allow(targets))

    def register(self, resource: str, handler: Handler, *, inline: bool = False) -> None:
        """Bind `resource` (an exact name/ARN or a pattern with `*`) to `handler`.

        `inline` runs a sync handler on the event loop instead of a thread
        (see the module docstring: only for handlers that never block).
        Raises ValueError for `inline` with an async handler.
        """
        registration = _registration(resource, handler, inline=inline)
        if "*" in resource:
            self._patterns = [r for r in self._patterns if r.pattern != resource]
            self._patterns.append(registration)
        else:
            self._exact[resource] = registration

    def register_lambda(self, function: str, handler: Handler) -> None:
        """Bind a Lambda function (name, ARN, or a pattern with `*`) to ``handler(event, context)``.

        The function is then reachable by its ARN as a Resource and by
        ``arn:aws:states:::lambda:invoke`` with its name or ARN as FunctionName.
        """
        registration = _registration(function, handler)
        if "*" in function:
            self._lambda_patterns = [r for r in self._lambda_patterns if r.pattern != function]
            self._lambda_patterns.append(registration)
        else:
            self._lambdas[lambda_name(function)] = registration

    def resolve_lambda(self, reference: str) -> Registration | None:
        """The Lambda function a function ARN / name / FunctionName refers to, or None."""
        found = self._lambdas.get(lambda_name(reference))
        if found is not None:
            return found
        for registration in self._lambda_patterns:
            if fnmatch.fnmatchcase(reference, registration.pattern) or fnmatch.fnmatchcase(
                lambda_name(reference), registration.pattern
            ):
                return registration
        return None

    def allow_module(self, *modules: str) -> None:
        """Let ``python:<module>:<function>`` Resources import `modules` (and their submodules)."""
        self.allowed_modules.update(modules)

    def enable(self, *builtins: str) -> None:
        """Turn on built-in activities by name: "http", "sql", "shell"."""
        unknown = set(builtins) - {"http", "sql", "shell"}
        if unknown:
            raise ValueError(f"unknown built-in activities: {', '.join(sorted(unknown))}")
        self.builtins.update(builtins)

    def disable(self, *builtins: str) -> None:
        """Turn off built-in activities by name."""
        self.builtins.difference_update(builtins)

    def use_mocks(self, config: Any, test_case: str | None) -> None:
        """Answer Tasks from a Step Functions Local mock config (see activities.mocks)."""
        self.mocks = config
        self.mock_test_case = test_case

    def _allowed(self, module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in self.allowed_modules)

    def resolve(self, resource: str) -> Registration | None:
        """The registration for `resource`, or None when nothing is registered for it.

        ``python:package.module:function`` is imported only when the module is
        allow-listed; otherwise it resolves to None like any unknown Resource.
        """
        found = self._exact.get(resource)
        if found is not None:
            return found
        for registration in self._patterns:
            if fnmatch.fnmatchcase(resource, registration.pattern):
                return registration
        if resource.startswith(PYTHON_PREFIX):
            return self._import(resource)
        return None

    def _import(self, resource: str) -> Registration | None:
        module_name, _, function_name = resource[len(PYTHON_PREFIX) :].partition(":")
        if not module_name or not function_name or not self._allowed(module_name):
            return None
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
        handler = getattr(module, function_name, None)
        if not callable(handler):
            return None
        registration = _registration(resource, handler)
        self._exact[resource] = registration
        return registration

    def merged(self, other: Registry) -> Registry:
        """A new registry with this one's entries and settings, then `other`'s (which win)."""
        result = Registry()
        result.builtins = set()
        for source in (self, other):
            result._exact.update(source._exact)
            result._lambdas.update(source._lambdas)
            for registration in source._patterns:
                result._patterns = [
                    r for r in result._patterns if r.pattern != registration.pattern
                ]
                result._patterns.append(registration)
            for registration in source._lambda_patterns:
                result._lambda_patterns = [
                    r for r in result._lambda_patterns if r.pattern != registration.pattern
                ]
                result._lambda_patterns.append(registration)
            result.allowed_modules |= source.allowed_modules
            result.builtins |= source.builtins
            if source.shell_commands is not None:
                result.shell_commands = set(source.shell_commands)
            if source.mocks is not None:
                result.mocks, result.mock_test_case = source.mocks, source.mock_test_case
            result.http_policy = result.http_policy.merged(source.http_policy)
            if source.sql_role is not None:
                result.sql_role = source.sql_role
        return result

    def __contains__(self, resource: str) -> bool:
        return self.resolve(resource) is not None


default_registry = Registry()


def activity(
    *names: str,
    resource: str | None = None,
    registry: Registry | None = None,
    inline: bool = False,
) -> Callable[[F], F]:
    """Register the decorated function for each Resource name (or `resource=` ARN/pattern).

    `inline`: see `Registry.register`.
    """
    targets = [*names, *([resource] if resource else [])]
    if not targets:
        raise TypeError("activity() needs at least one resource name")

    def decorate(fn: F) -> F:
        for target in targets:
            (registry or default_registry).register(target, fn, inline=inline)
        return fn

    return decorate
