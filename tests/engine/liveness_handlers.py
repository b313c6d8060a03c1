"""Activities for the liveness tests' `stepwise worker` and `stepwise run` subprocesses.

``record`` appends one JSON line per run to $STEPWISE_TEST_LOG — pid,
execution, state and idempotency key — after a short sleep, so a test can
tell which steps ran, how often and under which keys, and can time its
faults by the progress the log shows. ``sleep_sync`` blocks a worker
thread for ten minutes, for the SIGTERM test.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import anyio

from activities import ActivityContext, activity


@activity("record")
async def record(value: dict[str, Any], context: ActivityContext) -> dict[str, Any]:
    await anyio.sleep(float(os.environ.get("STEPWISE_TEST_TASK_SECONDS", "0.01")))
    line = {
        "pid": os.getpid(),
        "execution": context.execution_id,
        "state": context.state_name,
        "key": context.idempotency_key,
    }
    log = os.open(os.environ["STEPWISE_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(log, (json.dumps(line) + "\n").encode())
    finally:
        os.close(log)
    return {"v": value["v"] + 1}


@activity("sleep_sync")
def sleep_sync(value: Any) -> Any:
    """A sync handler that logs its start, then blocks its thread for ten minutes."""
    log = os.open(os.environ["STEPWISE_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(log, (json.dumps({"pid": os.getpid(), "sync": "started"}) + "\n").encode())
    finally:
        os.close(log)
    time.sleep(600)
    return value
