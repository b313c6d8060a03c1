"""The README's benchmark table in one command: run every benchmark it needs, print the table.

``python benchmarks/table.py [--runs 3] [--rounds 2] [--out FILE]`` runs, in
turn, ``run.py --workload all --backend postgres --peers`` (PostgreSQL with
fsync on, DBOS Transact, Restate, the ceiling, start-up), ``run.py
--workload all --backend sqlite`` (W3's row) and ``scaling.py --workers
1,2,4`` (the workers row), echoes every line they print (and keeps them in
`--out`), then prints the Markdown table of README.md's "Benchmarks"
section — each figure beside DBOS's, Restate's and the ceiling's, with
issue 19's targets as a column — ready to paste. `render()` builds the
table from those lines alone, so the table can be made again from a saved
log without measuring anything.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["main", "parse_line", "render"]

HERE = Path(__file__).resolve().parent

TARGETS = {
    "W1": "≥ 3× DBOS (aim 6×)",
    "W1i": "≥ 3× DBOS (aim 6×)",
    "W1c": "≥ 5,000",
    "W2": "≤ 25 ms",
    "W3": "≥ 20,000",
    "help": "≤ 0.15 s",
    "run-hello": "≤ 0.5 s",
    "rss": "≤ 60 MB",
    "workers": "grows; say where it saturates",
}


def parse_line(line: str) -> tuple[str, dict[str, str]] | None:
    """A benchmark line's kind and key=value fields; None for any other line."""
    kind, _, rest = line.strip().partition(" ")
    if not kind.isupper() or "=" not in rest:
        return None
    fields = {}
    for part in rest.split():
        key, sep, value = part.partition("=")
        if sep:
            fields[key] = value
    return kind, fields


def _num(value: str, digits: int = 0) -> str:
    return f"{float(value):,.{digits}f}"


