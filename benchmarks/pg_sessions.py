"""PostgreSQL sessions a worker opens in steady state (issue 19: the pool sized by concurrency).

Starts `--execs` W1 executions at once on a fresh database of the given
server, with one in-process worker of `--concurrency`, and counts the
database connections the process opens (SQLAlchemy's pool `connect` event:
every new pooled session; the LISTEN connection is not pooled) from when the
first tenth have finished until all have: the sessions opened in steady
state, which a pool large enough for the worker keeps at 0. The server's own
count (`pg_stat_database.sessions`, which PostgreSQL may report up to a few
seconds late) over the whole run is printed beside it. One RESULT line.

    python benchmarks/pg_sessions.py --db postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import psycopg
import sqlalchemy as sa
import sqlalchemy.pool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workloads import TASK_CHAIN_LENGTH, _registry, task_chain
from engine import Engine

_OPENED = [0]


@sa.event.listens_for(sa.pool.Pool, "connect")
def _count_connect(_dbapi_connection: Any, _record: Any) -> None:
    _OPENED[0] += 1


def _sessions(monitor: psycopg.Connection[Any], database: str) -> int:
    monitor.execute("SELECT pg_stat_clear_snapshot()")
    row = monitor.execute(
        "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
    ).fetchone()
    return int(row[0]) if row else 0


async def _run(
    url: str, database: str, admin: str, execs: int, concurrency: int, serial: bool
) -> str:
    with psycopg.connect(admin, autocommit=True) as monitor:
        async with Engine(url, registry=_registry(inline=False), concurrency=concurrency) as engine:
            await engine.create_state_machine("w1c", task_chain())
            warm = max(1, execs // 10)
            if serial:  # W1: one execution at a time, started and awaited
                for _ in range(warm):
                    await engine.wait(await engine.start("w1c", {"v": 0}))
                before, started = _OPENED[0], time.perf_counter()
                for _ in range(execs - warm):
                    await engine.wait(await engine.start("w1c", {"v": 0}))
            else:  # W1c: all started first, then a backlog
                records = [await engine.start("w1c", {"v": 0}) for _ in range(execs)]
                for record in records[:warm]:
                    await engine.wait(record)
                before, started = _OPENED[0], time.perf_counter()
                for record in records[warm:]:
                    await engine.wait(record)
            wall = time.perf_counter() - started
            opened = _OPENED[0] - before
        time.sleep(2.0)  # PostgreSQL reports a backend's counters when idle or gone
        server_total = _sessions(monitor, database)
    steps = (execs - warm) * TASK_CHAIN_LENGTH
    return (
        f"RESULT workload=pg-sessions mode={'W1' if serial else 'W1c'} "
        f"concurrency={concurrency} execs={execs} "
        f"steady_sessions_opened={opened} steady_wall_s={wall:.2f} "
        f"sessions_per_s={opened / wall:.1f} steps_per_s={steps / wall:.0f} "
        f"run_sessions_opened={_OPENED[0]} server_sessions={server_total}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", required=True, help="a PostgreSQL server's admin URL")
    parser.add_argument("--execs", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serial", action="store_true", help="W1's shape: one at a time")
    args = parser.parse_args(argv)
    admin = args.db.replace("postgresql+psycopg://", "postgresql://", 1)
    database = f"stepwise_sessions_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        url = admin.rsplit("/", 1)[0] + f"/{database}"
        print(
            anyio.run(_run, url, database, admin, args.execs, args.concurrency, args.serial),
            flush=True,
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
