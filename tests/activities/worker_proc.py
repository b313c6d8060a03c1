"""A worker process for the activities tests: runs executions until killed.

    python -m tests.activities.worker_proc DB_URL TOKEN_FILE

`notify` (used as ``notify.waitForTaskToken``) appends the task token it is
given to TOKEN_FILE, as a real notifier would send it to a person. While
TOKEN_FILE.hold exists, `notify` does not return (the test kills it mid-call).
SQL activities are enabled.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import anyio

from activities import ActivityContext, Registry
from engine import Engine


def main() -> None:
    url, token_path = sys.argv[1], sys.argv[2]
    registry = Registry()
    registry.enable("sql")

    def notify(value: Any, context: ActivityContext) -> dict[str, Any]:
        with open(token_path, "a") as out:
            out.write(f"{value['token']}\n")
            out.flush()
            os.fsync(out.fileno())
        while os.path.exists(token_path + ".hold"):  # the test kills this process mid-call
            time.sleep(0.05)
        return {"sent": True}

    registry.register("notify", notify)

    async def serve() -> None:
        async with Engine(
            url, registry=registry, concurrency=4, lease_seconds=1.0, poll_seconds=0.1
        ):
            await anyio.sleep_forever()

    anyio.run(serve)


if __name__ == "__main__":
    main()
