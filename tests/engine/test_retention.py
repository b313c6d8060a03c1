"""Retention on both stores: `stepwise executions purge` and the worker's retention setting.

Closed executions older than the cutoff go with everything they own (events,
journal, work rows); RUNNING executions and newer ones stay; purging runs in
small batches while a real worker process keeps running executions.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from engine import Engine
from engine.cli import cli
from engine.cli.executions import parse_age
from engine.store.schema import executions, history_events, journal
from tests.engine.processes import ROOT, wait_until

QUICK = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
FAILS = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom"}}}
WAITS = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}
BUSY = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "StartAt": "A",
                "States": {
                    "A": {"Type": "Pass", "Next": "B"},
                    "B": {"Type": "Wait", "Seconds": 0, "End": True},
                },
            },
            "End": True,
        }
    },
}


def _worker(url: str, *options: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--db", url, *options],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _count(url: str, table: sa.Table, ids: list[str] | None = None) -> int:
    engine = sa.create_engine(url)
    try:
        query = sa.select(sa.func.count()).select_from(table)
        if ids is not None:
            query = query.where(table.c.execution_id.in_(ids))
        with engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)
    finally:
        engine.dispose()


def _age(url: str, ids: list[str], days: float) -> None:
    """Make these executions look as if they started and stopped `days` ago."""
    then = datetime.now(UTC) - timedelta(days=days)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.update(executions)
                .where(executions.c.execution_id.in_(ids))
                .values(
                    start_date=then,
                    stop_date=sa.case((executions.c.stop_date.is_(None), None), else_=then),
                )
            )
    finally:
        engine.dispose()


def _run_all(engine: Engine, machine: str, count: int, value: object = None) -> list[str]:
    ids = [engine.start_sync(machine, value).execution_id for _ in range(count)]
    for execution_id in ids:
        engine.wait_sync(execution_id, timeout=120)
    return ids


def test_parse_age() -> None:
    assert parse_age("90d") == timedelta(days=90)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("1.5w") == timedelta(weeks=1.5)
    for bad in ("90", "d", "-1d", "3 years"):
        with pytest.raises(Exception, match="is not an age"):
            parse_age(bad)


def test_purge_deletes_only_old_closed_executions_under_load(db_url: str) -> None:
    worker = _worker(db_url)
    try:
        with Engine(db_url, worker=False) as client:
            for name, definition in (("quick", QUICK), ("fails", FAILS), ("waits", WAITS)):
                client.create_state_machine_sync(name, definition)
            client.create_state_machine_sync("busy", BUSY)
            old = _run_all(client, "quick", 40)
            old_failed = _run_all(client, "fails", 10)
            recent = _run_all(client, "quick", 5)
            waiting = client.start_sync("waits").execution_id
            wait_until(lambda: client.describe_sync(waiting).status == "RUNNING", timeout=60)
            _age(db_url, [*old, *old_failed, waiting], days=100)
            _age(db_url, recent, days=30)

            # Load: the worker runs these while the purge goes on, batch by batch.
            busy = [
                client.start_sync("busy", {"items": list(range(15))}).execution_id
                for _ in range(20)
            ]
            only_failed = CliRunner().invoke(
                cli,
                [
                    "executions",
                    "purge",
                    "--older-than",
                    "90d",
                    "--status",
                    "failed",
                    "--machine",
                    "fails",
                    "--db",
                    db_url,
                    "-o",
                    "json",
                ],
            )
            assert only_failed.exit_code == 0, only_failed.output
            assert json.loads(only_failed.stdout)["purgedExecutions"] == 10
            rest = CliRunner().invoke(
                cli,
                ["executions", "purge", "--older-than", "90d", "--batch-size", "7", "--db", db_url],
            )
            assert rest.exit_code == 0, rest.output
            assert rest.stdout.startswith("purged 40 executions that stopped before ")
            for execution_id in busy:
                assert client.wait_sync(execution_id, timeout=300).status == "SUCCEEDED"
            # The old RUNNING execution and the 30-day-old ones are kept.
            assert client.describe_sync(waiting).status == "RUNNING"
            assert all(client.describe_sync(e).status == "SUCCEEDED" for e in recent)
            assert len(client.history_sync(busy[0])) > 15 * 4
    finally:
        _stop(worker)
    gone = [*old, *old_failed]
    for table in (executions, history_events, journal):
        assert _count(db_url, table, gone) == 0, table.name
    assert _count(db_url, executions) == len(recent) + 1 + len(busy)
    again = CliRunner().invoke(
        cli, ["executions", "purge", "--older-than", "90d", "--db", db_url, "-o", "json"]
    )
    assert json.loads(again.stdout)["purgedExecutions"] == 0
    bad = CliRunner().invoke(cli, ["executions", "purge", "--older-than", "soon", "--db", db_url])
    assert bad.exit_code == 2


def test_the_worker_applies_the_retention_setting(db_url: str) -> None:
    with Engine(db_url, worker=False) as client:
        client.create_state_machine_sync("quick", QUICK)
        ids = [client.start_sync("quick").execution_id for _ in range(30)]
    worker = _worker(db_url)
    try:
        with Engine(db_url, worker=False) as client:
            for execution_id in ids:
                client.wait_sync(execution_id, timeout=120)
    finally:
        _stop(worker)
    expired, kept = ids[:20], ids[20:]
    _age(db_url, expired, days=91)
    _age(db_url, kept, days=89)
    worker = _worker(db_url, "--retention-days", "90")
    try:
        wait_until(lambda: _count(db_url, executions, expired) == 0, timeout=120)
    finally:
        _stop(worker)
    assert _count(db_url, history_events, expired) == 0
    assert _count(db_url, executions, kept) == len(kept)
    assert _count(db_url, history_events, kept) > 0


def test_retention_and_limit_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.journal import history_event_limit
    from engine.worker import retention_setting

    monkeypatch.delenv("STEPWISE_RETENTION_DAYS", raising=False)
    assert retention_setting() is None  # keep everything unless told
    assert retention_setting(90) == 90
    monkeypatch.setenv("STEPWISE_RETENTION_DAYS", "30")
    assert retention_setting() == 30.0
    assert Engine(":memory:").retention_days == 30.0
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive number of days"):
            retention_setting(bad)
    assert history_event_limit(100) == 100
    with pytest.raises(ValueError, match="at least 2"):
        history_event_limit(1)
    with pytest.raises(ValueError, match="positive number of days"):
        Engine(":memory:", retention_days=-5)
