"""DBOS Transact running Stepwise's W1 and W2, for `run.py --peers` (one run per process).

Runs inside the DBOS virtual environment `run.py --peers` creates
(`benchmarks/.peers/dbos-venv`), so it imports nothing of Stepwise. The
code is what a DBOS user would write for the same work, each step durable:

- W1: a `@DBOS.workflow` of 10 sequential `@DBOS.step` calls of `increment`
  (`{"v": n}` → `{"v": n + 1}`); 200 executions one after another, each
  called directly (DBOS's synchronous call: the fastest way to run a
  workflow and wait for it).
- W2: a `@DBOS.workflow` that fans out 100 items, each a child workflow
  (`DBOS.start_workflow`) running one `increment` step, and gathers the
  results. Child workflows start at once on DBOS's executor; a `Queue`
  would add its polling interval (1 s by default) to the wall.

Every run gets its own fresh database (DBOS's system database) on the
server `--admin` names, created here and dropped afterwards. Wall time
covers only the executions (after `DBOS.launch()`, which migrates the
schema). Outputs are checked; a wrong answer exits non-zero. Prints one
line `CHILD {json}` like `run.py`'s children.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from typing import Any

import psycopg
from dbos import DBOS, DBOSConfig

TASK_CHAIN_LENGTH = 10
MAP_ITEMS = 100


@DBOS.step()
def increment(value: dict[str, Any]) -> dict[str, Any]:
    return {"v": value["v"] + 1}


@DBOS.workflow()
def chain(value: dict[str, Any]) -> dict[str, Any]:
    for _ in range(TASK_CHAIN_LENGTH):
        value = increment(value)
    return value


@DBOS.workflow()
def add_one(value: dict[str, Any]) -> dict[str, Any]:
    return increment(value)


@DBOS.workflow()
def fan_out(items: list[int]) -> list[dict[str, Any]]:
    handles = [DBOS.start_workflow(add_one, {"v": item}) for item in items]
    return [handle.get_result() for handle in handles]


def _database_url(admin: str, name: str) -> str:
    return admin.rsplit("/", 1)[0] + "/" + name


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--admin", required=True, help="a PostgreSQL URL allowed to CREATE DATABASE"
    )
    parser.add_argument("--workload", choices=["W1", "W2"], required=True)
    parser.add_argument("--execs", type=int, default=200)
    args = parser.parse_args()
    name = f"dbos_bench_{args.workload.lower()}_{os.getpid()}"
    with psycopg.connect(args.admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        config: DBOSConfig = {
            "name": "stepwise-bench",
            "system_database_url": _database_url(args.admin, name),
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        try:
            started = time.perf_counter()
            if args.workload == "W1":
                execs = args.execs
                for _ in range(execs):
                    out = chain({"v": 0})
                    if out != {"v": TASK_CHAIN_LENGTH}:
                        raise SystemExit(f"W1 returned {out!r}")
                steps = execs * TASK_CHAIN_LENGTH
            else:
                execs, steps = 1, MAP_ITEMS
                items = list(range(MAP_ITEMS))
                result = fan_out(items)
                if result != [{"v": item + 1} for item in items]:
                    raise SystemExit(f"W2 returned {result!r}")
            wall = time.perf_counter() - started
        finally:
            DBOS.destroy()
    finally:
        with psycopg.connect(args.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    import dbos

    report = {
        "walls": [wall],
        "execs": execs,
        "steps": steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "version": getattr(dbos, "__version__", "") or _version(),
    }
    print("CHILD " + json.dumps(report), flush=True)
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("dbos")


if __name__ == "__main__":
    sys.exit(main())
