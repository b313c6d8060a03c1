"""The built-in activities: HTTP against a real server on 127.0.0.1, SQL on the engine's
own database (SQLite and PostgreSQL), shell commands; and SQL's exactly-once effect
under SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from activities import ActivityContext, ActivityError, Registry
from activities.http import http_invoke
from activities.sql import parse_statements
from engine import Engine
from engine.callbacks import run_sql_effect
from engine.store import Event, Store
from tests.engine.processes import wait_until

ROOT = Path(__file__).resolve().parents[2]


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        _Handler.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        status = 404 if self.path.startswith("/missing") else 200
        if self.path.startswith("/slow"):
            time.sleep(3)
        payload = json.dumps({"path": self.path, "method": self.command, "body": body}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _run(url: str, definition: dict[str, Any], value: Any, registry: Registry | None = None) -> Any:
    async def main() -> Any:
        async with Engine(url, registry=registry) as engine:
            return await engine.run(definition, value)

    return anyio.run(main)


def test_http_task_get_post_and_errors(server: str, sqlite_url: str) -> None:
    definition = {
        "StartAt": "Get",
        "States": {
            "Get": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {
                    "ApiEndpoint.$": "States.Format('{}/items', $.base)",
                    "Method": "GET",
                    "QueryParameters": {"q": "a b", "n": 2},
                    "Headers": {"X-Test": "yes"},
                },
                "ResultSelector": {"status.$": "$.StatusCode", "body.$": "$.ResponseBody"},
                "ResultPath": "$.get",
                "Next": "Post",
            },
            "Post": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {
                    "ApiEndpoint.$": "States.Format('{}/items', $.base)",
                    "Method": "POST",
                    "RequestBody": {"name": "x"},
                },
                "ResultSelector": {"text.$": "$.StatusText", "body.$": "$.ResponseBody.body"},
                "ResultPath": "$.post",
                "Next": "Missing",
            },
            "Missing": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {
                    "ApiEndpoint.$": "States.Format('{}/missing', $.base)",
                    "Method": "GET",
                },
                "Catch": [
                    {
                        "ErrorEquals": ["States.Http.StatusCode.404"],
                        "ResultPath": "$.e404",
                        "Next": "Down",
                    }
                ],
                "End": True,
            },
            "Down": {
                "Type": "Task",
                "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {"ApiEndpoint": "http://127.0.0.1:9/none", "Method": "GET"},
                "Catch": [
                    {"ErrorEquals": ["States.Http.Socket"], "ResultPath": "$.down", "Next": "Done"}
                ],
                "End": True,
            },
            "Done": {"Type": "Pass", "End": True},
        },
    }
    registry = Registry()
    registry.allow_http_to("127.0.0.1")  # the operator's allow-list: loopback is refused otherwise
    record = _run(sqlite_url, definition, {"base": server}, registry)
    assert record.status == "SUCCEEDED", record.cause
    out = json.loads(record.output)
    assert out["get"] == {
        "status": 200,
        "body": {"path": "/items?q=a+b&n=2", "method": "GET", "body": ""},
    }
    assert out["post"] == {"text": "OK", "body": '{"name": "x"}'}
    assert out["e404"]["Error"] == "States.Http.StatusCode.404"
    assert json.loads(out["e404"]["Cause"])["StatusCode"] == 404
    assert out["down"]["Error"] == "States.Http.Socket"
    assert _Handler.seen[0]["headers"]["x-test"] == "yes"
    assert _Handler.seen[1]["headers"]["content-type"] == "application/json"


def test_http_sends_traceparent_and_honours_the_deadline(server: str) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    context = ActivityContext("e", "S", 0, "k", "r", traceparent=parent)
    result = http_invoke({"ApiEndpoint": f"{server}/t", "Method": "PUT"}, context)
    assert result["StatusCode"] == 200 and result["Headers"]["content-type"] == ["application/json"]
    assert _Handler.seen[-1]["headers"]["traceparent"] == parent
    late = ActivityContext("e", "S", 0, "k", "r", deadline=datetime.now(UTC) + timedelta(seconds=1))
    # The server answers /slow after 3 s: only the deadline makes this a timeout.
    with pytest.raises(ActivityError) as raised:
        http_invoke({"ApiEndpoint": f"{server}/slow", "Method": "GET"}, late)
    assert raised.value.error == "States.Http.Socket"
    assert raised.value.cause == "TimeoutError: timed out"


SQL_MACHINE = {
    "StartAt": "Create",
    "States": {
        "Create": {
            "Type": "Task",
            "Resource": "stepwise:sql",
            "Parameters": {"Sql": "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"},
            "ResultPath": None,
            "Next": "Insert",
        },
        "Insert": {
            "Type": "Task",
            "Resource": "stepwise:sql",
            "Parameters": {
                "Statements": [
                    {
                        "Sql": "INSERT INTO notes (id, body) VALUES (:id, :body)",
                        "Parameters": {"id": 1, "body.$": "$.body"},
                    },
                    {"Sql": "INSERT INTO notes (id, body) VALUES (2, 'two')"},
                ]
            },
            "ResultPath": "$.inserted",
            "Next": "Select",
        },
        "Select": {
            "Type": "Task",
            "Resource": "stepwise:sql",
            "Parameters": {"Sql": "SELECT id, body FROM notes ORDER BY id"},
            "ResultSelector": {"rows.$": "$.Results[0].Rows"},
            "ResultPath": "$.selected",
            "Next": "Duplicate",
        },
        "Duplicate": {
            "Type": "Task",
            "Resource": "stepwise:sql",
            "Parameters": {"Sql": "INSERT INTO notes (id, body) VALUES (1, 'again')"},
            "Catch": [
                {"ErrorEquals": ["Stepwise.SqlError"], "ResultPath": "$.dup", "Next": "Done"}
            ],
            "End": True,
        },
        "Done": {"Type": "Pass", "End": True},
    },
}


def test_sql_activity_binds_parameters_and_returns_rows(db_url: str) -> None:
    registry = Registry()
    registry.enable("sql")
    hostile = "x'); DROP TABLE notes; --"
    record = _run(db_url, SQL_MACHINE, {"body": hostile}, registry)
    assert record.status == "SUCCEEDED", record.cause
    out = json.loads(record.output)
    assert out["inserted"] == {
        "Results": [{"Rows": [], "RowCount": 1}, {"Rows": [], "RowCount": 1}]
    }
    assert out["selected"] == {"rows": [{"id": 1, "body": hostile}, {"id": 2, "body": "two"}]}
    assert out["dup"]["Error"] == "Stepwise.SqlError"
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM notes")).scalar() == 2
        assert conn.execute(sa.text("SELECT count(*) FROM sql_effects")).scalar() == 3
    engine.dispose()


def test_sql_and_shell_are_off_unless_enabled(sqlite_url: str) -> None:
    for resource in ("stepwise:sql", "stepwise:shell"):
        definition = {
            "StartAt": "T",
            "States": {"T": {"Type": "Task", "Resource": resource, "End": True}},
        }
        # A SQL Task's statement is written in its Parameters (DYNAMIC_SQL otherwise).
        definition["States"]["T"]["Parameters"] = {"Sql": "SELECT 1", "Command": ["true"]}
        record = _run(sqlite_url, definition, {})
        assert record.status == "FAILED" and record.error == "States.Runtime"
        assert "is not enabled by the operator" in (record.cause or "")


def test_shell_runs_an_argument_list_without_a_shell(sqlite_url: str) -> None:
    registry = Registry()
    registry.enable("shell")
    registry.shell_commands = {"echo", "false"}
    definition = {
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Task",
                "Resource": "stepwise:shell",
                "Parameters": {"Command.$": "States.Array('echo', $.text)"},
                "ResultPath": "$.echo",
                "Next": "Fail",
            },
            "Fail": {
                "Type": "Task",
                "Resource": "stepwise:shell",
                "Parameters": {"Command": ["false"]},
                "Catch": [
                    {"ErrorEquals": ["Shell.ExitCode.1"], "ResultPath": "$.f", "Next": "End"}
                ],
                "End": True,
            },
            "End": {"Type": "Pass", "End": True},
        },
    }
    record = _run(sqlite_url, definition, {"text": "$(whoami); `id`"}, registry)
    assert record.status == "SUCCEEDED", record.cause
    out = json.loads(record.output)
    assert out["echo"] == {"ExitCode": 0, "Stdout": "$(whoami); `id`\n", "Stderr": ""}
    assert out["f"] == {"Error": "Shell.ExitCode.1", "Cause": ""}
    rm = {
        "StartAt": "Rm",
        "States": {
            "Rm": {
                "Type": "Task",
                "Resource": "stepwise:shell",
                "Parameters": {"Command": ["rm", "-rf", "/tmp/nothing"]},
                "End": True,
            }
        },
    }
    record = _run(sqlite_url, rm, {}, registry)
    assert record.status == "FAILED" and record.error == "States.Runtime"
    assert "'rm' is not allowed" in (record.cause or "")


LEDGER_ITEMS = 20
LEDGER = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 1,
            "ItemProcessor": {
                "StartAt": "Insert",
                "States": {
                    "Insert": {
                        "Type": "Task",
                        "Resource": "stepwise:sql",
                        "Parameters": {
                            "Sql": "INSERT INTO ledger (item) VALUES (:item)",
                            "Parameters": {"item.$": "$"},
                        },
                        "End": True,
                    }
                },
            },
            "End": True,
        }
    },
}

# While result_gate has a row, no TaskSucceeded can be written: the checkpoint that
# records a SQL step's result fails as a unique-key collision would, after the step's
# effect (and its sql_effects row) committed. A kill then lands between the two.
GATE_SQLITE = [
    "CREATE TABLE result_gate (closed INTEGER)",
    """CREATE TRIGGER hold_results BEFORE INSERT ON history_events
       WHEN NEW.type = 'TaskSucceeded' AND EXISTS (SELECT 1 FROM result_gate)
       BEGIN SELECT RAISE(ABORT, 'result gate closed'); END""",
    # Since migration 18 SQLite's commits write a commit's events as one history block.
    """CREATE TRIGGER hold_block_results BEFORE INSERT ON history_blocks
       WHEN NEW.events LIKE '%"TaskSucceeded"%' AND EXISTS (SELECT 1 FROM result_gate)
       BEGIN SELECT RAISE(ABORT, 'result gate closed'); END""",
]
GATE_POSTGRES = [
    "CREATE TABLE result_gate (closed INTEGER)",
    """CREATE FUNCTION hold_results() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.type = 'TaskSucceeded' AND EXISTS (SELECT 1 FROM result_gate) THEN
           RAISE EXCEPTION 'result gate closed' USING ERRCODE = 'unique_violation';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER hold_results BEFORE INSERT ON history_events
       FOR EACH ROW EXECUTE FUNCTION hold_results()""",
    # Since migration 19 PostgreSQL's commits write a commit's events as one history block.
    """CREATE FUNCTION hold_block_results() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.events LIKE '%"TaskSucceeded"%' AND EXISTS (SELECT 1 FROM result_gate) THEN
           RAISE EXCEPTION 'result gate closed' USING ERRCODE = 'unique_violation';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER hold_block_results BEFORE INSERT ON history_blocks
       FOR EACH ROW EXECUTE FUNCTION hold_block_results()""",
]


def _ledger(engine: sa.Engine) -> tuple[list[int], int, int]:
    """The ledger's items, the sql_effects rows and the TaskSucceeded events, as of now."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT item FROM ledger ORDER BY item")).scalars().all()
        effects = conn.execute(sa.text("SELECT count(*) FROM sql_effects")).scalar_one()
        succeeded = conn.execute(
            sa.text("SELECT count(*) FROM history_events WHERE type = 'TaskSucceeded'")
        ).scalar_one()
        for text in conn.execute(sa.text("SELECT events FROM history_blocks")).scalars():
            succeeded += sum(1 for event in json.loads(text) if event[2] == "TaskSucceeded")
    return list(rows), effects, succeeded


