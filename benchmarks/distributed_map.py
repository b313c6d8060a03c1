"""Distributed Map over a CSV on local S3 storage: wall time, children per second, peak RSS.

    python benchmarks/distributed_map.py [--backend sqlite|postgres] [--db URL]
                                         [--rows 10000,100000] [--batch 100]

For each row count, a CSV of that many rows is written under a fresh
``--s3-root``; ``stepwise run`` (a process of its own, so its peak RSS is
the parent's alone) runs a Distributed Map that reads it with
``ItemReader``, batches it (``MaxItemsPerBatch``), sums each batch in a child
and writes AWS's result files with ``ResultWriter``. The run's result files
are checked (every row counted exactly once) before a ``RESULT`` line is
printed. Today the children run inside the parent's process as iterations,
so "workers" is 1; the issue's 4-worker figure needs child executions.
"""

from __future__ import annotations

import argparse
import json
import resource
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


def _one(rows: int, batch: int, backend: str, db: str | None) -> str:
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
        (directory / "machine.json").write_text(json.dumps(machine))
        with _database(backend, db, directory, rows) as url:
            started = time.perf_counter()
            command = [sys.executable, "-m", "engine.cli", "run", "--db", url, "-o", "json"]
            command += ["--s3-root", str(directory / "s3"), str(directory / "machine.json")]
            done = subprocess.run(
                command,
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"run failed ({done.returncode}): {done.stderr[-2000:]}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        key = json.loads(done.stdout)["output"]["ResultWriterDetails"]["Key"]
        manifest = json.loads((bucket / key).read_text())
        counted = 0
        for entry in manifest["ResultFiles"]["SUCCEEDED"]:
            counted += sum(r["rows"] for r in json.loads((bucket / entry["Key"]).read_text()))
        if counted != rows or manifest["ResultFiles"]["FAILED"]:
            raise SystemExit(f"wrong results: {counted} rows counted of {rows}")
        children = -(-rows // batch)
        return (
            f"RESULT workload=distributed-map backend={backend} rows={rows} batch={batch} "
            f"children={children} workers=1 wall_s={wall:.4g} "
            f"children_per_s={children / wall:.4g} rows_per_s={rows / wall:.4g} "
            f"peak_rss_mb={peak_mb:.0f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--db", default=None, help="postgres: a URL allowed to CREATE DATABASE")
    parser.add_argument("--rows", default="10000,100000", help="comma-separated row counts")
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args(argv)
    for rows in (int(n) for n in args.rows.split(",")):
        # Peak RSS of children is a high-water mark: the sizes run smallest first.
        print(_one(rows, args.batch, args.backend, args.db), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
