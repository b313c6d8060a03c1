"""The benchmark command: runs workloads in fresh subprocesses and prints RESULT/RATIO lines.

``python benchmarks/run.py --workload W1|W1i|W1c|W2|W3|ceiling|startup|all
--backend sqlite|postgres [--db URL] [--execs N] [--runs R] [--peers]
[--fsync-off]``. Each workload runs in its own subprocess (so its peak RSS
is its own), each run of it on a fresh database: a new temporary SQLite
file, or a new PostgreSQL database created on the server `--db` names (an
admin URL allowed to CREATE DATABASE) or, with no `--db`, on a durable
throwaway server (fsync on; `benchmarks/pgserver.py`) started for the
benchmark and stopped after it. On PostgreSQL a SERVER line first says what
the server runs with. The parent prints one RESULT line per workload with
medians over the runs; with `--peers`, W1 and W2 run in turn with DBOS
Transact and Restate (`benchmarks/peers.py`), one run each, and each
peer's RESULT line follows Stepwise's. W1i (W1 with the handler registered
inline) runs in W1's turns, right after Stepwise's W1: both are paired
with the same runs of the peers' W1. `all` and `startup` add STARTUP
lines (`benchmarks/startup.py`). Then RATIO lines: each workload's steps/s
over the ceiling's INSERT+COMMITs/s on the same database, and Stepwise over
each peer as the median of the back-to-back pairs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # `python benchmarks/run.py` puts benchmarks/ on the path, not the repository.
    sys.path.insert(0, str(REPO))

from benchmarks.peers import (  # noqa: E402
    PEER_WORKLOADS,
    PEERS,
    Peer,
    PeerUnavailable,
    ensure,
    run_peer,
)
from benchmarks.workloads import (  # noqa: E402
    DEFAULT_EXECS,
    STEPS_PER_EXEC,
    WORKLOADS,
    run_workload,
)

__all__ = [
    "Result",
    "format_peer_ratio",
    "format_ratio",
    "format_result",
    "main",
    "pair_ratios",
    "parse_result",
    "stepwise_version",
]

CHILD_MARKER = "CHILD "
LINE_KINDS = ("RESULT", "RATIO", "SERVER", "STARTUP")
_databases = itertools.count(1)
# Which of the peers' workloads each Stepwise workload is paired with: a
# DBOS step runs in its workflow's own thread, so W1i (the handler inline,
# no thread hop) is W1's fairest counterpart and shares W1's peer runs.
PAIRED_WITH = {"W1": "W1", "W1i": "W1", "W2": "W2"}


@dataclass(frozen=True)
class Result:
    """One workload's figures over its runs, as a RESULT line carries them."""

    backend: str
    version: str
    workload: str
    runs: int
    execs: int
    steps_per_exec: int
    execs_per_s: float
    steps_per_s: float
    execs_per_s_min: float
    execs_per_s_max: float
    wall_s: float
    peak_rss_mb: float
    peer: str = "stepwise"
    fsync: str = ""


def stepwise_version() -> str:
    """The project version from pyproject.toml, with the git commit when there is one."""
    import tomllib  # the parent's alone: the measured child never loads it

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(version)
    return f"{version}+g{commit}" if commit else str(version)


def format_result(result: Result) -> str:
    """The RESULT line for `result`."""
    return (
        f"RESULT peer={result.peer}-{result.backend} version={result.version} "
        f"workload={result.workload} runs={result.runs} execs={result.execs} "
        f"steps_per_exec={result.steps_per_exec} execs_per_s={result.execs_per_s:.2f} "
        f"steps_per_s={result.steps_per_s:.2f} "
        f"execs_per_s_spread={result.execs_per_s_min:.2f}..{result.execs_per_s_max:.2f} "
        f"wall_s={result.wall_s:.4g} peak_rss_mb={result.peak_rss_mb:.1f}"
        + (f" fsync={result.fsync}" if result.fsync else "")
    )