def render(lines: Iterable[str]) -> str:
    """The README table for the benchmark lines in `lines` (missing figures print as —)."""
    results: dict[tuple[str, str], dict[str, str]] = {}
    ratios: dict[tuple[str, str], dict[str, str]] = {}
    startups: dict[str, dict[str, str]] = {}
    scaling: dict[str, dict[str, str]] = {}
    server: dict[str, str] = {}
    for line in lines:
        parsed = parse_line(line)
        if parsed is None:
            continue
        kind, fields = parsed
        if kind == "RESULT":
            peer = fields.get("peer", "?").split("-")[0]
            backend = fields.get("peer", "?").partition("-")[2]
            key = "W3-sqlite" if backend == "sqlite" else fields.get("workload", "?")
            if backend == "sqlite" and fields.get("workload") == "ceiling":
                key = "ceiling-sqlite"
            results[(peer, key)] = fields
        elif kind == "RATIO":
            for name in ("dbos", "restate"):
                if f"stepwise_per_{name}" in fields:
                    ratios[(name, fields["workload"])] = fields
        elif kind == "STARTUP" and fields.get("command") not in startups:
            startups[fields.get("command", "?")] = fields
        elif kind == "SCALING_MEDIAN":
            scaling[fields.get("workers", "?")] = fields
        elif kind == "SERVER":
            server = fields

    def result(peer: str, workload: str) -> dict[str, str] | None:
        # The peers have no inline variant: W1i is paired with their W1 runs (run.py PAIRED_WITH).
        if peer != "stepwise" and workload == "W1i":
            workload = "W1"
        return results.get((peer, workload))

    def rate(peer: str, workload: str) -> str:
        found = result(peer, workload)
        return _num(found["steps_per_s"]) if found else "—"

    def wall_ms(peer: str, workload: str) -> str:
        found = results.get((peer, workload))
        return f"{float(found['wall_s']) * 1000:,.0f} ms" if found else "—"

    def versus(peer: str, workload: str) -> str:
        found = ratios.get((peer, workload))
        if not found:
            return "—"
        return f"{float(found[f'stepwise_per_{peer}']):.2f}× ({found['pair_spread']})"

    ceiling = results.get(("stepwise", "ceiling"))

    def per_ceiling(workload: str) -> str:
        if not ceiling:
            return "—"
        base = float(ceiling["steps_per_s"])
        cells = []
        for peer in ("stepwise", "dbos", "restate"):
            found = result(peer, workload)
            cells.append(f"{float(found['steps_per_s']) / base:.2f}" if found else "—")
        return ", ".join(cells)

    def startup(command: str) -> str:
        found = startups.get(command)
        if not found:
            return "—"
        wall, cpu = float(found["wall_s"]), float(found["cpu_s"])
        return f"{wall:.2f} s (CPU {cpu:.2f} s), {found['peak_rss_mb']} MiB"

    def rss(peer: str) -> str:
        found = results.get((peer, "W1"))
        return f"{found['peak_rss_mb']} MiB" if found else "—"

    w3 = results.get(("stepwise", "W3-sqlite"))
    sqlite_ceiling = results.get(("stepwise", "ceiling-sqlite"))
    w3_ratio = (
        f"{float(w3['steps_per_s']) / float(sqlite_ceiling['steps_per_s']):.3f} of SQLite's "
        f"{_num(sqlite_ceiling['steps_per_s'])}"
        if w3 and sqlite_ceiling
        else "—"
    )
    workers = " / ".join(_num(scaling[n]["steps_per_s"]) for n in sorted(scaling, key=int))
    factors = " / ".join(f"{float(scaling[n]['vs_first']):.2f}" for n in sorted(scaling, key=int))
    counts = " / ".join(sorted(scaling, key=int))
    rows = [
        "| figure | Stepwise | DBOS Transact | Restate (own store) | Stepwise ÷ DBOS "
        "| Stepwise ÷ Restate | ÷ ceiling (Stepwise, DBOS, Restate) | issue 19 target |",
        "|---|---|---|---|---|---|---|---|",
        f"| ceiling: raw INSERT+COMMIT, commits/s (fsync={server.get('fsync', '?')}) "
        f"| {rate('stepwise', 'ceiling')} | same server | — | — | — | 1 | — |",
        f"| W1: 200 × 10 sequential Tasks, steps/s | {rate('stepwise', 'W1')} "
        f"| {rate('dbos', 'W1')} | {rate('restate', 'W1')} | {versus('dbos', 'W1')} "
        f"| {versus('restate', 'W1')} | {per_ceiling('W1')} | {TARGETS['W1']} |",
        f"| W1i: W1 with the handler registered inline=True, steps/s | {rate('stepwise', 'W1i')} "
        f"| {rate('dbos', 'W1i')} | {rate('restate', 'W1i')} | {versus('dbos', 'W1i')} "
        f"| {versus('restate', 'W1i')} | {per_ceiling('W1i')} | {TARGETS['W1i']} |",
        f"| W1c: 200 started at once, one worker, steps/s | {rate('stepwise', 'W1c')} "
        f"| — | — | — | — | {per_ceiling('W1c').split(',')[0]} | {TARGETS['W1c']} |",
        f"| W2: one Map of 100 Tasks, wall | {wall_ms('stepwise', 'W2')} "
        f"| {wall_ms('dbos', 'W2')} | {wall_ms('restate', 'W2')} | {versus('dbos', 'W2')} "
        f"| {versus('restate', 'W2')} | {per_ceiling('W2')} | {TARGETS['W2']} |",
        f"| W3: 1,000 × 20 Pass/Choice on SQLite, transitions/s "
        f"| {_num(w3['steps_per_s']) if w3 else '—'} | — | — | — | — | {w3_ratio} "
        f"| {TARGETS['W3']} |",
        f"| `stepwise --help`, wall | {startup('help')} | — | — | — | — | — | {TARGETS['help']} |",
        f"| `stepwise run examples/hello.json`, wall | {startup('run-hello')} "
        f"| — | — | — | — | — | {TARGETS['run-hello']} |",
        f"| peak RSS, W1 | {rss('stepwise')} | {rss('dbos')} | {rss('restate')} "
        f"| — | — | — | {TARGETS['rss']} |",
        f"| workers on one PostgreSQL: {counts or '—'}, steps/s | {workers or '—'} "
        f"(× {factors or '—'}) | — | — | — | — | — | {TARGETS['workers']} |",
    ]
    return "\n".join(rows) + "\n"


def _run(argv: list[str], log: list[str]) -> None:
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=HERE.parent) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            log.append(line)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:3])} failed (exit {process.returncode})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks the README's table needs; print their lines, then the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write every benchmark line here")
    parser.add_argument("--from-log", type=Path, help="make the table from a saved log only")
    args = parser.parse_args(argv)
    log: list[str] = []
    if args.from_log:
        log = args.from_log.read_text().splitlines()
    else:
        python = sys.executable
        run = str(HERE / "run.py")
        runs = str(args.runs)
        _run([python, run, "--workload", "all", "--backend", "postgres", "--peers",
              "--runs", runs], log)  # fmt: skip
        _run([python, run, "--workload", "all", "--backend", "sqlite", "--runs", runs], log)
        _run([python, str(HERE / "scaling.py"), "--workers", "1,2,4", "--execs", "600",
              "--rounds", str(args.rounds)], log)  # fmt: skip
        if args.out:
            args.out.write_text("".join(log))
    print()
    print(render(log), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
