"""Handlers the mapping and allow-list tests bind by module path."""

from __future__ import annotations

from typing import Any


def echo(event: Any, context: Any) -> Any:
    return {"echo": event, "fn": context.function_name}


def send(value: Any) -> dict[str, Any]:
    return {"MessageId": "m-1", "Body": value["MessageBody"]}


def double(value: Any) -> Any:
    return value * 2
