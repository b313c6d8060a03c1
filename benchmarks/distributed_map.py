"""Distributed Map over a CSV on local S3 storage: wall time, children per second, peak RSS.

    python benchmarks/distributed_map.py [--backend sqlite|postgres] [--db URL]
                                         [--rows 10000,100000] [--batch 100] [--workers 4]

For each row count, a CSV of that many rows is written under a fresh S3
root; the benchmark starts ``--workers`` ``stepwise worker`` processes on
one database and starts one execution of a Distributed Map that reads the
CSV (``ItemReader``), batches it (``MaxItemsPerBatch``), sums each batch in a
child execution — claimed by whichever worker is free — and writes AWS's
result files (``ResultWriter``). Wall time runs from the start to the
parent's end, once a few warm-up executions showed the workers running;
``map_run_s`` is the Map Run alone (``MapRunStarted`` to
``MapRunSucceeded`` in the parent's history: the children's work, the
items' loading before it). The result files are checked (every row counted exactly
once) before a ``RESULT`` line is printed. Peak RSS is read from each
worker's ``/proc/PID/status`` (VmHWM) just before it is stopped; any
worker may run the parent, so ``max_worker_rss_mb`` bounds the parent's
worker's peak (``worker_rss_mb`` lists each).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MACHINE = {
    "StartAt": "Rows",
    "States": {
        "Rows": {
            "Type": "Map",
            "Label": "rows",
            "End": True,
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "Parameters": {"Bucket": "bench", "Key": "rows.csv"},
                "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
            },
            "ItemBatcher": {"MaxItemsPerBatch": 100},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Count",
                "States": {
                    "Count": {
                        "Type": "Pass",
                        "Parameters": {"rows.$": "States.ArrayLength($.Items)"},
                        "End": True,
                    }
                },
            },
            "ResultWriter": {
                "Resource": "arn:aws:states:::s3:putObject",
                "Parameters": {"Bucket": "bench", "Prefix": "results"},
                "WriterConfig": {"Transformation": "COMPACT"},
            },
        }
    },
}


WARM_UP = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 1, "End": True}}}


@contextmanager
def _database(backend: str, db: str | None, directory: Path, rows: int) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'map-{rows}.db'}"
        return
    from tests.engine.pg import PostgresServer, start_server

    server = start_server() if db is None else None
    admin = server.admin_url if server is not None else db
    assert admin is not None
    admin_server = PostgresServer(admin.replace("postgresql+psycopg://", "postgresql://", 1))
    name = f"stepwise_bench_map_{rows}"
    try:
        yield admin_server.create_database(name)
        admin_server.drop_database(name)
    finally:
        if server is not None:
            server.stop()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _one(rows: int, batch: int, backend: str, db: str | None, workers: int) -> str:
    from engine import Engine

    with tempfile.TemporaryDirectory(prefix="stepwise-map-bench-") as folder:
        directory = Path(folder)
        bucket = directory / "s3" / "bench"
        bucket.mkdir(parents=True)
        with (bucket / "rows.csv").open("w") as csv:
            csv.write("id,amount\n")
            for n in range(rows):
                csv.write(f"{n},{n % 97}\n")
        machine = json.loads(json.dumps(MACHINE))
        machine["States"]["Rows"]["ItemBatcher"]["MaxItemsPerBatch"] = batch
        with _database(backend, db, directory, rows) as url:
            command = [sys.executable, "-m", "engine.cli", "worker", "--db", url]
            command += ["--s3-root", str(directory / "s3")]
            with Engine(url, worker=False) as engine:
                engine.create_state_machine_sync("bench-map", machine)
                processes = [
                    subprocess.Popen(
                        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                    )
                    for _ in range(workers)
                ]
                try:
                    # Warm up: the workers have imported and opened the store.
                    engine.create_state_machine_sync("bench-warm", WARM_UP)
                    warm = [engine.start_sync("bench-warm", {}) for _ in range(2 * workers)]
                    for record in warm:
                        engine.wait_sync(record, timeout=600)
                    started = time.perf_counter()
                    record = engine.start_sync("bench-map", {})
                    done = engine.wait_sync(record, timeout=3600)
                    wall = time.perf_counter() - started
                    peaks = [_peak_rss_mb(p.pid) for p in processes]
                    moments = {e.type: e.timestamp for e in engine.history_sync(done)}
                    run_s = (moments["MapRunSucceeded"] - moments["MapRunStarted"]).total_seconds()
                finally:
                    for process in processes:
                        process.terminate()
                    for process in processes:
                        process.wait(timeout=60)
        if done.status != "SUCCEEDED":
            raise SystemExit(f"run failed: {done.status} {done.error} {done.cause}")
        key = json.loads(done.output or "")["ResultWriterDetails"]["Key"]
        manifest = json.loads((bucket / key).read_text())
        counted = 0
        for entry in manifest["ResultFiles"]["SUCCEEDED"]:
            counted += sum(r["rows"] for r in json.loads((bucket / entry["Key"]).read_text()))
        if counted != rows or manifest["ResultFiles"]["FAILED"]:
            raise SystemExit(f"wrong results: {counted} rows counted of {rows}")
        children = -(-rows // batch)
        # Any worker may run the parent: the largest peak bounds the parent's worker's.
        every = ",".join(f"{peak:.0f}" for peak in peaks)
        return (
            f"RESULT workload=distributed-map backend={backend} rows={rows} batch={batch} "
            f"children={children} workers={workers} wall_s={wall:.4g} map_run_s={run_s:.4g} "
            f"children_per_s={children / wall:.4g} rows_per_s={rows / wall:.4g} "
            f"max_worker_rss_mb={max(peaks):.0f} worker_rss_mb={every}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--db", default=None, help="postgres: a URL allowed to CREATE DATABASE")
    parser.add_argument("--rows", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    for rows in (int(n) for n in args.rows.split(",")):
        print(_one(rows, args.batch, args.backend, args.db, args.workers), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
