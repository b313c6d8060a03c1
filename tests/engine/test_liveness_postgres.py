"""Workers and commands outlive PostgreSQL: crash-restarts under load, a 30 s stop, `run`.

A private PostgreSQL server (tests/engine/pg.py) is crash-restarted in
immediate mode three times while two `stepwise worker` processes (16
concurrent executions each, no supervisor) run 200 executions of ten
Tasks; then stopped for 30 s mid-run. Every execution must succeed, both
workers must still be alive at the end, no step may have run under two
idempotency keys, and each worker must log one line when an outage starts
and one when it ends — never a traceback. `stepwise run` across a restart
finishes its one execution (exit 0) instead of a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import Engine
from tests.engine import pg
from tests.engine.liveness import (
    OUTAGE_ENDED,
    OUTAGE_STARTED,
    REPO,
    WorkerProcess,
    all_records,
    assert_one_key_per_step,
    cli_env,
    machine,
    running_count,
    task_runs,
    wait_until,
)


@pytest.fixture(scope="module")
def private_server() -> Iterator[pg.PostgresServer]:
    """A PostgreSQL server of this module's own, so crashing it disturbs no other test."""
    with pg.private_server() as server:
        yield server


@pytest.fixture
def url(private_server: pg.PostgresServer, request: pytest.FixtureRequest) -> str:
    return private_server.create_database(f"liveness_{request.node.name[:40].lower()}")


def _start(url: str, count: int, tasks: int) -> None:
    with Engine(url, worker=False) as engine:
        engine.create_state_machine_sync("chain", machine(tasks))
        for i in range(count):
            engine.start_sync("chain", {"v": 0}, name=f"e{i}")


def _assert_outages_logged(worker: WorkerProcess, at_most: int) -> None:
    # A worker still backing off when the other finished the work logs its
    # "available again" line at its next attempt (within the backoff cap).
    wait_until(
        lambda: len(worker.lines(OUTAGE_ENDED)) == len(worker.lines(OUTAGE_STARTED)), timeout=60
    )
    started, ended = worker.lines(OUTAGE_STARTED), worker.lines(OUTAGE_ENDED)
    assert 1 <= len(started) <= at_most, worker.stderr
    assert len(ended) == len(started), worker.stderr
    assert "Traceback" not in worker.stderr, worker.stderr


def test_workers_outlive_three_crash_restarts_under_load(
    url: str, private_server: pg.PostgresServer, tmp_path: Path
) -> None:
    executions, tasks = 200, 10
    log = tmp_path / "runs.jsonl"
    _start(url, executions, tasks)
    workers = [WorkerProcess(url, log, tmp_path / f"worker{i}.err") for i in range(2)]
    try:
        for worker in workers:
            worker.wait_started()
        total = executions * tasks
        for fraction in (0.15, 0.4, 0.65):
            wait_until(lambda f=fraction: len(task_runs(log)) >= f * total, timeout=300)  # type: ignore[misc]
            private_server.restart()
        wait_until(lambda: running_count(url) == 0, timeout=400)
        assert all(worker.alive() for worker in workers), [w.stderr for w in workers]
        records = all_records(url)
        assert len(records) == executions
        for record in records:
            assert record.status == "SUCCEEDED", (record.name, record.error, record.cause)
            assert json.loads(record.output or "null") == {"v": tasks}
        assert_one_key_per_step(log)
        for worker in workers:
            _assert_outages_logged(worker, at_most=3)
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [w.stderr for w in workers]


def test_workers_outlive_postgres_stopped_for_30_seconds(
    url: str, private_server: pg.PostgresServer, tmp_path: Path
) -> None:
    executions, tasks = 40, 10
    log = tmp_path / "runs.jsonl"
    _start(url, executions, tasks)
    workers = [WorkerProcess(url, log, tmp_path / f"worker{i}.err") for i in range(2)]
    try:
        for worker in workers:
            worker.wait_started()
        wait_until(lambda: len(task_runs(log)) >= 60, timeout=300)
        private_server.halt()
        try:
            time.sleep(30)
            assert all(worker.alive() for worker in workers), [w.stderr for w in workers]
        finally:
            private_server.resume()
        wait_until(lambda: running_count(url) == 0, timeout=300)
        assert all(worker.alive() for worker in workers), [w.stderr for w in workers]
        assert all(r.status == "SUCCEEDED" for r in all_records(url))
        assert_one_key_per_step(log)
        for worker in workers:
            _assert_outages_logged(worker, at_most=1)
            seconds = worker.lines(OUTAGE_ENDED)[0].rsplit("after ", 1)[1].split(" s")[0]
            assert float(seconds) >= 25, worker.stderr  # one outage, as long as the stop
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [w.stderr for w in workers]


def test_run_finishes_its_execution_across_a_crash_restart(
    url: str, private_server: pg.PostgresServer, tmp_path: Path
) -> None:
    log = tmp_path / "runs.jsonl"
    definition = tmp_path / "chain.json"
    definition.write_text(json.dumps(machine(10)))
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "run",
            str(definition),
            "--input",
            '{"v": 0}',
            "--activities",
            "tests.engine.liveness_handlers",
            "--db",
            url,
        ],
        cwd=REPO,
        env=cli_env(log, STEPWISE_TEST_TASK_SECONDS="0.3", STEPWISE_RETRY_SECONDS="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(task_runs(log)) >= 3 or run.poll() is not None, timeout=120)
        private_server.restart()
        stdout, stderr = run.communicate(timeout=180)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 0, stderr
    assert json.loads(stdout) == {"v": 10}
    assert "Traceback" not in stderr, stderr
    records = all_records(url)
    assert len(records) == 1  # resumed, not started twice
    assert_one_key_per_step(log)
