"""The operator's options reach the built-ins: `--allow-http-to` and `--sql-role`.

`stepwise run` and `stepwise worker` (real processes) let the HTTP built-in
reach a loopback server only when the operator allows it — the server
receives nothing otherwise — and run the SQL built-in's statements under the
operator's PostgreSQL role, which cannot touch Stepwise's own tables, while
the effect still commits exactly once with its record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from activities import Registry
from engine import Engine
from engine.store.schema import history_blocks, history_events, sql_effects
from tests.engine.processes import ROOT

CALL = {
    "StartAt": "Call",
    "States": {
        "Call": {
            "Type": "Task",
            "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint.$": "$.url", "Method": "GET"},
            "ResultSelector": {"status.$": "$.StatusCode"},
            "End": True,
        }
    },
}


class _Counting(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def loopback() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    httpd.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _stepwise(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_reaches_loopback_only_when_allowed(
    loopback: ThreadingHTTPServer, sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "call.json"
    path.write_text(json.dumps(CALL))
    url = f"http://127.0.0.1:{loopback.server_address[1]}/x"
    refused = _stepwise("run", str(path), "--input", json.dumps({"url": url}), "--db", sqlite_url)
    assert refused.returncode == 1, refused.stderr
    assert "Stepwise.Http.Forbidden" in refused.stderr
    assert loopback.hits == 0  # type: ignore[attr-defined]
    allowed = _stepwise(
        "run", str(path), "--input", json.dumps({"url": url}), "--db", sqlite_url,
        "--allow-http-to", "10.0.0.0/8", "--allow-http-to", "127.0.0.1", "-o", "json",
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["output"] == {"status": 200}
    assert loopback.hits == 1  # type: ignore[attr-defined]
    bad = _stepwise("run", str(path), "--db", sqlite_url, "--allow-http-to", "10.0.0.0/33")
    assert bad.returncode == 2 and "--allow-http-to" in bad.stderr


def test_worker_takes_the_allow_list(loopback: ThreadingHTTPServer, sqlite_url: str) -> None:
    url = f"http://127.0.0.1:{loopback.server_address[1]}/w"
    worker = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--db", sqlite_url,
         "--allow-http-to", "127.0.0.0/8"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with Engine(sqlite_url, worker=False) as client:
            client.create_state_machine_sync("call", CALL)
            started = client.start_sync("call", {"url": url})
            record = client.wait_sync(started.execution_id, timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert record.status == "SUCCEEDED", record.cause
    assert loopback.hits == 1  # type: ignore[attr-defined]


SQL = {
    "StartAt": "Write",
    "States": {
        "Write": {
            "Type": "Task",
            "Resource": "stepwise:sql",
            "Parameters": {
                "Sql": "INSERT INTO app_notes (body) VALUES (:body)",
                "Parameters": {"body.$": "$.body"},
            },
            "Next": "Attack",
        },
        "Attack": {
            "Type": "Task",
            "Resource": "stepwise:sql",
            "Parameters": {"Sql": "DELETE FROM history_events"},
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.refused", "Next": "Done"}],
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}


@pytest.fixture
def sql_role(postgres_url: str) -> Iterator[str]:
    """A role granted only app_notes, in a database Stepwise's schema is already in."""

    async def prepare() -> None:
        async with Engine(postgres_url, worker=False):
            pass

    anyio.run(prepare)
    role = f"workflow_sql_{os.getpid()}"
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        conn.execute(sa.text(f'CREATE ROLE "{role}"'))
        conn.execute(sa.text("CREATE TABLE app_notes (body TEXT)"))
        conn.execute(sa.text(f'GRANT SELECT, INSERT ON app_notes TO "{role}"'))
    try:
        yield role
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE app_notes"))
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
        engine.dispose()


