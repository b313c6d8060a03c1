"""A worker process for crash tests: runs executions until killed.

    python -m tests.engine.crash_worker DB_URL LOG_FILE [CONCURRENCY]

Its one activity, ``record``, appends a line per run to LOG_FILE — pid,
execution, state, idempotency key, start and end times — so the test can
tell afterwards which steps ran, how often, with which key, and whether two
processes ever worked on one execution at once.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

import anyio

from activities import ActivityContext, Registry
from engine import Engine


def main() -> None:
    url, log_path = sys.argv[1], sys.argv[2]
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    registry = Registry()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def record(value: dict[str, Any], context: ActivityContext) -> dict[str, Any]:
        started = time.time()
        await anyio.sleep(random.uniform(0.05, 0.3))
        line = {
            "pid": os.getpid(),
            "execution": context.execution_id,
            "state": context.state_name,
            "key": context.idempotency_key,
            "start": started,
            "end": time.time(),
        }
        os.write(log, (json.dumps(line) + "\n").encode())
        return {"v": value["v"] + 1}

    registry.register("record", record)

    async def capture(value: Any, context: ActivityContext) -> Any:
        # Log what this attempt was called with, then take long enough for
        # the test to kill the process mid-call; a rerun answers at once.
        rerun = os.path.exists(log_path + ".seen")
        line = {"pid": os.getpid(), "input": value, "key": context.idempotency_key}
        os.write(log, (json.dumps(line) + "\n").encode())
        open(log_path + ".seen", "w").close()
        if not rerun:
            await anyio.sleep(3600)
        return value

    registry.register("capture", capture)

    async def slow(value: Any, context: ActivityContext) -> Any:
        # Logs its start and end, so a test can pause this process mid-call.
        for phase in ("start", "end"):
            line = {"pid": os.getpid(), "phase": phase, "key": context.idempotency_key}
            os.write(log, (json.dumps(line) + "\n").encode())
            if phase == "start":
                await anyio.sleep(3)
        return {"by": os.getpid()}

    registry.register("slow", slow)

    async def held(value: Any, context: ActivityContext) -> Any:
        # Logs its start, then waits until the test creates LOG_FILE.go-PID.
        pid = os.getpid()
        for phase in ("start", "end"):
            line = {"pid": pid, "phase": phase, "key": context.idempotency_key}
            os.write(log, (json.dumps(line) + "\n").encode())
            while phase == "start" and not os.path.exists(f"{log_path}.go-{pid}"):
                await anyio.sleep(0.05)
        return {"by": pid}

    registry.register("held", held)

    async def serve() -> None:
        async with Engine(
            url,
            registry=registry,
            concurrency=concurrency,
            lease_seconds=2.0,
            poll_seconds=0.2,
        ):
            await anyio.sleep_forever()

    anyio.run(serve)


if __name__ == "__main__":
    main()
