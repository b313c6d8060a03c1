"""Task handlers the web view's test server imports (``--activities tests.web.handlers``).

`flaky` fails its first attempt with ``Oops`` and succeeds on the retry;
`explode` always fails with ``Boom``.
"""

from __future__ import annotations

from typing import Any

from activities import ActivityContext, ActivityError, activity


@activity("flaky")
def flaky(value: Any, context: ActivityContext) -> dict[str, Any]:
    if context.attempt <= 1:
        raise ActivityError("Oops", "the first attempt fails")
    return {"ok": True}


@activity("explode")
def explode(value: Any, context: ActivityContext) -> dict[str, Any]:
    raise ActivityError("Boom", "it exploded")
