"""A worker process for redrive tests: runs executions until killed.

    python -m tests.engine.redrive_worker DB_URL LOG_FILE

Its one activity, ``step``, appends a line per call — pid, state, label,
idempotency key — to LOG_FILE, then fails with ``Broken`` while the file
``LOG_FILE.broken-LABEL`` exists, and hangs while ``LOG_FILE.hang-LABEL``
exists (so a test can SIGKILL the process mid-call). Leases are short so a
replacement takes over a killed worker's execution quickly.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio

from activities import ActivityContext, ActivityError, Registry
from engine import Engine


def main() -> None:
    url, log_path = sys.argv[1], sys.argv[2]
    registry = Registry()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def step(value: dict[str, Any], context: ActivityContext) -> dict[str, Any]:
        label = value["label"]
        line = {
            "pid": os.getpid(),
            "state": context.state_name,
            "label": label,
            "key": context.idempotency_key,
        }
        os.write(log, (json.dumps(line) + "\n").encode())
        while os.path.exists(f"{log_path}.hang-{label}"):
            await anyio.sleep(0.05)
        if os.path.exists(f"{log_path}.broken-{label}"):
            raise ActivityError("Broken", f"{label} is broken")
        return {"done": label}

    registry.register("step", step)

    async def serve() -> None:
        async with Engine(url, registry=registry, lease_seconds=2.0, poll_seconds=0.2):
            await anyio.sleep_forever()

    anyio.run(serve)


if __name__ == "__main__":
    main()
