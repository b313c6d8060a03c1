"""The AWS Step Functions API over HTTP: ``stepwise serve``, for boto3, the AWS CLI and SDKs.

One module per job: `app` (the ASGI application and routing on
``X-Amz-Target``), `protocol` (AWS JSON 1.0: members, errors, encoding),
`service` (what operations share: the engine, ARNs, page tokens), the
operations by group (`machines`, `executions`, `tasks`), `sigv4`
(Signature Version 4 checks) and `server` (binding and uvicorn); the
click command ``serve`` lives with the other commands in `engine.cli.serve`.
Importing this package loads nothing heavy: the application and its
dependencies load when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.cli.serve import serve
    from engine.http.app import AppSettings, create_app
    from engine.http.server import ServeOptions

__all__ = ["AppSettings", "ServeOptions", "create_app", "serve"]

_LAZY = {
    "AppSettings": "engine.http.app",
    "create_app": "engine.http.app",
    "ServeOptions": "engine.http.server",
    "serve": "engine.cli.serve",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.http' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