def _worker(url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.activities.worker_proc", url, str(tmp_path / "t")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait()


def test_sql_effect_and_record_survive_sigkill_together(db_url: str, tmp_path: Path) -> None:
    """Workers are killed with SQL effects in flight; every item lands exactly once.

    The first kill is placed deterministically after item 0's effect committed
    and before its result was recorded (the gate), so the step must run again
    on the next worker — and that rerun must read the recorded effect instead
    of inserting twice. Each later kill hits as soon as a new effect appears.
    """
    engine = sa.create_engine(db_url)
    gate = GATE_SQLITE if engine.dialect.name == "sqlite" else GATE_POSTGRES
    with Engine(db_url, worker=False) as client:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE ledger (item INTEGER NOT NULL)"))
            for statement in gate:
                conn.execute(sa.text(statement))
            conn.execute(sa.text("INSERT INTO result_gate VALUES (1)"))
        client.create_state_machine_sync("ledger", LEDGER)
        record = client.start_sync("ledger", {"items": list(range(LEDGER_ITEMS))})
        worker = _worker(db_url, tmp_path)
        try:
            wait_until(lambda: _ledger(engine)[1] == 1)
        finally:
            _kill(worker)
        # Item 0's effect is done and recorded in sql_effects; its result is not.
        assert _ledger(engine) == ([0], 1, 0)
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM result_gate"))
        ahead_at_a_kill = 0
        for _ in range(4):
            before = _ledger(engine)[1]
            if before == LEDGER_ITEMS:
                break
            worker = _worker(db_url, tmp_path)
            try:
                wait_until(lambda: _ledger(engine)[1] > before)  # noqa: B023
            finally:
                _kill(worker)
            rows, effects, succeeded = _ledger(engine)
            # Whatever moment the kill hit: every effect has its record and vice versa.
            assert rows == list(range(effects))
            assert succeeded <= effects
            ahead_at_a_kill += succeeded < effects
        worker = _worker(db_url, tmp_path)
        try:
            final = client.wait_sync(record, timeout=120)
        finally:
            _kill(worker)
        assert final.status == "SUCCEEDED", final.cause
        history = client.history_sync(record)
    assert _ledger(engine) == (list(range(LEDGER_ITEMS)), LEDGER_ITEMS, LEDGER_ITEMS)
    engine.dispose()
    succeeded_items = [e for e in history if e.type == "TaskSucceeded"]
    assert len(succeeded_items) == LEDGER_ITEMS
    assert json.loads(final.output or "") == [
        {"Results": [{"Rows": [], "RowCount": 1}]} for _ in range(LEDGER_ITEMS)
    ]
    # Reported, not asserted: how often a later kill also left an effect ahead of its record.
    print(f"kills with an effect ahead of its record after the gate: {ahead_at_a_kill}")


def test_a_rerun_sql_step_reads_its_recorded_effect(db_url: str) -> None:
    """The same step run twice (a worker died before recording its result): the second run
    returns the first run's result and leaves the table as the first run left it."""
    now = datetime.now(UTC)
    store = Store(db_url)
    try:
        machine = store.put_state_machine("sql", json.dumps(LEDGER))
        execution_id = "arn:aws:states:local:000000000000:execution:sql:once"
        store.create_execution(
            execution_id=execution_id,
            name="once",
            machine=machine,
            input="{}",
            start_date=now,
            trace_id="0" * 32,
            first_event=Event(
                event_id=1, previous_event_id=0, type="ExecutionStarted", timestamp=now
            ),
        )
        assert store.claim_execution(execution_id, "worker-a", lease_seconds=60, now=now)
        with store._engine.begin() as conn:  # the user's own table, beside the engine's
            conn.execute(sa.text("CREATE TABLE ledger (item INTEGER NOT NULL)"))
        statements = parse_statements(
            {
                "Sql": "INSERT INTO ledger (item) VALUES (:item) RETURNING item",
                "Parameters": {"item": 7},
            }
        )
        runs = [
            run_sql_effect(
                store,
                execution_id=execution_id,
                key="0:t0",
                worker_id="worker-a",
                statements=statements,
                now=now,
            )
            for _ in range(2)
        ]
        with store._engine.connect() as conn:
            items = conn.execute(sa.text("SELECT item FROM ledger")).scalars().all()
    finally:
        store.close()
    assert runs == [{"ok": {"Results": [{"Rows": [{"item": 7}], "RowCount": 1}]}}] * 2
    assert items == [7]
