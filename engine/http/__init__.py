"""The AWS Step Functions API over HTTP: ``stepwise serve``, for boto3, the AWS CLI and SDKs.

One module per job: `app` (the ASGI application and routing on
``X-Amz-Target``), `protocol` (AWS JSON 1.0: members, errors, encoding),
`service` (what operations share: the engine, ARNs, page tokens), the
operations by group (`machines`, `executions`, `tasks`), `sigv4`
(Signature Version 4 checks), `server` (binding and uvicorn) and `command`
(the click command ``serve``). Importing this package loads only click;
the application and its dependencies load when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.http.command import serve

if TYPE_CHECKING:
    from engine.http.app import AppSettings, create_app
    from engine.http.server import ServeOptions

__all__ = ["AppSettings", "ServeOptions", "create_app", "serve"]

_LAZY = {
    "AppSettings": "engine.http.app",
    "create_app": "engine.http.app",
    "ServeOptions": "engine.http.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.http' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
