"""Queues: a worker claims only its queue's executions, and `stepwise run` keeps its own.

Both stores. The store's claim filters by queue; migration 5 puts every
execution of an older database on ``default``; two in-process engines on
different queues each run only their own; ``start --queue`` and
``describe`` through the CLI. Then real processes: `stepwise run` beside
`stepwise worker` processes that lack its handlers never loses its
execution to them, and a `run` killed with SIGKILL is finished by ``run
--resume`` (or by a worker on its private queue) without running a
recorded step again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from activities import Registry
from engine import Engine
from engine.errors import InvalidName
from engine.store import DEFAULT_QUEUE, Store
from engine.store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.engine.processes import wait_until

REPO = Path(__file__).resolve().parents[2]
HANDLERS = "tests.engine.queue_handlers"
SUCCEED = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
# Needs a handler only the `run` process has (tests/engine/queue_handlers.py).
COUNT_TWICE = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Task", "Resource": "queue_count", "Next": "Second"},
        "Second": {"Type": "Task", "Resource": "queue_count", "End": True},
    },
}
# A step that is recorded, then one that hangs the first time it runs.
COUNT_THEN_HANG = {
    "StartAt": "Count",
    "States": {
        "Count": {"Type": "Task", "Resource": "queue_count", "Next": "Hang"},
        "Hang": {
            "Type": "Task",
            "Resource": "queue_hang_once",
            "ResultPath": "$.hang",
            "End": True,
        },
    },
}


def cli(args: Sequence[str], *, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn(args: Sequence[str], stderr: Path) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "engine.cli", *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def describe(url: str, execution: str) -> dict[str, Any]:
    result = cli(["describe", execution, "--db", url, "-o", "json"])
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture
def workers_without_handlers(
    db_url: str, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two `stepwise worker` processes on the default queue, with none of the test's handlers."""
    logs = [tmp_path / f"worker-{i}.err" for i in range(2)]
    procs = [spawn(["worker", "--db", db_url, "--concurrency", "4"], log) for log in logs]
    try:
        for log in logs:
            wait_until(lambda log=log: b"started" in log.read_bytes(), timeout=120)
        yield procs
        for proc in procs:
            assert proc.poll() is None, "a worker died during the test"
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- the store and the engine ------------------------------------------------------


def test_a_claim_takes_only_its_queues_work(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:
        engine.create_state_machine_sync("m", SUCCEED)
        gpu = engine.start_sync("m", name="on-gpu", queue="gpu")
        plain = engine.start_sync("m", name="on-default")
        assert (gpu.queue, plain.queue) == ("gpu", DEFAULT_QUEUE)
        store = engine.store
        now = datetime.now(UTC)
        taken = store.claim_due("w1", limit=10, lease_seconds=30, now=now)
        assert [execution_id for execution_id, _ in taken] == [plain.execution_id]
        taken = store.claim_due("w2", limit=10, lease_seconds=30, now=now, queue="gpu")
        assert [execution_id for execution_id, _ in taken] == [gpu.execution_id]
        assert store.claim_due("w3", limit=10, lease_seconds=30, now=now, queue="none") == []
        assert engine.describe_sync("on-gpu").queue == "gpu"
        with pytest.raises(InvalidName):
            engine.start_sync("m", queue="no/slashes")
    with pytest.raises(InvalidName):
        Engine(db_url, queue="two words")


def test_two_engines_on_two_queues_each_run_only_their_own(db_url: str) -> None:
    # Only the "special" engine has the handler: an execution on its queue
    # taken by the default engine's worker would fail.
    special = Registry()
    special.register("special", lambda value: {"ran": "special"})
    with (
        Engine(db_url, queue="special", registry=special, poll_seconds=0.1) as owner,
        Engine(db_url, poll_seconds=0.1) as other,
    ):
        other.create_state_machine_sync(
            "needs-special",
            {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "special", "End": True}}},
        )
        other.create_state_machine_sync("plain", SUCCEED)
        on_special = [
            other.start_sync("needs-special", name=f"s{i}", queue="special") for i in range(5)
        ]
        on_default = [other.start_sync("plain", name=f"p{i}") for i in range(5)]
        for record in on_special:
            done = other.wait_sync(record, timeout=120)
            assert (done.status, done.output) == ("SUCCEEDED", '{"ran":"special"}')
        for record in on_default:
            assert other.wait_sync(record, timeout=120).status == "SUCCEEDED"
        # The owner starts on its own queue unless told otherwise.
        assert owner.start_sync("plain", name="p-owner").queue == "special"


