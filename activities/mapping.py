"""The resource mapping file (``--resources FILE``): bind Resource ARNs to local handlers.

A JSON document, written by the operator (it is trusted configuration, so
the modules it names are imported)::

    {"Resources": {
        "arn:aws:lambda:*:*:function:Echo*": "myapp.lambdas:echo",
        "arn:aws:states:::sqs:sendMessage": "myapp.queue:send",
        "arn:aws:states:::lambda:invoke": {"FunctionName": {"Resize": "myapp.images:resize"}},
        "arn:aws:states:us-east-1:123:activity:Review": {"Handler": "myapp.review:run"}},
     "AllowedModules": ["myapp.tasks"],
     "Enable": ["sql"],
     "Mocks": "mocks.json" | {…MockedResponses config…},
     "MockTestCase": "HappyPath",
     "Http": {"Allow": ["10.0.0.0/8", "billing.internal"],
              "Connections": {"billing": {"Bearer": "…"}},
              "MaxResponseBytes": 262144, "TimeoutSeconds": 60, "MaxRedirects": 10}}

Lambda ARNs (and ``lambda:invoke`` FunctionNames) are bound as Lambda
functions, called ``fn(event, context)``; anything else as a plain handler.
``Http`` (or ``http``, with lower-case fields) is the HTTP built-in's
policy: the addresses it may call besides public ones and the named
connections holding credentials (see activities/netpolicy.py).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from activities.mocks import MockConfig
from activities.netpolicy import HttpPolicy, PolicyError, parse_allow, parse_connection
from activities.registry import Handler, Registry

__all__ = ["MappingError", "load_handler", "load_mapping"]

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"


class MappingError(ValueError):
    """The mapping file is malformed or names a handler that cannot be imported."""


def load_handler(reference: str) -> Handler:
    """Import ``package.module:function``. Raises MappingError."""
    module_name, _, name = reference.partition(":")
    if not module_name or not name:
        raise MappingError(f"handler {reference!r} is not 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as failure:
        raise MappingError(f"cannot import {module_name!r}: {failure}") from None
    handler = getattr(module, name, None)
    if not callable(handler):
        raise MappingError(f"{reference!r} is not a function")
    return handler  # type: ignore[no-any-return]


def _bind(registry: Registry, resource: str, target: Any) -> None:
    if isinstance(target, str):
        handler = load_handler(target)
    elif (
        isinstance(target, dict) and resource.startswith(LAMBDA_INVOKE) and "FunctionName" in target
    ):
        functions = target["FunctionName"]
        if not isinstance(functions, dict):
            raise MappingError(f"{resource}: FunctionName must map names to handlers")
        for function, reference in functions.items():
            registry.register_lambda(function, load_handler(str(reference)))
        return
    elif isinstance(target, dict) and isinstance(target.get("Handler"), str):
        handler = load_handler(target["Handler"])
    else:
        raise MappingError(f"{resource}: expected 'module:function' or {{'Handler': …}}")
    if resource.startswith("arn:aws:lambda:"):
        registry.register_lambda(resource, handler)
    else:
        registry.register(resource, handler)


def _http_policy(section: Any, current: HttpPolicy) -> HttpPolicy:
    """`current` extended by the document's Http section. Raises MappingError."""
    if not isinstance(section, dict):
        raise MappingError("Http must be an object")

    def field(name: str, default: Any) -> Any:
        return section.get(name, section.get(name[0].lower() + name[1:], default))

    known = {"Allow", "Connections", "MaxResponseBytes", "TimeoutSeconds", "MaxRedirects"}
    unknown = {k for k in section if k not in known and k[0].upper() + k[1:] not in known}
    if unknown:
        raise MappingError(f"Http: unknown fields {', '.join(sorted(unknown))}")
    allow, connections = field("Allow", []), field("Connections", {})
    if not isinstance(allow, list) or not isinstance(connections, dict):
        raise MappingError("Http: Allow must be a list and Connections an object")
    limits = {
        "MaxResponseBytes": field("MaxResponseBytes", current.max_response_bytes),
        "TimeoutSeconds": field("TimeoutSeconds", current.timeout_seconds),
        "MaxRedirects": field("MaxRedirects", current.max_redirects),
    }
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise MappingError(f"Http: {name} must be a non-negative number")
    try:
        named = {str(n): parse_connection(str(n), raw) for n, raw in connections.items()}
        return HttpPolicy(
            (*current.allow, *parse_allow(allow)),
            {**current.connections, **named},
            int(limits["MaxResponseBytes"]),
            float(limits["TimeoutSeconds"]),
            int(limits["MaxRedirects"]),
        )
    except PolicyError as failure:
        raise MappingError(f"Http: {failure}") from None


def load_mapping(source: str | Path | dict[str, Any], registry: Registry) -> Registry:
    """Apply a mapping document (dict or JSON file path) to `registry`; returns it.

    Raises MappingError for a malformed document or a handler that cannot be imported.
    """
    base = Path(".")
    if isinstance(source, dict):
        document = source
    else:
        base = Path(source).parent
        try:
            document = json.loads(Path(source).read_text())
        except (OSError, ValueError) as failure:
            raise MappingError(f"cannot read resource mapping {source}: {failure}") from None
    if not isinstance(document, dict):
        raise MappingError("the resource mapping must be a JSON object")
    for resource, target in (document.get("Resources") or {}).items():
        _bind(registry, resource, target)
    registry.allow_module(*document.get("AllowedModules", []))
    try:
        registry.enable(*document.get("Enable", []))
    except ValueError as failure:
        raise MappingError(str(failure)) from None
    if "ShellCommands" in document:
        registry.shell_commands = set(document["ShellCommands"])
    http_section = document.get("Http", document.get("http"))
    if http_section is not None:
        registry.http_policy = _http_policy(http_section, registry.http_policy)
    mocks = document.get("Mocks")
    if mocks is not None:
        config = MockConfig.load(mocks if isinstance(mocks, dict) else base / str(mocks))
        registry.use_mocks(config, document.get("MockTestCase"))
    return registry
