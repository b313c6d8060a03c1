"""Request latency and throughput of `stepwise serve`: StartExecution and DescribeExecution.

``python benchmarks/http_api.py [--backend sqlite|postgres] [--db URL] [--requests N]
[--clients C] [--no-worker]``. Starts ``python -m engine.http`` on a fresh
database (a temporary SQLite file, or a new database on the PostgreSQL
server `--db` names — an admin URL allowed to CREATE DATABASE — or, with no
`--db`, on a throwaway server) and drives it with boto3 clients on
127.0.0.1, exactly as users do. For each operation it prints one line: one
client sending N requests one after another (latency p50/p95/p99 in ms and
requests/s), then C clients in threads sending N requests in all
(aggregate requests/s). The started executions are a one-state Pass
machine, run by the server's own worker unless `--no-worker`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.http.support import Server  # noqa: E402

__all__ = ["main", "measure"]

PASS = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
ROLE = "arn:aws:iam::000000000000:role/bench"


@contextmanager
def _database(backend: str, db: str | None) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="stepwise-http-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    from tests.engine.pg import PostgresServer, start_server

    owned = None
    if db is None:
        owned = start_server()
        db = owned.admin_url
    server = PostgresServer(db.replace("postgresql+psycopg://", "postgresql://", 1))
    name = f"stepwise_http_bench_{int(time.time())}"
    try:
        yield server.create_database(name)
    finally:
        server.drop_database(name)
        if owned is not None:
            owned.stop()


def _percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(call: Callable[[int], Any], requests: int, clients: int) -> dict[str, float]:
    """Latency of `requests` sequential calls, and throughput of `clients` threads sharing them."""
    latencies = []
    started = time.perf_counter()
    for index in range(requests):
        before = time.perf_counter()
        call(index)
        latencies.append((time.perf_counter() - before) * 1000)
    sequential = requests / (time.perf_counter() - started)

    counter = iter(range(requests, 2 * requests))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            call(index)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    concurrent = requests / (time.perf_counter() - started)
    return {
        "p50_ms": statistics.median(latencies),
        "p95_ms": _percentile(latencies, 0.95),
        "p99_ms": _percentile(latencies, 0.99),
        "req_per_s_1_client": sequential,
        "req_per_s_n_clients": concurrent,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--db", default=None)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--no-worker", action="store_true")
    args = parser.parse_args(argv)
    with _database(args.backend, args.db) as url, tempfile.TemporaryDirectory() as logs:
        extra = ["--no-worker"] if args.no_worker else []
        server = Server(url, Path(logs) / "server.log", *extra).start()
        try:
            # One client per thread: botocore clients are thread-safe, but one
            # per thread is how concurrent users look to the server.
            local = threading.local()

            def client() -> Any:
                if not hasattr(local, "client"):
                    local.client = server.client(max_pool_connections=2)
                return local.client

            machine = client().create_state_machine(
                name="bench", definition=json.dumps(PASS), roleArn=ROLE
            )["stateMachineArn"]
            arns: dict[int, str] = {}

            def start(index: int) -> None:
                arns[index] = client().start_execution(stateMachineArn=machine, name=f"e{index}")[
                    "executionArn"
                ]

            def describe(index: int) -> None:
                client().describe_execution(executionArn=arns[index % (2 * args.requests)])

            for name, call in (("StartExecution", start), ("DescribeExecution", describe)):
                figures = measure(call, args.requests, args.clients)
                print(
                    f"HTTP backend={args.backend} op={name} requests={args.requests} "
                    f"worker={'off' if args.no_worker else 'on'} "
                    f"p50_ms={figures['p50_ms']:.2f} p95_ms={figures['p95_ms']:.2f} "
                    f"p99_ms={figures['p99_ms']:.2f} "
                    f"req_per_s_1_client={figures['req_per_s_1_client']:.0f} "
                    f"req_per_s_{args.clients}_clients={figures['req_per_s_n_clients']:.0f}",
                    flush=True,
                )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
