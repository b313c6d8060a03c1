"""`stepwise schedules …` as a user types it, against a real SQLite file, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def stepwise(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--db", db, *args],
        cwd=REPO,
        env={**os.environ, "STEPWISE_DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_schedule_commands_create_backfill_describe_and_errors(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    machine = tmp_path / "pass.json"
    machine.write_text(json.dumps(PASS))
    assert stepwise(db, "machines", "create", "nightly", str(machine)).returncode == 0
    created = stepwise(
        db,
        "schedules",
        "create",
        "etl",
        "--machine",
        "nightly",
        "--cron",
        "cron(0 2 * * ? *)",
        "--timezone",
        "Europe/Paris",
        "--input",
        '{"table": "orders"}',
        "--scheduled-time-key",
        "day",
        "--overlap",
        "buffer_one",
        "--catchup-window",
        "2d",
        "-o",
        "json",
    )
    assert created.returncode == 0, created.stderr
    document = json.loads(created.stdout)
    assert document["scheduleExpressionTimezone"] == "Europe/Paris"
    assert document["overlapPolicy"] == "buffer_one"
    assert document["catchupWindowSeconds"] == 172800
    backfill = ["schedules", "backfill", "etl", "--from", "2026-11-01", "--to", "2026-11-03"]
    first = stepwise(db, *backfill, "-o", "json")
    second = stepwise(db, *backfill, "-o", "json")
    assert first.returncode == second.returncode == 0, first.stderr
    names = [e["name"] for e in json.loads(first.stdout)["executions"]]
    # 02:00 in Paris is 01:00 UTC in winter; the same ticks twice start nothing new.
    assert names == ["etl-20261101T010000Z", "etl-20261102T010000Z"]
    assert json.loads(second.stdout) == json.loads(first.stdout)
    run = json.loads(stepwise(db, "describe", "etl-20261101T010000Z", "-o", "json").stdout)
    assert run["input"] == {"table": "orders", "day": "2026-11-01T01:00:00Z"}
    described = json.loads(stepwise(db, "schedules", "describe", "etl", "-o", "json").stdout)
    assert len(described["nextFireTimes"]) == 5
    assert [r["name"] for r in described["recentRuns"]] == names[::-1]
    assert stepwise(db, "schedules", "pause", "etl").returncode == 0
    listed = json.loads(stepwise(db, "schedules", "list", "-o", "json").stdout)
    assert [(s["name"], s["state"]) for s in listed["schedules"]] == [("etl", "DISABLED")]
    assert stepwise(db, "schedules", "update", "etl", "--rate", "6 hours").returncode == 0
    assert stepwise(db, "schedules", "resume", "etl").returncode == 0
    assert stepwise(db, "schedules", "trigger", "etl").returncode == 0
    assert stepwise(db, "schedules", "delete", "etl").returncode == 0
    missing = stepwise(db, "schedules", "describe", "etl")
    assert missing.returncode == 2
    assert missing.stderr.startswith("stepwise: error: ResourceNotFoundException")
    bad = stepwise(db, "schedules", "create", "x", "--machine", "nightly", "--cron", "1 2 3")
    assert bad.returncode == 2 and "ValidationException" in bad.stderr
    both = stepwise(
        db,
        "schedules",
        "create",
        "x",
        "--machine",
        "nightly",
        "--rate",
        "1 day",
        "--at",
        "2027-01-01T00:00:00",
    )
    assert both.returncode == 2 and "one of --cron, --rate and --at" in both.stderr


def test_alert_commands_with_a_worker_delivering(tmp_path: Path) -> None:
    import signal
    import time

    from tests.engine.test_alerts import SECRET, Receiver, verify

    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    machine = tmp_path / "fail.json"
    machine.write_text(
        json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom"}}})
    )
    assert stepwise(db, "machines", "create", "breaks", str(machine)).returncode == 0
    receiver = Receiver(failures=0)
    try:
        created = stepwise(
            db,
            "alerts",
            "create",
            "pager",
            "--status",
            "FAILED",
            "--webhook",
            receiver.url,
            "--secret",
            SECRET,
            "--header",
            "x-team=data",
            "-o",
            "json",
        )
        assert created.returncode == 0, created.stderr
        document = json.loads(created.stdout)
        assert "t0ps3cret" not in created.stdout and SECRET not in created.stdout
        assert document["signed"] is True and document["headers"] == ["x-team"]
        refused = stepwise(
            db,
            "alerts",
            "create",
            "meta",
            "--status",
            "FAILED",
            "--webhook",
            "http://169.254.169.254/latest",
        )
        assert refused.returncode == 2 and "ValidationException" in refused.stderr
        assert stepwise(db, "start", "breaks", "--name", "x1").returncode == 0
        worker = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "worker", "--db", db],
            cwd=REPO,
            env={**os.environ, "STEPWISE_DATABASE_URL": ""},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while not receiver.received:
                assert time.monotonic() < deadline, "the worker never delivered the alert"
                time.sleep(0.2)

            def recorded() -> list[dict[str, object]]:
                listed = stepwise(db, "alerts", "deliveries", "-o", "json").stdout
                return list(json.loads(listed)["deliveries"])

            # The receiver answers before the worker records the delivery: wait for the record.
            while [d["state"] for d in recorded()] != ["DELIVERED"]:
                assert time.monotonic() < deadline, "the delivery was never recorded"
                time.sleep(0.2)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        headers, body = receiver.received[0]
        assert verify(headers, body)
        assert json.loads(body)["detail"]["name"] == "x1"
        listed = json.loads(stepwise(db, "alerts", "deliveries", "-o", "json").stdout)
        (delivery,) = listed["deliveries"]
        assert delivery["state"] == "DELIVERED" and delivery["webhookId"] == headers["webhook-id"]
        assert json.loads(
            stepwise(db, "alerts", "deliveries", "--failed", "-o", "json").stdout
        ) == {"deliveries": []}
        replayed = stepwise(db, "alerts", "replay", delivery["deliveryId"], "-o", "json")
        assert json.loads(replayed.stdout)["state"] == "PENDING"
        assert stepwise(db, "alerts", "replay", "nope").returncode == 2
        assert stepwise(db, "alerts", "test", "pager").returncode == 0
        assert stepwise(db, "alerts", "delete", "pager").returncode == 0
        assert json.loads(stepwise(db, "alerts", "list", "-o", "json").stdout) == {"alerts": []}
    finally:
        receiver.server.shutdown()


def test_trigger_commands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'triggers.db'}"
    machine = tmp_path / "pass.json"
    machine.write_text(json.dumps(PASS))
    for name in ("extract", "load"):
        assert stepwise(db, "machines", "create", name, str(machine)).returncode == 0
    created = stepwise(
        db,
        "triggers",
        "create",
        "then-load",
        "--machine",
        "load",
        "--on-execution-of",
        "extract",
        "--status",
        "SUCCEEDED",
        "-o",
        "json",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["onExecutionOf"] == "extract"
    paused = json.loads(stepwise(db, "triggers", "pause", "then-load", "-o", "json").stdout)
    assert paused["state"] == "DISABLED"
    assert stepwise(db, "triggers", "resume", "then-load").returncode == 0
    listed = json.loads(stepwise(db, "triggers", "list", "-o", "json").stdout)
    assert [(t["name"], t["state"]) for t in listed["triggers"]] == [("then-load", "ENABLED")]
    assert stepwise(db, "triggers", "describe", "then-load").returncode == 0
    assert stepwise(db, "triggers", "delete", "then-load").returncode == 0
    missing = stepwise(db, "triggers", "describe", "then-load")
    assert missing.returncode == 2 and "ResourceNotFoundException" in missing.stderr
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watch = stepwise(
        db,
        "triggers",
        "create",
        "on-csv",
        "--machine",
        "load",
        "--watch",
        str(inbox),
        "--pattern",
        "*.csv",
        "-o",
        "json",
    )
    assert watch.returncode == 0, watch.stderr
    assert json.loads(watch.stdout)["watch"] == str(inbox)
    listed = json.loads(stepwise(db, "triggers", "list", "-o", "json").stdout)
    assert [t["name"] for t in listed["triggers"]] == ["on-csv"]
    nowhere = stepwise(db, "triggers", "create", "x", "--machine", "load", "--watch", "/nope")
    assert nowhere.returncode == 2 and "not a folder" in nowhere.stderr