def test_engine_run_uses_a_private_queue_and_resume_returns_a_closed_run(db_url: str) -> None:
    with Engine(db_url, worker=False) as engine:
        first = engine.run_sync(SUCCEED, name="r1")
        second = engine.run_sync(SUCCEED, name="r2")
        assert first.status == second.status == "SUCCEEDED"
        assert first.queue.startswith("run-") and second.queue.startswith("run-")
        assert first.queue != second.queue
        assert engine.resume_sync(first.execution_id) == first


def test_an_older_database_puts_its_executions_on_the_default_queue(db_url: str) -> None:
    # Build the schema of version 4 with one queued execution, by hand.
    raw = Store(db_url, auto_migrate=False)
    raw.close()
    engine = sa.create_engine(db_url)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                    "applied_at TIMESTAMP NOT NULL)"
                )
            )
            for version, _description, step in MIGRATIONS[:4]:
                step(conn)
                conn.execute(
                    sa.text("INSERT INTO schema_migrations VALUES (:v, :t)"),
                    {"v": version, "t": now},
                )
            conn.execute(
                sa.text(
                    "INSERT INTO state_machines (id, name, type, created_at) "
                    "VALUES (1, 'old', 'STANDARD', :t)"
                ),
                {"t": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO state_machine_versions (machine_id, version, definition, "
                    "content_hash, machine_type, created_at) "
                    "VALUES (1, 1, :d, 'h', 'STANDARD', :t)"
                ),
                {"d": json.dumps(SUCCEED), "t": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO executions (execution_id, name, machine, version, status, input, "
                    "start_date, trace_id, stop_requested, last_event_id) "
                    "VALUES ('arn:old', 'old-1', 'old', 1, 'RUNNING', '{}', :t, :trace, :f, 1)"
                ),
                {"t": now, "trace": "0" * 32, "f": False},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO history_events (execution_id, event_id, previous_event_id, "
                    "type, timestamp, details) "
                    "VALUES ('arn:old', 1, 0, 'ExecutionStarted', :t, '{\"input\": \"{}\"}')"
                ),
                {"t": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO work_queue (execution_id, due_at, wakeups, wakeups_seen) "
                    "VALUES ('arn:old', :t, 0, 0)"
                ),
                {"t": now},
            )
    finally:
        engine.dispose()
    with Engine(db_url, poll_seconds=0.1) as upgraded:
        assert upgraded.store.schema_version() == SCHEMA_VERSION
        assert upgraded.describe_sync("arn:old").queue == DEFAULT_QUEUE
        # A default worker (the engine's own) claims and finishes it.
        assert upgraded.wait_sync("arn:old", timeout=120).status == "SUCCEEDED"


# -- the CLI ---------------------------------------------------------------------------


def test_start_queue_is_described_and_a_bad_queue_name_is_refused(
    db_url: str, tmp_path: Path
) -> None:
    definition = tmp_path / "wait.json"
    definition.write_text(
        json.dumps(
            {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}
        )
    )
    assert cli(["machines", "create", "holder", str(definition), "--db", db_url]).returncode == 0
    started = cli(["start", "holder", "--name", "e1", "--queue", "batch", "--db", db_url])
    assert started.returncode == 0, started.stderr
    assert describe(db_url, "e1")["queue"] == "batch"
    text = cli(["describe", "e1", "--db", db_url])
    assert "queue: batch" in text.stdout.splitlines()
    plain = cli(["start", "holder", "--name", "e2", "--db", db_url])
    assert plain.returncode == 0, plain.stderr
    assert describe(db_url, "e2")["queue"] == "default"
    bad = cli(["start", "holder", "--queue", "no spaces", "--db", db_url])
    assert bad.returncode == 2
    assert bad.stderr.startswith("stepwise: error: InvalidName: Invalid Name: 'no spaces'")
    assert "Traceback" not in bad.stderr


def test_run_resume_refuses_what_would_change_the_execution(
    sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(SUCCEED))
    both = cli(["run", str(path), "--resume", "x", "--db", sqlite_url])
    assert both.returncode == 2
    assert "--resume continues an execution as it was started; drop FILE" in both.stderr
    neither = cli(["run", "--db", sqlite_url])
    assert neither.returncode == 2
    assert "missing argument FILE (or --resume EXEC)" in neither.stderr
    assert cli(["run", str(path), "--name", "done", "--db", sqlite_url]).returncode == 0
    again = cli(["run", "--resume", "done", "--db", sqlite_url, "-o", "json"])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "SUCCEEDED"
    unknown = cli(["run", "--resume", "nope", "--db", sqlite_url])
    assert unknown.returncode == 2
    assert "ExecutionDoesNotExist" in unknown.stderr


# -- real processes --------------------------------------------------------------------


def test_run_beside_workers_without_its_handlers_keeps_its_execution(
    db_url: str, tmp_path: Path, workers_without_handlers: list[subprocess.Popen[bytes]]
) -> None:
    definition = tmp_path / "count.json"
    definition.write_text(json.dumps(COUNT_TWICE))
    for attempt in range(4):
        log = tmp_path / f"count-{attempt}.log"
        result = cli(
            [
                "run",
                str(definition),
                "--input",
                json.dumps({"log": str(log)}),
                "--name",
                f"beside-{attempt}",
                "--activities",
                HANDLERS,
                "--db",
                db_url,
                "-o",
                "json",
            ]
        )
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["status"] == "SUCCEEDED"
        assert document["queue"].startswith("run-")
        assert log.read_text() == "count\ncount\n"


def test_a_killed_run_is_finished_by_run_resume(db_url: str, tmp_path: Path) -> None:
    definition = tmp_path / "hang.json"
    definition.write_text(json.dumps(COUNT_THEN_HANG))
    log, flag = tmp_path / "count.log", tmp_path / "hanging.flag"
    run = spawn(
        [
            "run",
            str(definition),
            "--input",
            json.dumps({"log": str(log), "flag": str(flag)}),
            "--name",
            "killed",
            "--lease-seconds",
            "2",
            "--activities",
            HANDLERS,
            "--db",
            db_url,
        ],
        tmp_path / "run.err",
    )
    try:
        wait_until(flag.exists, timeout=120)
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    assert describe(db_url, "killed")["status"] == "RUNNING"
    resumed = cli(
        ["run", "--resume", "killed", "--activities", HANDLERS, "--db", db_url, "-o", "json"]
    )
    assert resumed.returncode == 0, resumed.stderr
    document = json.loads(resumed.stdout)
    assert document["status"] == "SUCCEEDED"
    assert document["output"] == {"log": str(log), "flag": str(flag), "hang": {"resumed": True}}
    # The step recorded before the kill was replayed, not run again.
    assert log.read_text() == "count\n"


def test_a_killed_run_is_finished_by_a_worker_on_its_queue(sqlite_url: str, tmp_path: Path) -> None:
    definition = tmp_path / "hang.json"
    definition.write_text(json.dumps(COUNT_THEN_HANG))
    log, flag = tmp_path / "count.log", tmp_path / "hanging.flag"
    run = spawn(
        [
            "run",
            str(definition),
            "--input",
            json.dumps({"log": str(log), "flag": str(flag)}),
            "--name",
            "orphan",
            "--lease-seconds",
            "2",
            "--activities",
            HANDLERS,
            "--db",
            sqlite_url,
        ],
        tmp_path / "run.err",
    )
    try:
        wait_until(flag.exists, timeout=120)
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    queue = describe(sqlite_url, "orphan")["queue"]
    worker = spawn(
        ["worker", "--queue", queue, "--activities", HANDLERS, "--db", sqlite_url],
        tmp_path / "worker.err",
    )
    try:
        wait_until(lambda: describe(sqlite_url, "orphan")["status"] != "RUNNING", timeout=120)
        assert describe(sqlite_url, "orphan")["status"] == "SUCCEEDED"
        assert log.read_text() == "count\n"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
