"""Worker scaling on one PostgreSQL: throughput for 1, 2, 4 … worker processes, and what saturates.

``python benchmarks/scaling.py [--workers 1,2,4] [--execs 600] [--concurrency 64]
[--rounds R] [--db ADMIN_URL] [--fsync-off]``. For each worker count N, on a fresh
database: start `--execs` executions of W1c's machine (10 sequential
Tasks) with no worker running (not timed), then launch N `stepwise worker`
subprocesses and poll until every execution has ended. The figures cover
the steady middle of the run — from the moment 10% of the executions have
ended to the moment 90% have — so worker start-up and the tail do not
count: steps/s over that window, the CPU the workers and the PostgreSQL
server processes used in it (percent of one core; the machine's total in
percent of all its cores), commits/s on the database (pg_stat_database,
less this script's own polls), new database sessions (connections) per
second, and what the database's active sessions
were waiting on (pg_stat_activity sampled at each poll: the mean number of
sessions per wait event, `CPU:running` when not waiting,
`IdleInTransaction:ClientRead` for a session holding a transaction open
while it waits for its worker's next statement). One `SCALING` line per N
and round (with `--rounds R`, the counts are repeated R times), a
`SCALING_MEDIAN` line per N over the rounds, then the raw INSERT+COMMIT
ceiling measured on the same server in the same run. Without `--db` it
starts a durable server (fsync on; `benchmarks/pgserver.py`).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import pgserver  # noqa: E402
from benchmarks.workloads import TASK_CHAIN_LENGTH, ceiling, task_chain  # noqa: E402
from engine import Engine  # noqa: E402
from tests.engine.pg import PostgresServer  # noqa: E402

__all__ = ["Point", "format_point", "main", "parse_workers"]

TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.05
MIN_WINDOW_POLLS = 3


@dataclass
class Point:
    """One worker count's figures over the steady window."""

    workers: int
    execs: int
    steps: int = 0
    window_s: float = 0.0
    worker_cpu_s: float = 0.0
    pg_cpu_s: float = 0.0
    machine_busy: float = 0.0
    commits: int = 0
    sessions: int = 0
    waits: dict[str, float] = field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.window_s if self.window_s else 0.0


def parse_workers(text: str) -> list[int]:
    """`1,2,4` → [1, 2, 4]; raises ValueError on anything but positive integers."""
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(n < 1 for n in counts):
        raise ValueError(f"--workers needs positive integers, got {text!r}")
    return counts


def format_point(point: Point, baseline: float | None) -> str:
    """The SCALING line for `point`; `baseline` is the first point's steps/s."""
    window = point.window_s or 1.0
    commits_per_s = point.commits / window
    waits = ",".join(f"{name}:{mean:.2f}" for name, mean in list(point.waits.items())[:6])
    vs = f"{point.steps_per_s / baseline:.2f}" if baseline else "1.00"
    return (
        f"SCALING workers={point.workers} execs={point.execs} steps={point.steps} "
        f"window_s={point.window_s:.3f} steps_per_s={point.steps_per_s:.1f} vs_first={vs} "
        f"worker_cpu_pct={100 * point.worker_cpu_s / window:.0f} "
        f"pg_cpu_pct={100 * point.pg_cpu_s / window:.0f} "
        f"machine_cpu_pct={100 * point.machine_busy:.0f} "
        f"commits_per_s={commits_per_s:.0f} "
        f"steps_per_commit={point.steps / point.commits if point.commits else 0:.2f} "
        f"new_sessions_per_s={point.sessions / window:.1f} "
        f"waits={waits or 'none'}"
    )


