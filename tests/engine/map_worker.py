"""A worker process for Distributed Map tests: runs child executions until killed.

    python -m tests.engine.map_worker DB_URL LOG_FILE [CONCURRENCY]

Its activity ``rows`` handles one batch of CSV rows (``{"Items": [...]}``):
it appends a line per call to LOG_FILE (and one ``ready`` line at start):
pid, execution, the rows' ids, and how many children of the Map Run were
running at that moment by the store's own counts (the Map Run row, and the
RUNNING child executions), so a test can tell which process handled which
row, how often, and that MaxConcurrency held. A row whose ``fail`` column is
``yes`` fails the child.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import sqlalchemy as sa

from activities import ActivityContext, Registry
from engine import Engine
from engine.store import Store
from engine.store.schema import executions, map_run_children, map_runs


def running_counts(store: Store) -> tuple[int, int]:
    """(the Map Runs' running counters summed, RUNNING child executions) right now."""
    with store._read() as conn:
        counted = conn.execute(sa.select(sa.func.sum(map_runs.c.running))).scalar() or 0
        live = conn.execute(
            sa.select(sa.func.count())
            .select_from(
                map_run_children.join(
                    executions, executions.c.execution_id == map_run_children.c.execution_id
                )
            )
            .where(executions.c.status == "RUNNING")
        ).scalar()
    return int(counted), int(live or 0)


def main() -> None:
    url, log_path = sys.argv[1], sys.argv[2]
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    registry = Registry()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    store = Store(url)

    async def rows(value: dict[str, Any], context: ActivityContext) -> dict[str, Any]:
        items = value["Items"]
        counted, live = await anyio.to_thread.run_sync(running_counts, store)
        line = {
            "pid": os.getpid(),
            "execution": context.execution_id,
            "ids": [item["id"] for item in items],
            "running": counted,
            "live": live,
        }
        os.write(log, (json.dumps(line) + "\n").encode())
        await anyio.sleep(0.2)
        if any(item.get("fail") == "yes" for item in items):
            raise RuntimeError("a row asked to fail")
        return {"sum": sum(int(item["id"]) for item in items)}

    registry.register("rows", rows)

    async def serve() -> None:
        async with Engine(
            url, registry=registry, concurrency=concurrency, lease_seconds=2.0, poll_seconds=0.2
        ):
            os.write(log, (json.dumps({"pid": os.getpid(), "ready": True}) + "\n").encode())
            await anyio.sleep_forever()

    anyio.run(serve)


if __name__ == "__main__":
    main()