def parse_result(line: str) -> dict[str, str]:
    """The key=value fields of a RESULT, RATIO, SERVER or STARTUP line.

    Raises ValueError on any other line.
    """
    kind, _, rest = line.strip().partition(" ")
    if kind not in LINE_KINDS:
        raise ValueError(f"not a RESULT or RATIO line: {line!r}")
    fields: dict[str, str] = {}
    for part in rest.split():
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"malformed field {part!r} in {line!r}")
        fields[key] = value
    return fields


def format_ratio(result: Result, ceiling: Result) -> str:
    """The RATIO line: `result`'s steps/s over the ceiling's rows/s on the same backend."""
    ratio = result.steps_per_s / ceiling.steps_per_s if ceiling.steps_per_s else 0.0
    peer = "" if result.peer == "stepwise" else f" peer={result.peer}"
    return (
        f"RATIO workload={result.workload} backend={result.backend}{peer} "
        f"steps_per_ceiling={ratio:.4f}"
    )


# -- the child: one workload, every run ---------------------------------------


@contextmanager
def _fresh_database(backend: str, db: str | None, workload: str) -> Iterator[str]:
    """A URL of an empty database for one run, removed afterwards."""
    if backend == "sqlite":
        parent = Path(db.removeprefix("sqlite:///")).parent if db else None
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="stepwise-bench-", dir=parent) as directory:
            yield f"sqlite:///{Path(directory) / f'{workload}.db'}"
        return
    if db is None:
        raise SystemExit("internal error: the child needs --db for postgres")
    from tests.engine.pg import PostgresServer

    server = PostgresServer(db.replace("postgresql+psycopg://", "postgresql://", 1))
    name = f"stepwise_bench_{workload.lower()}_{os.getpid()}_{next(_databases)}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


def _child(args: argparse.Namespace) -> int:
    walls: list[float] = []
    execs = steps = 0
    for _ in range(args.runs):
        with _fresh_database(args.backend, args.db, args.workload) as url:
            measurement = run_workload(args.workload, url, args.execs)
        walls.append(measurement.wall_s)
        execs, steps = measurement.execs, measurement.steps
    # ru_maxrss is in kilobytes on Linux.
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = {"walls": walls, "execs": execs, "steps": steps, "peak_rss_mb": peak_kb / 1024}
    print(CHILD_MARKER + json.dumps(report), flush=True)
    return 0


# -- the parent: one subprocess per workload ----------------------------------


def _summarize(
    workload: str, backend: str, version: str, report: dict[str, object], runs: int
) -> Result:
    walls = [float(w) for w in report["walls"]]  # type: ignore[attr-defined]
    execs = int(report["execs"])  # type: ignore[call-overload]
    steps = int(report["steps"])  # type: ignore[call-overload]
    import statistics  # the parent's alone, as tomllib

    rates = [execs / wall for wall in walls]
    wall = statistics.median(walls)
    return Result(
        backend=backend,
        version=version,
        workload=workload,
        runs=runs,
        execs=execs,
        steps_per_exec=steps // execs if execs else 0,
        execs_per_s=statistics.median(rates),
        steps_per_s=statistics.median(steps / w for w in walls),
        execs_per_s_min=min(rates),
        execs_per_s_max=max(rates),
        wall_s=wall,
        peak_rss_mb=float(report["peak_rss_mb"]),  # type: ignore[arg-type]
    )


def _run_child(
    workload: str, args: argparse.Namespace, db: str | None, runs: int | None = None
) -> dict[str, object]:
    execs = args.execs if args.execs is not None else DEFAULT_EXECS[workload]
    if workload == "W2":
        execs = 1  # W2 is one Map execution by definition
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--workload",
        workload,
        "--backend",
        args.backend,
        "--execs",
        str(execs),
        "--runs",
        str(runs or args.runs),
    ]
    if db is not None:
        argv += ["--db", db]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
    for line in done.stdout.splitlines():
        if line.startswith(CHILD_MARKER):
            report: dict[str, object] = json.loads(line[len(CHILD_MARKER) :])
            return report
    sys.stderr.write(done.stderr)
    raise SystemExit(f"workload {workload} on {args.backend} failed (exit {done.returncode})")


@contextmanager
def _server_url(args: argparse.Namespace) -> Iterator[str | None]:
    """Where the children find their database: --db, or a durable throwaway PostgreSQL."""
    if args.backend == "sqlite" or args.db is not None:
        yield args.db
        return
    from benchmarks import pgserver

    server = pgserver.start(fsync=not args.fsync_off)
    try:
        yield server.admin_url
    finally:
        server.stop()