def _counts(url: str, execution_id: str) -> tuple[int, int, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            notes = conn.execute(sa.text("SELECT count(*) FROM app_notes")).scalar()
            events = conn.execute(
                sa.select(sa.func.count())
                .select_from(history_events)
                .where(history_events.c.execution_id == execution_id)
            ).scalar_one()
            # Since migration 19 a commit's events are one history block (a JSON array).
            for text in conn.execute(
                sa.select(history_blocks.c.events).where(
                    history_blocks.c.execution_id == execution_id
                )
            ).scalars():
                events += len(json.loads(text))
            effects = conn.execute(
                sa.select(sa.func.count())
                .select_from(sql_effects)
                .where(sql_effects.c.execution_id == execution_id)
            ).scalar()
        return int(notes or 0), int(events), int(effects or 0)
    finally:
        engine.dispose()


def test_statements_under_the_sql_role_cannot_touch_stepwise_tables(
    postgres_url: str, sql_role: str, tmp_path: Path
) -> None:
    registry = Registry()
    registry.enable("sql")
    registry.sql_role = sql_role
    with Engine(postgres_url, registry=registry, worker=False) as engine:
        record = engine.run_sync(SQL, {"body": "hello"})
        history = engine.history_sync(record.execution_id)
    assert record.status == "SUCCEEDED", record.cause
    refused = json.loads(record.output or "{}")["refused"]
    assert refused["Error"] == "Stepwise.SqlError"
    assert "permission denied" in refused["Cause"]
    # The allowed statement ran once, recorded with its effect; the attack changed nothing.
    notes, events, effects = _counts(postgres_url, record.execution_id)
    assert (notes, effects) == (1, 1)
    assert events == len(history) and history[-1].type == "ExecutionSucceeded"

    # The same through `stepwise run --sql-role`, in its own process.
    (tmp_path / "enable_sql.py").write_text(
        "from activities import default_registry\ndefault_registry.enable('sql')\n"
    )
    (tmp_path / "sql.json").write_text(json.dumps(SQL))
    ran = _stepwise(
        "run", "sql.json", "--activities", "enable_sql", "--sql-role", sql_role,
        "--input", '{"body": "again"}', "--db", postgres_url, "-o", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    assert "permission denied" in document["output"]["refused"]["Cause"]
    assert _counts(postgres_url, document["executionArn"])[:3:2] == (2, 1)
    on_sqlite = _stepwise(
        "run", "sql.json", "--sql-role", sql_role, "--db", f"sqlite:///{tmp_path / 'x.db'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert on_sqlite.returncode == 2 and "--sql-role needs a PostgreSQL" in on_sqlite.stderr


@pytest.mark.parametrize("allowed", [False, True])
def test_serve_takes_the_allow_list(
    loopback: ThreadingHTTPServer, sqlite_url: str, tmp_path: Path, allowed: bool
) -> None:
    """`stepwise serve`'s in-process worker reaches loopback only with --allow-http-to."""
    from tests.http.support import Server

    url = f"http://127.0.0.1:{loopback.server_address[1]}/s"
    extra = ("--allow-http-to", "127.0.0.1") if allowed else ()
    server = Server(sqlite_url, tmp_path / "serve.log", *extra).start()
    try:
        client = server.client()
        arn = client.create_state_machine(
            name="call",
            definition=json.dumps(CALL),
            roleArn="arn:aws:iam::000000000000:role/stepwise",
        )["stateMachineArn"]
        execution = client.start_execution(stateMachineArn=arn, input=json.dumps({"url": url}))
        deadline = time.monotonic() + 120
        done = client.describe_execution(executionArn=execution["executionArn"])
        while done["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.1)
            done = client.describe_execution(executionArn=execution["executionArn"])
    finally:
        server.stop()
    if allowed:
        assert done["status"] == "SUCCEEDED"
        assert loopback.hits == 1  # type: ignore[attr-defined]
    else:
        assert (done["status"], done["error"]) == ("FAILED", "Stepwise.Http.Forbidden")
        assert loopback.hits == 0  # type: ignore[attr-defined]
