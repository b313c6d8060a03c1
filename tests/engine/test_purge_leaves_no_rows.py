"""Purging executions leaves none of their rows behind (both stores), races included.

On PostgreSQL journal and history rows have no foreign key to their
execution since migration 16 (each row's check was half a big commit's
server time), so nothing cascades: `Store.purge_executions`, the one path
that deletes executions (the CLI's `executions purge`, the worker's
retention), deletes them itself. It deletes the rows a writer holds first
(work row, tokens, activity tasks), then the executions row, then journal
and history, so a commit that held the work row while the purge ran has its
rows deleted too, and one that comes after finds its lease gone.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from activities import Registry
from engine import Engine
from engine.store import Store, schema
from engine.store.schema import executions
from tests.engine.processes import wait_until

# Every table whose rows name an execution they belong to.
OWNED = (
    "journal",
    "history_events",
    "work_queue",
    "task_tokens",
    "activity_tasks",
    "sql_effects",
    "map_runs",
)

WORK: dict[str, Any] = {"Type": "Task", "Resource": "work", "End": True}
TASK = {"StartAt": "T", "States": {"T": WORK}}
FAILS = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom"}}}


def _map(mode: str, task: str, **fields: Any) -> dict[str, Any]:
    """A Map over `$.items` whose iterations (INLINE or DISTRIBUTED children) run one Task."""
    config: dict[str, str] = {"Mode": mode}
    if mode == "DISTRIBUTED":
        config["ExecutionType"] = "STANDARD"
    processor = {
        "ProcessorConfig": config,
        "StartAt": task,
        "States": {task: WORK},
    }
    return {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": processor, **fields}


MAPS = {
    "StartAt": "Inline",
    "States": {
        "Inline": _map("INLINE", "W", ResultPath=None, Next="Distributed"),
        "Distributed": _map("DISTRIBUTED", "D", End=True),
    },
}


def _orphans(conn: sa.Connection) -> dict[str, int]:
    """Per table, the rows whose execution is gone."""
    return {
        table: int(
            conn.execute(
                sa.text(
                    f"SELECT count(*) FROM {table} WHERE execution_id NOT IN "
                    "(SELECT execution_id FROM executions)"
                )
            ).scalar_one()
        )
        for table in OWNED
    }


def _age_all(conn: sa.Connection) -> None:
    then = datetime.now(UTC) - timedelta(days=100)
    conn.execute(sa.update(executions).values(start_date=then, stop_date=then))


def test_purging_every_kind_of_execution_leaves_no_rows(db_url: str) -> None:
    registry = Registry()
    registry.register("work", lambda value: value)
    with Engine(db_url, registry=registry) as engine:
        engine.create_state_machine_sync("task", TASK)
        engine.create_state_machine_sync("fails", FAILS)
        engine.create_state_machine_sync("maps", MAPS)
        done = [engine.start_sync("task", {"n": n}) for n in range(3)]
        done.append(engine.start_sync("maps", {"items": [1, 2, 3]}))
        failed = engine.start_sync("fails", {})
        for record in [*done, failed]:
            engine.wait_sync(record, timeout=120)
        engine.redrive_sync(failed)  # its journal and history gain the redrive's rows
        assert engine.wait_sync(failed, timeout=120).status == "FAILED"
        store = engine.store
        with store._engine.begin() as conn:  # reading and ageing the tables on purpose
            before = conn.execute(sa.select(sa.func.count()).select_from(executions)).scalar_one()
            counts = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in OWNED
            }
            _age_all(conn)
        # The Distributed Map's 3 children are executions of their own.
        assert before == 5 + 3
        assert counts["journal"] > 0 and counts["history_events"] > 0 and counts["map_runs"] == 1
        purged: list[str] = []
        while batch := store.purge_executions(
            stopped_before=datetime.now(UTC) - timedelta(days=1), limit=3
        ):
            purged.extend(batch)
        assert len(purged) == before
        with store._engine.connect() as conn:
            assert _orphans(conn) == dict.fromkeys(OWNED, 0)


def _one_call(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_a_commit_holding_the_work_row_while_a_purge_runs_leaves_no_rows(
    postgres_url: str,
) -> None:
    """PostgreSQL: the purge waits for the commit's lease lock, then deletes what it wrote."""
    registry = Registry()
    registry.register("work", lambda value: value)
    with Engine(postgres_url, registry=registry) as engine:
        engine.create_state_machine_sync("task", TASK)
        record = engine.wait_sync(engine.start_sync("task", {}), timeout=120)
    execution_id = record.execution_id
    store = Store(postgres_url)
    writer = psycopg.connect(_one_call(postgres_url), autocommit=True)
    try:
        now = datetime.now(UTC)
        with store._engine.begin() as conn:
            _age_all(conn)
            # A closed execution's work row leased to a worker (a late signal's, claimed).
            conn.execute(
                sa.text(
                    "INSERT INTO work_queue (execution_id, due_at, lease_owner, lease_expires_at, "
                    "wakeups, wakeups_seen) VALUES (:id, NULL, 'w', :until, 0, 0)"
                ),
                {"id": execution_id, "until": now + timedelta(hours=1)},
            )
        batch: dict[str, Any] = {
            "ids": [execution_id],
            "journal": [[execution_id, "late", "{}"]],
            "events": [],
            "progress": [],
            "finish": [],
            "release": [],
        }
        writer.execute("BEGIN")
        writer.execute(
            "SELECT stepwise_commit_v2(%s, %s, %s)", ("w", now, json.dumps(batch))
        ).fetchone()
        purged: list[str] = []
        purge = threading.Thread(
            target=lambda: purged.extend(
                store.purge_executions(stopped_before=now - timedelta(days=1))
            )
        )
        purge.start()
        with store._engine.connect() as watch:
            waiting = sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            wait_until(lambda: watch.execute(waiting).scalar_one() == 1, timeout=60)
        writer.execute("COMMIT")
        purge.join(timeout=120)
        assert not purge.is_alive()
        assert purged == [execution_id]
        with store._engine.connect() as conn:
            assert _orphans(conn) == dict.fromkeys(OWNED, 0)
        # A commit after the purge finds no lease: it refuses and writes nothing.
        with pytest.raises(psycopg.errors.RaiseException):
            writer.execute("SELECT stepwise_commit_v2(%s, %s, %s)", ("w", now, json.dumps(batch)))
    finally:
        writer.close()
        store.close()


def _foreign_keys(url: str) -> dict[str, bool]:
    """Per owned table, whether it has a foreign key to executions."""
    engine = sa.create_engine(url)
    try:
        found = sa.inspect(engine)
        return {
            table: any(fk["referred_table"] == "executions" for fk in found.get_foreign_keys(table))
            for table in ("journal", "history_events", "work_queue", "task_tokens", "map_runs")
        }
    finally:
        engine.dispose()


def test_migration_16_drops_only_the_per_row_foreign_keys_on_postgresql(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:15])
        patched.setattr(schema, "SCHEMA_VERSION", 15)
        Store(db_url).close()
    every = dict.fromkeys(
        ("journal", "history_events", "work_queue", "task_tokens", "map_runs"), True
    )
    assert _foreign_keys(db_url) == every
    store = Store(db_url)  # opening it migrates
    try:
        assert store.schema_version() == 16
    finally:
        store.close()
    postgres = db_url.startswith("postgresql")
    # SQLite keeps them all (dropping one rebuilds its table); PostgreSQL keeps the
    # work row's, which a redrive of a purged execution still fails on.
    assert _foreign_keys(db_url) == {
        **every,
        "journal": not postgres,
        "history_events": not postgres,
    }
