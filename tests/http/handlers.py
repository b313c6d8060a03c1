"""Task handlers the test server imports (``--activities tests.http.handlers``).

`explode` fails with ``Boom`` (for Catch and Retry in TestState).
`notify` (used as ``notify.waitForTaskToken``) appends the task token it is
given to the file named by $STEPWISE_TEST_TOKENS, as a real notifier would
send it to a person who answers later with SendTaskSuccess.
"""

from __future__ import annotations

import os
from typing import Any

from activities import ActivityContext, ActivityError, activity


@activity("notify")
def notify(value: Any, context: ActivityContext) -> dict[str, Any]:
    with open(os.environ["STEPWISE_TEST_TOKENS"], "a") as out:
        out.write(f"{value['token']}\n")
    return {"sent": True}


@activity("explode")
def explode(value: Any, context: ActivityContext) -> dict[str, Any]:
    raise ActivityError("Boom", "it exploded")
