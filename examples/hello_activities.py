"""The handlers examples/hello.json calls: `greet` and `shout`.

Importing this module registers them in `activities.default_registry`
(``stepwise run examples/hello.json --activities examples.hello_activities``).
"""

from __future__ import annotations

from typing import Any

from activities import activity

__all__ = ["greet", "shout"]


@activity("greet")
def greet(event: dict[str, Any]) -> str:
    """Say hello to ``event["name"]``."""
    return f"Hello, {event['name']}!"


@activity("shout")
def shout(number: int) -> str:
    """Say a number out loud."""
    return f"{number}!"
