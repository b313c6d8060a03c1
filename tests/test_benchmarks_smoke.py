"""Smoke tests of benchmarks/: every workload runs end to end at tiny sizes on both stores.

These check that the command works and reports what it ran — the RESULT
lines parse, carry the right counts, and RATIO lines follow — never how fast
anything was: speed is measured by running the benchmark, not by tests.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from benchmarks.run import (
    Result,
    format_peer_ratio,
    format_ratio,
    format_result,
    pair_ratios,
    parse_result,
)
from benchmarks.scaling import Point, format_point, parse_workers
from benchmarks.startup import Startup, format_startup
from benchmarks.table import parse_line, render
from benchmarks.workloads import (
    MAP_ITEMS,
    WorkloadFailed,
    increment,
    map_machine,
    pass_choice_chain,
    run_workload,
    task_chain,
)
from statemachine.build import load
from statemachine.model import MapState
from tests.engine import pg

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "benchmarks" / "run.py"
STEPS = {"W1": 10, "W1i": 10, "W1c": 10, "W2": 100, "W3": 20, "ceiling": 1}


def _bench(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(RUN), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def _check_output(lines: list[str], backend: str, execs: int) -> None:
    results = [parse_result(line) for line in lines if line.startswith("RESULT ")]
    ratios = [parse_result(line) for line in lines if line.startswith("RATIO ")]
    servers = [parse_result(line) for line in lines if line.startswith("SERVER ")]
    startups = [parse_result(line) for line in lines if line.startswith("STARTUP ")]
    assert len(lines) == len(results) + len(ratios) + len(servers) + len(startups), lines
    if backend == "postgres":
        # The figures say which durability they were measured with.
        assert len(servers) == 1 and servers[0]["fsync"] in ("on", "off")
        assert {r["fsync"] for r in results} == {servers[0]["fsync"]}
    else:
        assert servers == []
    # `--workload all` also times whole `stepwise` commands.
    assert [s["command"] for s in startups] == ["help", "run-hello"]
    for startup in startups:
        assert int(startup["runs"]) == 3
        assert float(startup["wall_s"]) > 0
        assert float(startup["cpu_s"]) > 0
        assert 5 < float(startup["peak_rss_mb"]) < 4096
    assert [r["workload"] for r in results] == ["W1", "W1i", "W1c", "W2", "W3", "ceiling"]
    for fields in results:
        workload = fields["workload"]
        assert fields["peer"] == f"stepwise-{backend}"
        assert fields["version"].startswith("0.")
        assert fields["runs"] == "1"
        assert fields["execs"] == str(1 if workload == "W2" else execs)
        assert fields["steps_per_exec"] == str(STEPS[workload])
        execs_per_s = float(fields["execs_per_s"])
        steps_per_s = float(fields["steps_per_s"])
        assert execs_per_s > 0
        assert steps_per_s == pytest.approx(
            execs_per_s * STEPS[workload], rel=0.01, abs=0.006 * STEPS[workload]
        )
        low, high = (float(x) for x in fields["execs_per_s_spread"].split(".."))
        # One run: the spread is that run alone.
        assert low == high == execs_per_s
        assert float(fields["wall_s"]) > 0
        assert 10 < float(fields["peak_rss_mb"]) < 4096
    ceiling = float(results[-1]["steps_per_s"])
    assert [r["workload"] for r in ratios] == ["W1", "W1i", "W1c", "W2", "W3"]
    for ratio, result in zip(ratios, results, strict=False):
        assert ratio["backend"] == backend
        assert float(ratio["steps_per_ceiling"]) == pytest.approx(
            float(result["steps_per_s"]) / ceiling, rel=0.05, abs=1e-4
        )


def test_every_workload_on_sqlite() -> None:
    _check_output(
        _bench("--workload", "all", "--backend", "sqlite", "--execs", "3", "--runs", "1"),
        "sqlite",
        3,
    )


def test_every_workload_on_postgres(postgres_server: pg.PostgresServer) -> None:
    lines = _bench(
        "--workload", "all", "--backend", "postgres", "--db", postgres_server.admin_url,
        "--execs", "3", "--runs", "1",
    )  # fmt: skip
    _check_output(lines, "postgres", 3)


def test_postgres_without_db_starts_its_own_durable_server() -> None:
    lines = _bench("--workload", "ceiling", "--backend", "postgres", "--execs", "5", "--runs", "2")
    assert len(lines) == 2
    server = parse_result(lines[0])
    # PostgreSQL's own durability defaults: a commit waits for its WAL flush.
    assert lines[0].startswith("SERVER ")
    assert (server["fsync"], server["synchronous_commit"], server["full_page_writes"]) == (
        "on",
        "on",
        "on",
    )
    fields = parse_result(lines[1])
    assert (fields["workload"], fields["runs"], fields["execs"]) == ("ceiling", "2", "5")
    assert fields["fsync"] == "on"


def test_fsync_off_is_labelled_on_every_line() -> None:
    lines = _bench(
        "--workload", "ceiling", "--backend", "postgres", "--execs", "5", "--runs", "1",
        "--fsync-off",
    )  # fmt: skip
    assert parse_result(lines[0])["fsync"] == "off"
    assert parse_result(lines[0])["synchronous_commit"] == "off"
    assert parse_result(lines[1])["fsync"] == "off"


def test_peers_need_postgres() -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--peers", "--backend", "sqlite"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--peers runs on PostgreSQL" in done.stderr


def test_one_workload_prints_no_ratio(tmp_path: Path) -> None:
    lines = _bench(
        "--workload", "W3", "--backend", "sqlite", "--db", f"sqlite:///{tmp_path / 'b.db'}",
        "--execs", "2", "--runs", "2",
    )  # fmt: skip
    assert len(lines) == 1
    fields = parse_result(lines[0])
    assert (fields["workload"], fields["runs"], fields["execs"]) == ("W3", "2", "2")
    # Each run used its own file, removed afterwards.
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_fail() -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--workload", "W9"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "invalid choice: 'W9'" in done.stderr


def test_result_line_round_trips() -> None:
    result = Result("sqlite", "0.1.0", "W1", 3, 200, 10, 20.0, 200.0, 18.5, 21.25, 10.0, 61.4)
    line = format_result(result)
    assert line == (
        "RESULT peer=stepwise-sqlite version=0.1.0 workload=W1 runs=3 execs=200 "
        "steps_per_exec=10 execs_per_s=20.00 steps_per_s=200.00 execs_per_s_spread=18.50..21.25 "
        "wall_s=10 peak_rss_mb=61.4"
    )
    assert parse_result(line)["execs_per_s_spread"] == "18.50..21.25"
    ceiling = Result("sqlite", "0.1.0", "ceiling", 3, 2000, 1, 800.0, 800.0, 700.0, 900.0, 2.5, 50)
    assert (
        format_ratio(result, ceiling) == "RATIO workload=W1 backend=sqlite steps_per_ceiling=0.2500"
    )
    dbos = Result(
        "postgres", "3.4.0", "W1", 3, 200, 10, 10.0, 100.0, 9.0, 11.0, 20.0, 66, "dbos", "on"
    )
    assert format_result(dbos).startswith("RESULT peer=dbos-postgres version=3.4.0 workload=W1")
    assert parse_result(format_result(dbos))["fsync"] == "on"
    # Stepwise over the peer: the median of the back-to-back pairs, and their spread.
    assert format_peer_ratio(result, dbos, [2.5, 1.5, 2.0]) == (
        "RATIO workload=W1 backend=sqlite stepwise_per_dbos=2.000 pairs=3 pair_spread=1.500..2.500"
    )
    assert format_ratio(dbos, ceiling) == (
        "RATIO workload=W1 backend=postgres peer=dbos steps_per_ceiling=0.1250"
    )
    with pytest.raises(ValueError, match="not a RESULT"):
        parse_result("hello world")
    with pytest.raises(ValueError, match="malformed field"):
        parse_result("RESULT peer")


def test_definitions_are_valid_asl_of_the_advertised_size() -> None:
    assert len(load(task_chain()).states) == 10
    # 20 chained states plus the Fail the Choices default to.
    assert len(load(pass_choice_chain()).states) == 21
    fan = load(map_machine()).states["Fan"]
    assert isinstance(fan, MapState) and fan.mode == "INLINE"
    assert list(fan.processor.states) == ["Add"]
    assert increment({"v": 41}) == {"v": 42}
    assert MAP_ITEMS == 100


@pytest.mark.parametrize("workload", ["W1", "W1i"])
def test_a_wrong_answer_fails_the_workload(
    workload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.workloads as workloads

    monkeypatch.setattr(workloads, "increment", lambda value: {"v": value["v"] + 2})
    with pytest.raises(WorkloadFailed, match=r"returned \{'v': 20\}, expected \{'v': 10\}"):
        run_workload(workload, f"sqlite:///{tmp_path / 'b.db'}", 1)


def test_w1i_runs_its_handler_inline_and_w1_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.workloads as workloads

    threads: dict[str, set[threading.Thread]] = {"W1": set(), "W1i": set()}
    running = ""

    def increment(value: dict[str, Any]) -> dict[str, Any]:
        threads[running].add(threading.current_thread())
        return {"v": value["v"] + 1}

    monkeypatch.setattr(workloads, "increment", increment)
    for running in ("W1", "W1i"):
        measurement = run_workload(running, f"sqlite:///{tmp_path / f'{running}.db'}", 2)
        assert (measurement.execs, measurement.steps) == (2, 20)
    # run_workload's event loop runs on this thread: only an inline handler runs here.
    assert threads["W1i"] == {threading.current_thread()}
    assert threads["W1"] and threading.current_thread() not in threads["W1"]


def test_pair_ratios_divide_the_peer_wall_by_ours_turn_by_turn() -> None:
    ours = [{"walls": [2.0]}, {"walls": [4.0]}]
    theirs = [{"walls": [6.0]}, {"walls": [4.0]}]
    assert pair_ratios(ours, theirs) == [3.0, 1.0]
    with pytest.raises(ValueError):
        pair_ratios(ours, theirs[:1])


def test_startup_and_scaling_lines_parse() -> None:
    line = format_startup(Startup("help", 5, 0.1234, 0.1, 0.2, 19.4, 0.0871))
    assert line == (
        "STARTUP command=help runs=5 wall_s=0.123 wall_s_spread=0.100..0.200 cpu_s=0.087 "
        "peak_rss_mb=19.4"
    )
    assert parse_result(line)["wall_s"] == "0.123"
    point = Point(2, 600, steps=4800, window_s=4.0, worker_cpu_s=3.0, pg_cpu_s=1.0)
    point.machine_busy, point.commits = 0.95, 800
    point.waits = {"CPU:running": 1.5, "IO:WALSync": 0.25}
    scaling = format_point(point, baseline=800.0)
    assert scaling == (
        "SCALING workers=2 execs=600 steps=4800 window_s=4.000 steps_per_s=1200.0 vs_first=1.50 "
        "worker_cpu_pct=75 pg_cpu_pct=25 machine_cpu_pct=95 commits_per_s=200 "
        "steps_per_commit=6.00 new_sessions_per_s=0.0 waits=CPU:running:1.50,IO:WALSync:0.25"
    )
    assert parse_workers("1,2,4") == [1, 2, 4]
    with pytest.raises(ValueError, match="positive integers"):
        parse_workers("0,2")


def test_the_readme_table_is_made_from_the_benchmark_lines() -> None:
    lines = [
        "SERVER backend=postgres server_version=15.18 fsync=on synchronous_commit=on "
        "full_page_writes=on",
        "RESULT peer=stepwise-postgres version=0.1.0 workload=W1 runs=3 execs=200 "
        "steps_per_exec=10 execs_per_s=30 steps_per_s=300 execs_per_s_spread=29..31 wall_s=6.6 "
        "peak_rss_mb=66 fsync=on",
        "RESULT peer=dbos-postgres version=3.4.0 workload=W1 runs=3 execs=200 steps_per_exec=10 "
        "execs_per_s=10 steps_per_s=100 execs_per_s_spread=9..11 wall_s=20 peak_rss_mb=67 fsync=on",
        "RESULT peer=stepwise-postgres version=0.1.0 workload=W1i runs=3 execs=200 "
        "steps_per_exec=10 execs_per_s=40 steps_per_s=400 execs_per_s_spread=39..41 wall_s=5 "
        "peak_rss_mb=66 fsync=on",
        "RESULT peer=stepwise-postgres version=0.1.0 workload=W2 runs=3 execs=1 "
        "steps_per_exec=100 execs_per_s=20 steps_per_s=2000 execs_per_s_spread=19..21 "
        "wall_s=0.05 peak_rss_mb=66 fsync=on",
        "RESULT peer=stepwise-postgres version=0.1.0 workload=ceiling runs=3 execs=2000 "
        "steps_per_exec=1 execs_per_s=1000 steps_per_s=1000 execs_per_s_spread=900..1100 "
        "wall_s=2 peak_rss_mb=60 fsync=on",
        "RESULT peer=stepwise-sqlite version=0.1.0 workload=W3 runs=3 execs=1000 "
        "steps_per_exec=20 execs_per_s=100 steps_per_s=2000 execs_per_s_spread=99..101 "
        "wall_s=10 peak_rss_mb=70",
        "RESULT peer=stepwise-sqlite version=0.1.0 workload=ceiling runs=3 execs=2000 "
        "steps_per_exec=1 execs_per_s=40000 steps_per_s=40000 execs_per_s_spread=1..2 "
        "wall_s=0.05 peak_rss_mb=60",
        "STARTUP command=help runs=3 wall_s=0.120 wall_s_spread=0.1..0.2 cpu_s=0.080 "
        "peak_rss_mb=19",
        "RATIO workload=W1 backend=postgres stepwise_per_dbos=3.000 pairs=3 "
        "pair_spread=2.500..3.500",
        "RATIO workload=W1i backend=postgres stepwise_per_dbos=4.000 pairs=3 "
        "pair_spread=3.500..4.500",
        "SCALING_MEDIAN workers=1 rounds=2 steps_per_s=900.0 vs_first=1.00 spread=1..2",
        "SCALING_MEDIAN workers=4 rounds=2 steps_per_s=1800.0 vs_first=2.00 spread=1..2",
        "SKIP peer=restate: npm is not installed",
    ]
    table = render(lines)
    rows = {row.split(" | ")[0]: row for row in table.splitlines()}
    assert (
        "| 300 | 100 | — | 3.00× (2.500..3.500) | — | 0.30, 0.10, — |"
        in rows["| W1: 200 × 10 sequential Tasks, steps/s"]
    )
    # W1i's row comes right under W1's, beside the same DBOS runs, with its own pairs.
    names = list(rows)
    w1i = "| W1i: W1 with the handler registered inline=True, steps/s"
    assert names.index(w1i) == names.index("| W1: 200 × 10 sequential Tasks, steps/s") + 1
    assert rows[w1i].endswith(
        "| 400 | 100 | — | 4.00× (3.500..4.500) | — | 0.40, 0.10, — | ≥ 3× DBOS (aim 6×) |"
    )
    assert "| 50 ms |" in rows["| W2: one Map of 100 Tasks, wall"]
    assert (
        "0.050 of SQLite's 40,000" in rows["| W3: 1,000 × 20 Pass/Choice on SQLite, transitions/s"]
    )
    assert "0.12 s (CPU 0.08 s), 19 MiB" in rows["| `stepwise --help`, wall"]
    assert "900 / 1,800 (× 1.00 / 2.00)" in rows["| workers on one PostgreSQL: 1 / 4, steps/s"]
    assert "(fsync=on)" in table
    assert parse_line("hello world") is None


def test_scaling_runs_worker_processes_against_one_postgres(
    postgres_server: pg.PostgresServer,
) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "scaling.py"), "--db",
         postgres_server.admin_url, "--workers", "1,2", "--execs", "300"],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("SERVER backend=postgres ")
    points = [parse_line(line) for line in lines if line.startswith("SCALING ")]
    assert [p[1]["workers"] for p in points if p] == ["1", "2"]
    for point in points:
        assert point is not None
        # Every execution ended (the script checks each succeeded); the window saw steps.
        assert point[1]["execs"] == "300"
        assert int(point[1]["steps"]) > 0
    medians = [parse_line(line) for line in lines if line.startswith("SCALING_MEDIAN ")]
    assert [m[1]["workers"] for m in medians if m] == ["1", "2"]
    assert lines[-1].startswith("CEILING commits_per_s=")
