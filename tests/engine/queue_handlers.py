"""Handlers for the queue tests, bound with ``--activities tests.engine.queue_handlers``.

Only the `stepwise run` processes of tests/engine/test_queues.py load them;
the `stepwise worker` processes beside them do not, so a worker that took a
run's execution would fail it: it has no handler for them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from activities import activity


@activity("queue_count")
def queue_count(value: dict[str, Any]) -> dict[str, Any]:
    """Append one line to the file `value["log"]` (one line per run of this step)."""
    with Path(value["log"]).open("a") as log:
        log.write("count\n")
    return value


@activity("queue_hang_once")
def queue_hang_once(value: dict[str, Any]) -> dict[str, Any]:
    """The first time: create the file `value["flag"]` and hang (the test kills the process).

    Every later time (a resumed execution runs the step again): return at once.
    """
    flag = Path(value["flag"])
    if not flag.exists():
        flag.write_text("hanging\n")
        time.sleep(3600)
    return {"resumed": True}
