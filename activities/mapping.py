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
     "MockTestCase": "HappyPath"}

Lambda ARNs (and ``lambda:invoke`` FunctionNames) are bound as Lambda
functions, called ``fn(event, context)``; anything else as a plain handler.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from activities.mocks import MockConfig
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
    mocks = document.get("Mocks")
    if mocks is not None:
        config = MockConfig.load(mocks if isinstance(mocks, dict) else base / str(mocks))
        registry.use_mocks(config, document.get("MockTestCase"))
    return registry