def format_peer_ratio(result: Result, peer: Result, pairs: Sequence[float]) -> str:
    """The RATIO line of Stepwise over a peer on one workload, measured in one run.

    `pairs` are Stepwise's steps/s over the peer's in each pair of runs made
    back to back (A B A B …); the line gives their median and spread, so a
    machine whose speed drifts during the run moves both sides of a pair.
    """
    import statistics

    ratio = statistics.median(pairs) if pairs else 0.0
    spread = f"{min(pairs):.3f}..{max(pairs):.3f}" if pairs else "0..0"
    return (
        f"RATIO workload={result.workload} backend={result.backend} "
        f"stepwise_per_{peer.peer}={ratio:.3f} pairs={len(pairs)} pair_spread={spread}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workload", choices=[*WORKLOADS, "startup", "all"], default="all")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--db",
        help="sqlite: a file URL whose directory holds the per-run files; "
        "postgres: a server URL allowed to CREATE DATABASE (default: a durable throwaway server)",
    )
    parser.add_argument(
        "--execs",
        type=int,
        help="executions per run (default: W1/W1i/W1c 200, W3 1000, ceiling 2000 rows; "
        "W2 is always 1)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run DBOS Transact and Restate on W1 and W2, paired with Stepwise's W1, W1i "
        "and W2 (postgres only; their own venvs under benchmarks/.peers, made on first use)",
    )
    parser.add_argument(
        "--fsync-off",
        action="store_true",
        help="start the throwaway PostgreSQL with fsync off (every line then says fsync=off)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


@dataclass
class _Paired:
    """Stepwise's runs of each workload paired with one peer workload, and each peer's, in turn."""

    peer_workload: str
    stepwise: dict[str, list[dict[str, object]]]
    peers: dict[str, list[dict[str, object]]]


def _available_peers() -> list[Peer]:
    """The peers whose environments exist or could be made; a SKIP line for each other."""
    available = []
    for name, peer in PEERS.items():
        try:
            ensure(peer)
        except PeerUnavailable as exc:
            print(f"SKIP peer={name}: {exc}", flush=True)
            continue
        available.append(peer)
    return available


def _run_paired(
    workloads: Sequence[str], args: argparse.Namespace, db: str, available: list[Peer]
) -> _Paired:
    """Run each of `workloads` for Stepwise, then each peer: one run each a turn, `args.runs` turns.

    `workloads` share one peer workload (PAIRED_WITH), which each peer runs once a turn.
    """
    peer_workload = PAIRED_WITH[workloads[0]]
    execs = 1 if peer_workload == "W2" else (args.execs or DEFAULT_EXECS[peer_workload])
    paired = _Paired(
        peer_workload, {w: [] for w in workloads}, {peer.name: [] for peer in available}
    )
    for _ in range(args.runs):
        for workload in workloads:
            paired.stepwise[workload].append(_run_child(workload, args, db, runs=1))
        for peer in available:
            paired.peers[peer.name].append(run_peer(peer, peer_workload, execs, 1, db))
    return paired


def pair_ratios(
    ours: Sequence[dict[str, object]], theirs: Sequence[dict[str, object]]
) -> list[float]:
    """Stepwise's speed over a peer's in each turn: the peer's one wall over ours."""
    return [
        float(peer["walls"][0]) / float(stepwise["walls"][0])  # type: ignore[index]
        for stepwise, peer in zip(ours, theirs, strict=True)
    ]


def _peer_results(
    args: argparse.Namespace, paired: _Paired, available: list[Peer], fsync: str
) -> list[tuple[Result, dict[str, list[float]]]]:
    """Print each peer's RESULT line; return it with its pair ratios per Stepwise workload."""
    measured: list[tuple[Result, dict[str, list[float]]]] = []
    for peer in available:
        report = _merge(paired.peers[peer.name])
        result = _summarize(
            paired.peer_workload, args.backend, str(report["version"]), report, args.runs
        )
        # Restate keeps its journal in its own log and RocksDB, not in PostgreSQL.
        backend = args.backend if peer.uses_postgres else "rocksdb"
        result = replace(
            result, peer=peer.name, backend=backend, fsync=fsync if peer.uses_postgres else ""
        )
        print(format_result(result), flush=True)
        pairs = {
            workload: pair_ratios(runs, paired.peers[peer.name])
            for workload, runs in paired.stepwise.items()
        }
        measured.append((result, pairs))
    return measured


def _merge(reports: list[dict[str, object]]) -> dict[str, object]:
    walls = [float(w) for r in reports for w in r["walls"]]  # type: ignore[attr-defined]
    peak = max(float(r["peak_rss_mb"]) for r in reports)  # type: ignore[arg-type]
    return {**reports[-1], "walls": walls, "peak_rss_mb": peak}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print SERVER, RESULT, STARTUP, then RATIO lines.

    RATIO lines: each workload over the ceiling when the ceiling ran; with
    `--peers`, Stepwise over each peer and each peer over the ceiling.
    Exits non-zero (SystemExit) when a workload fails or returns a wrong output.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.runs < 1 or (args.execs is not None and args.execs < 1):
        raise SystemExit("--runs and --execs must be at least 1")
    if args.peers and args.backend != "postgres":
        parser.error("--peers runs on PostgreSQL: add --backend postgres")
    if args.child:
        return _child(args)
    from benchmarks.startup import compile_project

    compile_project()
    if args.workload == "all":
        workloads = list(WORKLOADS)
    elif args.workload == "startup":
        workloads = []
    else:
        workloads = [args.workload]
    if args.peers:
        # A peer's figure is read beside Stepwise's and the ceiling's, measured in this run.
        workloads = [w for w in WORKLOADS if w in {*workloads, "W1", "W2", "ceiling"}]
    version = stepwise_version()
    results: dict[str, Result] = {}
    peer_results: list[tuple[Result, dict[str, list[float]]]] = []
    paired_sets: dict[str, _Paired] = {}
    fsync = ""
    with _server_url(args) as db:
        if args.backend == "postgres" and db is not None:
            from benchmarks import pgserver

            values = pgserver.settings(db)
            fsync = values["fsync"]
            print(pgserver.format_server(values), flush=True)
        available = _available_peers() if args.peers else []
        for workload in workloads:
            paired = None
            peer_workload = PAIRED_WITH.get(workload)
            if available and db is not None and peer_workload in PEER_WORKLOADS:
                if peer_workload not in paired_sets:
                    group = [w for w in workloads if PAIRED_WITH.get(w) == peer_workload]
                    paired_sets[peer_workload] = _run_paired(group, args, db, available)
                paired = paired_sets[peer_workload]
                report = _merge(paired.stepwise[workload])
            else:
                report = _run_child(workload, args, db)
            result = _summarize(workload, args.backend, version, report, args.runs)
            if result.steps_per_exec != STEPS_PER_EXEC[workload]:
                raise SystemExit(f"{workload}: {result.steps_per_exec} steps per execution")
            result = replace(result, fsync=fsync)
            results[workload] = result
            print(format_result(result), flush=True)
            if paired is not None and workload == list(paired.stepwise)[-1]:
                # Once the last Stepwise workload of the set is printed: the peers' follow.
                peer_results += _peer_results(args, paired, available, fsync)
    if args.workload in ("all", "startup"):
        # A small process of its own measures them: see benchmarks/startup.py.
        startup = [sys.executable, str(REPO / "benchmarks" / "startup.py")]
        done = subprocess.run(
            [*startup, "--runs", str(max(args.runs, 3))],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"start-up figures failed: {done.stderr[-2000:]}")
        print(done.stdout, end="", flush=True)
    ceiling = results.get("ceiling")
    if ceiling is not None:
        for workload, result in results.items():
            if workload != "ceiling":
                print(format_ratio(result, ceiling), flush=True)
    for peer, pairs_by_workload in peer_results:
        for workload, pairs in pairs_by_workload.items():
            print(format_peer_ratio(results[workload], peer, pairs), flush=True)
        if ceiling is not None:
            print(format_ratio(peer, ceiling), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
