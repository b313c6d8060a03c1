"""History at scale: W1 with 1 M events already stored, and resuming a 25,000-event execution.

``python benchmarks/history_scale.py --backend sqlite|postgres [--db URL]
[--execs N] [--rounds R]`` prints two RESULT lines:

- ``workload=W1-1M``: W1 (sequential 10-Task executions, `benchmarks.workloads`)
  on an empty database and on one already holding 10,000 closed executions
  with 1,000,000 history events and 100,000 journal rows (stored as the
  engine stores them: ExecutionStarted as a history_events row, the rest as
  history_blocks of three events; one INSERT … SELECT each, then VACUUM
  ANALYZE), interleaved round by round in alternating order so both see
  the same machine load; ``ratio`` is filled ÷ empty (target ≥ 0.9).
- ``workload=resume-25k``: one execution that loops Pass → Choice until its
  history holds about 24,000 events, then suspends at a one-hour Wait. Each
  round claims it and runs one activation, which loads the journal, replays
  every recorded step and suspends again at the Wait: the wall time of a
  resume (target ≤ 100 ms), split into the load alone (``load_ms``) and the
  whole activation (``resume_ms``, its fastest round ``resume_min_ms``), and
  the process's CPU time for the activation (``resume_cpu_ms``, all threads:
  on a shared machine the wall also counts waiting for a core).

`--db` is a SQLite file URL's directory or a PostgreSQL admin URL allowed to
CREATE DATABASE (as `benchmarks/run.py` takes it); without it, PostgreSQL is
a throwaway server started for the run. Figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.workloads import _registry, _w1  # noqa: E402
from engine import Engine  # noqa: E402
from engine.runner import activate  # noqa: E402
from engine.store import Store  # noqa: E402

__all__ = ["fill_history", "loop_machine", "main"]

FILL_EXECUTIONS = 10_000
FILL_EVENTS_EACH = 100
FILL_JOURNAL_EACH = 10
# Four events per Pass → Choice loop: 6,000 loops ≈ 24,000 events, under AWS's 25,000.
RESUME_LOOPS = 6_000

# How the engine stores them (`engine/store/blocks.py`): each execution's
# ExecutionStarted as a history_events row (a start is a cold writer), the
# other 99 events as history_blocks rows of three events each, as a Task
# step's commit writes them (block b holds events 3b-1 .. 3b+1).
EVENTS_PER_BLOCK = 3
_FIRST = "3 * b - 1"
_LAST = "3 * b + 1"
_DETAILS_JSON = '"{\\"name\\": \\"P\\", \\"input\\": \\"{}\\"}"'


def _block_item(event_id: str) -> str:
    return (
        f"'[' || ({event_id}) || ',' || ({event_id} - 1) || "
        f'\',"PassStateEntered","2026-01-01 00:00:00.000000",{_DETAILS_JSON}]\''
    )


_BLOCK_TEXT = (
    "'[' || "
    + " || ',' || ".join(_block_item(f"3 * b - 1 + {k}") for k in range(EVENTS_PER_BLOCK))
    + " || ']'"
)

_FILL = {
    "postgresql": [
        """
        INSERT INTO executions (execution_id, name, machine, version, status, input, start_date,
                                stop_date, trace_id, stop_requested, last_event_id)
        SELECT 'x-' || n, 'run-' || n, 'bulk', 1, 'SUCCEEDED', '{}',
               now() - n * interval '1 minute', now() - n * interval '1 minute',
               md5(n::text), false, :events
        FROM generate_series(1, :count) AS n
        """,
        """
        INSERT INTO history_events (execution_id, event_id, previous_event_id, type, timestamp,
                                    details)
        SELECT 'x-' || n, 1, 0, 'ExecutionStarted', now(), '{"input": "{}"}'
        FROM generate_series(1, :count) AS n
        """,
        f"""
        INSERT INTO history_blocks (execution_id, first_event_id, last_event_id, events)
        SELECT 'x-' || n, {_FIRST}, {_LAST}, {_BLOCK_TEXT}
        FROM generate_series(1, :count) AS n, generate_series(1, :blocks) AS b
        """,
        """
        INSERT INTO journal (execution_id, key, value, recorded_at)
        SELECT 'x-' || n, 'step:' || i, '{"v": null, "e": 0}', now()
        FROM generate_series(1, :count) AS n, generate_series(1, :journal) AS i
        """,
    ],
    "sqlite": [
        """
        INSERT INTO executions (execution_id, name, machine, version, status, input, start_date,
                                stop_date, trace_id, stop_requested, last_event_id)
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
        SELECT 'x-' || n, 'run-' || n, 'bulk', 1, 'SUCCEEDED', '{}',
               strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || n || ' minutes'),
               strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || n || ' minutes'),
               printf('%032x', n), 0, :events
        FROM g
        """,
        """
        INSERT INTO history_events (execution_id, event_id, previous_event_id, type, timestamp,
                                    details)
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
        SELECT 'x-' || n, 1, 0, 'ExecutionStarted',
               strftime('%Y-%m-%d %H:%M:%f', 'now'), '{"input": "{}"}'
        FROM g
        """,
        f"""
        INSERT INTO history_blocks (execution_id, first_event_id, last_event_id, events)
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count),
                       k(b) AS (SELECT 1 UNION ALL SELECT b + 1 FROM k WHERE b < :blocks)
        SELECT 'x-' || n, {_FIRST}, {_LAST}, {_BLOCK_TEXT}
        FROM g, k
        """,
        """
        INSERT INTO journal (execution_id, key, value, recorded_at)
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count),
                       j(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM j WHERE i < :journal)
        SELECT 'x-' || n, 'step:' || i, '{"v": null, "e": 0}',
               strftime('%Y-%m-%d %H:%M:%f', 'now')
        FROM g, j
        """,
    ],
}


def fill_history(url: str) -> None:
    """Write 10,000 closed executions with 1 M events and 100,000 journal rows, then ANALYZE."""
    store = Store(url)
    try:
        store.put_state_machine(
            "bulk", '{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}', "STANDARD"
        )
        engine = store._engine
        values = {
            "count": FILL_EXECUTIONS,
            "events": FILL_EVENTS_EACH,
            "journal": FILL_JOURNAL_EACH,
            "blocks": (FILL_EVENTS_EACH - 1) // EVENTS_PER_BLOCK,
        }
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # A million rows may outlast the store's 15 s statement timeout.
                conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            for statement in _FILL[engine.dialect.name]:
                conn.execute(sa.text(statement), values)
        # Vacuumed now, so autovacuum does not pick the fresh million rows up
        # in the middle of a measurement (PostgreSQL vacuums after inserts too).
        maintenance = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(maintenance)
        # The store reads the fill as it reads its own writes: ids 1..100, in order.
        ids = [event.event_id for event in store.history(f"x-{FILL_EXECUTIONS}")]
        if ids != list(range(1, FILL_EVENTS_EACH + 1)):
            raise SystemExit(f"the fill reads back as event ids {ids[:5]}...: not 1..100")
    finally:
        store.close()


def loop_machine(loops: int = RESUME_LOOPS) -> dict[str, Any]:
    """Pass (count) → Choice (loop back until `loops`) → a one-hour Wait → Succeed."""
    return {
        "StartAt": "Count",
        "States": {
            "Count": {
                "Type": "Pass",
                "Parameters": {"n.$": "States.MathAdd($.n, 1)"},
                "Next": "Again",
            },
            "Again": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericLessThan": loops, "Next": "Count"}],
                "Default": "Later",
            },
            "Later": {"Type": "Wait", "Seconds": 3600, "Next": "Done"},
            "Done": {"Type": "Succeed"},
        },
    }


@contextmanager
def _databases(backend: str, db: str | None, count: int) -> Iterator[list[str]]:
    """`count` fresh, empty databases, removed afterwards."""
    if backend == "sqlite":
        parent = Path(db.removeprefix("sqlite:///")) if db else None
        with tempfile.TemporaryDirectory(prefix="stepwise-scale-", dir=parent) as directory:
            yield [f"sqlite:///{Path(directory) / f'scale{i}.db'}" for i in range(count)]
        return
    from tests.engine.pg import PostgresServer, start_server

    started = None if db else start_server()
    admin = db or (started.admin_url if started else "")
    server = PostgresServer(admin.replace("postgresql+psycopg://", "postgresql://", 1))
    names = [f"stepwise_scale_{time.time_ns()}_{i}" for i in range(count)]
    try:
        yield [server.create_database(name) for name in names]
    finally:
        for name in names:
            server.drop_database(name)
        if started is not None:
            started.stop()


async def _w1_rate(url: str, execs: int) -> float:
    async with Engine(url, registry=_registry(inline=False), concurrency=64) as engine:
        # A fresh machine name per round: the database keeps every earlier round's executions.
        measurement = await _w1(engine, execs)
    return measurement.steps / measurement.wall_s


def _w1_with_history(backend: str, db: str | None, execs: int, rounds: int) -> dict[str, float]:
    with _databases(backend, db, 2) as (empty, filled):
        fill_history(filled)
        rates: dict[str, list[float]] = {"empty": [], "filled": []}
        order = [("empty", empty), ("filled", filled)]
        for _ in range(rounds):
            for label, url in order:
                rates[label].append(anyio.run(_w1_rate, url, execs))
            order.reverse()  # neither database always runs first
    empty_rate = statistics.median(rates["empty"])
    filled_rate = statistics.median(rates["filled"])
    return {
        "empty_steps_per_s": empty_rate,
        "filled_steps_per_s": filled_rate,
        "ratio": filled_rate / empty_rate,
    }


async def _resume(url: str, rounds: int) -> dict[str, float]:
    async with Engine(url, concurrency=4, hold_seconds=0.0) as engine:
        await engine.create_state_machine("scale", loop_machine())
        record = await engine.start("scale", {"n": 0})
        runtime = engine.runtime
        store = runtime.store
        # Let the in-process worker walk it to the Wait (it suspends there).
        while True:
            await anyio.sleep(0.2)
            queued, due = store.work_due_at(record.execution_id)
            if queued and due is not None and due > runtime.clock.now() + timedelta(minutes=30):
                leased = store.claim_execution(
                    record.execution_id,
                    runtime.worker_id,
                    lease_seconds=600,
                    now=runtime.clock.now(),
                )
                if leased:
                    break
        events = store.get_execution(record.execution_id).last_event_id
        loads: list[float] = []
        resumes: list[float] = []
        cpu: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            store.load(record.execution_id)
            loads.append(time.perf_counter() - started)
            store.claim_execution(
                record.execution_id, runtime.worker_id, lease_seconds=600, now=runtime.clock.now()
            )
            started, cpu_started = time.perf_counter(), time.process_time()
            activation = await activate(runtime, record.execution_id, hold_seconds=0.0)
            resumes.append(time.perf_counter() - started)
            # CPU of the whole process (the load's thread included): on a shared
            # machine the wall time also counts waiting for a core.
            cpu.append(time.process_time() - cpu_started)
            if activation.status != "RUNNING":
                raise SystemExit(f"the resumed execution ended {activation.status}")
    return {
        "events": float(events),
        "load_ms": 1000 * statistics.median(loads),
        "resume_ms": 1000 * statistics.median(resumes),
        "resume_min_ms": 1000 * min(resumes),
        "resume_cpu_ms": 1000 * statistics.median(cpu),
    }


def _resume_25k(backend: str, db: str | None, rounds: int) -> dict[str, float]:
    with _databases(backend, db, 1) as (url,):
        return anyio.run(_resume, url, rounds)


def _line(workload: str, backend: str, figures: dict[str, float]) -> str:
    parts = " ".join(f"{key}={value:.3f}" for key, value in figures.items())
    return f"RESULT peer=stepwise-{backend} workload={workload} {parts}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--db")
    parser.add_argument("--execs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["W1-1M", "resume-25k"])
    args = parser.parse_args(argv)
    if args.only in (None, "W1-1M"):
        figures = _w1_with_history(args.backend, args.db, args.execs, args.rounds)
        print(_line("W1-1M", args.backend, figures), flush=True)
    if args.only in (None, "resume-25k"):
        print(_line("resume-25k", args.backend, _resume_25k(args.backend, args.db, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