def _cpu_s(pid: int, reaped: bool = False) -> float:
    """CPU seconds `pid` used; with `reaped`, also its children that exited and were waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12])
    if reaped:
        used += int(fields[13]) + int(fields[14])
    return used / TICKS


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                pids.append(int(entry.name))
    return pids


def _machine() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class _Snapshot:
    at: float
    workers: float
    pg: float
    machine: tuple[float, float]
    commits: int
    sessions: int
    own_queries: int


class _Probe:
    """Reads the counters a snapshot holds; samples waits at each poll."""

    def __init__(self, admin: str, database: str, workers: list[int]) -> None:
        self.admin = psycopg.connect(admin, autocommit=True)
        self.database = database
        self.workers = workers
        data_dir = self.admin.execute("SHOW data_directory").fetchone()
        pid_file = Path(str(data_dir[0] if data_dir else "")) / "postmaster.pid"
        try:
            self.postmaster: int | None = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            self.postmaster = None  # a server elsewhere: its CPU is not ours to read
        self.waits: Counter[str] = Counter()
        self.samples = 0

    def snapshot(self, own_queries: int) -> _Snapshot:
        row = self.admin.execute(
            "SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = %s",
            (self.database,),
        ).fetchone()
        pg = 0.0
        if self.postmaster is not None:
            # Live server processes, plus backends that already exited (reaped by the postmaster).
            pg = _cpu_s(self.postmaster, reaped=True)
            pg += sum(_cpu_s(p) for p in _children(self.postmaster))
        return _Snapshot(
            time.perf_counter(),
            sum(_cpu_s(pid) for pid in self.workers),
            pg,
            _machine(),
            int(row[0]) if row else 0,
            int(row[1]) if row else 0,
            own_queries,
        )

    def sample_waits(self) -> None:
        rows = self.admin.execute(
            "SELECT CASE WHEN state = 'idle in transaction' THEN 'IdleInTransaction' "
            "ELSE coalesce(wait_event_type, 'CPU') END || ':' || coalesce(wait_event, 'running'), "
            "count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "AND state IN ('active', 'idle in transaction') GROUP BY 1",
            (self.database,),
        ).fetchall()
        self.samples += 1
        for name, count in rows:
            self.waits[str(name)] += int(count)

    def close(self) -> None:
        self.admin.close()


async def _prepare(url: str, execs: int) -> None:
    async with Engine(url, worker=False) as engine:
        await engine.create_state_machine("w1c", task_chain())
        for _ in range(execs):
            await engine.start("w1c", {"v": 0})


def _measure(server: PostgresServer, workers: int, execs: int, concurrency: int) -> Point:
    name = f"stepwise_scaling_{workers}_{os.getpid()}"
    url = server.create_database(name)
    point = Point(workers, execs)
    try:
        anyio.run(_prepare, url, execs)
        done_conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        done_conn.autocommit = True
        stepwise = str(Path(sys.executable).parent / "stepwise")
        procs = [
            subprocess.Popen(
                [
                    stepwise,
                    "worker",
                    "--db",
                    url,
                    "--concurrency",
                    str(concurrency),
                    "--activities",
                    "benchmarks.bench_activities",
                ],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        probe = _Probe(server.admin_url, name, [p.pid for p in procs])
        low, high = max(1, execs // 10), execs - execs // 10
        first = last = None
        polls = first_done = first_poll = 0
        deadline = time.monotonic() + 600
        try:
            while time.monotonic() < deadline:
                time.sleep(POLL_S)
                row = done_conn.execute(
                    "SELECT count(*) FROM executions WHERE status <> 'RUNNING'"
                ).fetchone()
                polls += 1
                done = int(row[0]) if row else 0
                if first is not None and last is None:
                    probe.sample_waits()
                if first is None and done >= low:
                    first = probe.snapshot(polls)
                    first_done, first_poll = done, polls
                if first is not None and last is None and done >= high:
                    if polls - first_poll < MIN_WINDOW_POLLS:
                        raise SystemExit(
                            f"{workers} workers ran the steady window in under "
                            f"{MIN_WINDOW_POLLS} polls: too short to measure, raise --execs"
                        )
                    last = probe.snapshot(polls)
                    point.steps = (done - first_done) * TASK_CHAIN_LENGTH
                if done >= execs:
                    break
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("a worker exited before the executions ended")
            else:
                raise SystemExit(f"{workers} workers did not finish {execs} executions in time")
            failed = done_conn.execute(
                "SELECT count(*) FROM executions WHERE status <> 'SUCCEEDED'"
            ).fetchone()
            if failed and failed[0]:
                raise SystemExit(f"{failed[0]} executions did not succeed")
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            probe.close()
            done_conn.close()
        if first is None or last is None:
            raise SystemExit("the run ended before its steady window could be measured")
        point.window_s = last.at - first.at
        point.worker_cpu_s = last.workers - first.workers
        point.pg_cpu_s = last.pg - first.pg
        busy = last.machine[0] - first.machine[0]
        total = last.machine[1] - first.machine[1]
        point.machine_busy = busy / total if total else 0.0
        point.commits = max(
            0, last.commits - first.commits - (last.own_queries - first.own_queries)
        )
        point.sessions = last.sessions - first.sessions
        samples = max(1, probe.samples)
        point.waits = {k: v / samples for k, v in probe.waits.most_common()}
        return point
    finally:
        server.drop_database(name)


@contextmanager
def _server(args: argparse.Namespace) -> Iterator[PostgresServer]:
    if args.db:
        yield PostgresServer(args.db.replace("postgresql+psycopg://", "postgresql://", 1))
        return
    server = pgserver.start(fsync=not args.fsync_off)
    try:
        yield server
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scaling benchmark; print SERVER, one SCALING line per worker count, CEILING."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--execs", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the worker counts; medians at the end"
    )
    parser.add_argument("--db", help="a PostgreSQL admin URL (default: a durable server)")
    parser.add_argument("--fsync-off", action="store_true", help="the started server without fsync")
    args = parser.parse_args(argv)
    try:
        counts = parse_workers(args.workers)
    except ValueError as exc:
        parser.error(str(exc))
    if args.execs < 10:
        parser.error("--execs must be at least 10")
    with _server(args) as server:
        print(pgserver.format_server(pgserver.settings(server.admin_url)), flush=True)
        baseline = None
        rates: dict[int, list[float]] = {n: [] for n in counts}
        for _ in range(max(1, args.rounds)):
            for workers in counts:
                point = _measure(server, workers, args.execs, args.concurrency)
                print(format_point(point, baseline), flush=True)
                baseline = baseline or point.steps_per_s
                rates[workers].append(point.steps_per_s)
        first = statistics.median(rates[counts[0]])
        for workers, values in rates.items():
            median = statistics.median(values)
            print(
                f"SCALING_MEDIAN workers={workers} rounds={len(values)} "
                f"steps_per_s={median:.1f} vs_first={median / first if first else 0:.2f} "
                f"spread={min(values):.1f}..{max(values):.1f}",
                flush=True,
            )
        name = f"stepwise_scaling_ceiling_{os.getpid()}"
        url = server.create_database(name)
        try:
            measured = ceiling(url, 2000)
        finally:
            server.drop_database(name)
        print(f"CEILING commits_per_s={measured.steps / measured.wall_s:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
