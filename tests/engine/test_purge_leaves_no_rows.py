"""Purging executions leaves none of their rows behind (both stores), races included.

On PostgreSQL journal and history rows have no foreign key to their
execution since migration 16 (each row's check was half a big commit's
server time): migration 17's trigger deletes them with their execution,
whoever deletes it (an earlier version's purge too). `Store.purge_executions`
(the CLI's `executions purge`, the worker's retention) never waits on a
writer: an execution whose work row a commit holds is left for a later
purge, so a purge racing a commit neither deadlocks nor leaves rows.
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
    "history_blocks",
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


def _registry() -> Registry:
    registry = Registry()
    registry.register("work", lambda value: value)
    return registry


def _orphans(conn: sa.Connection) -> dict[str, int]:
    """Per table, the rows whose execution is gone (a table an older schema lacks: none)."""
    present = sa.inspect(conn)
    return {
        table: int(
            conn.execute(
                sa.text(
                    f"SELECT count(*) FROM {table} WHERE execution_id NOT IN "
                    "(SELECT execution_id FROM executions)"
                )
            ).scalar_one()
        )
        if present.has_table(table)
        else 0
        for table in OWNED
    }


def _age_all(conn: sa.Connection) -> None:
    then = datetime.now(UTC) - timedelta(days=100)
    conn.execute(sa.update(executions).values(start_date=then, stop_date=then))


def test_purging_every_kind_of_execution_leaves_no_rows(db_url: str) -> None:
    with Engine(db_url, registry=_registry()) as engine:
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


def _closed_with_a_leased_work_row(postgres_url: str) -> tuple[str, datetime]:
    """A closed, aged execution whose work row a worker 'w' leases (a late signal's, claimed)."""
    with Engine(postgres_url, registry=_registry()) as engine:
        engine.create_state_machine_sync("task", TASK)
        record = engine.wait_sync(engine.start_sync("task", {}, name="reused"), timeout=120)
    now = datetime.now(UTC)
    store = Store(postgres_url)
    try:
        with store._engine.begin() as conn:
            _age_all(conn)
            conn.execute(
                sa.text(
                    "INSERT INTO work_queue (execution_id, due_at, lease_owner, lease_expires_at, "
                    "wakeups, wakeups_seen) VALUES (:id, NULL, 'w', :until, 0, 0)"
                ),
                {"id": record.execution_id, "until": now + timedelta(hours=1)},
            )
    finally:
        store.close()
    return record.execution_id, now


def _late_step(execution_id: str, last_event_id: int, now: datetime) -> str:
    """A group commit's batch: a journaled step, its event and the execution's progress."""
    event = [
        execution_id,
        last_event_id + 1,
        last_event_id,
        "PassStateExited",
        now.isoformat(),
        "{}",
    ]
    return json.dumps(
        {
            "ids": [execution_id],
            "journal": [[execution_id, "late", "{}"]],
            "events": [event],
            "progress": [[execution_id, last_event_id + 1]],
            "finish": [],
            "release": [],
        }
    )


def _waiting_on_a_lock(conn: sa.Connection) -> int:
    """Sessions of this database waiting on a lock, read in a transaction of its own.

    A transaction keeps the pg_stat_activity it read first: polled in one,
    a purge that began waiting after the first poll was never seen.
    """
    try:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )
    finally:
        conn.rollback()


def test_a_purge_racing_a_commit_that_updates_the_execution_neither_deadlocks_nor_leaves_rows(
    postgres_url: str,
) -> None:
    """PostgreSQL: a purge skips an execution whose work row a commit holds; a later one purges it.

    The commit has locked the work row and waits (on a journal key another
    transaction inserts) before its progress updates the executions row:
    a purge that locked the executions row and then waited for the work
    row would deadlock with it.
    """
    execution_id, now = _closed_with_a_leased_work_row(postgres_url)
    store = Store(postgres_url)
    last_event_id = store.get_execution(execution_id).last_event_id
    blocker = psycopg.connect(_one_call(postgres_url), autocommit=True)
    writer = psycopg.connect(_one_call(postgres_url), autocommit=True)
    try:
        blocker.execute("BEGIN")
        blocker.execute(
            "INSERT INTO journal (execution_id, key, value, recorded_at) "
            "VALUES (%s, 'late', '{}', %s)",
            (execution_id, now),
        )
        writer.execute("BEGIN")
        committed: list[Any] = []
        commit = threading.Thread(
            target=lambda: committed.append(
                writer.execute(
                    "SELECT stepwise_commit_v2(%s, %s, %s)",
                    ("w", now, _late_step(execution_id, last_event_id, now)),
                ).fetchone()
            )
        )
        commit.start()
        with store._engine.connect() as watch:
            # The commit holds the work row and waits for the journal key.
            wait_until(lambda: _waiting_on_a_lock(watch) == 1, timeout=60)
            # Not waiting for the commit (nor for the store's lock timeout,
            # which would raise StoreUnavailable), it leaves the execution.
            assert store.purge_executions(stopped_before=now - timedelta(days=1)) == []
        blocker.execute("ROLLBACK")
        commit.join(timeout=60)
        assert not commit.is_alive()
        writer.execute("COMMIT")
        assert committed == [(False,)]
        assert store.get_execution(execution_id).last_event_id == last_event_id + 1
        assert store.purge_executions(stopped_before=now - timedelta(days=1)) == [execution_id]
        with store._engine.connect() as conn:
            assert _orphans(conn) == dict.fromkeys(OWNED, 0)
        # A commit after the purge finds no lease: it refuses and writes nothing.
        with pytest.raises(psycopg.errors.RaiseException):
            writer.execute(
                "SELECT stepwise_commit_v2(%s, %s, %s)",
                ("w", now, _late_step(execution_id, last_event_id, now)),
            )
    finally:
        blocker.close()
        writer.close()
        store.close()


# The retention purge of Stepwise before migration 16 (still running during
# an upgrade: a process checks the schema version only when it starts).
_EARLIER_PURGE_ORDER = (
    "history_events",
    "journal",
    "task_tokens",
    "activity_tasks",
    "sql_effects",
    "work_queue",
    "executions",
)


def _earlier_purge(url: str, execution_id: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for table in _EARLIER_PURGE_ORDER:
                conn.execute(
                    sa.text(f"DELETE FROM {table} WHERE execution_id = :id"), {"id": execution_id}
                )
    finally:
        engine.dispose()


def test_an_earlier_versions_purge_racing_a_commit_leaves_nothing_a_new_start_replays(
    postgres_url: str,
) -> None:
    """PostgreSQL: migration 17's trigger deletes the rows of a commit an earlier purge waited for.

    That purge deletes journal and history before the work row the commit
    holds; what the commit then writes would outlive its execution, and a
    start reusing the name (the same id) would load the stale journal.
    """
    execution_id, now = _closed_with_a_leased_work_row(postgres_url)
    writer = psycopg.connect(_one_call(postgres_url), autocommit=True)
    try:
        store = Store(postgres_url)
        try:
            last_event_id = store.get_execution(execution_id).last_event_id
        finally:
            store.close()
        batch = json.loads(_late_step(execution_id, last_event_id, now))
        batch["progress"] = []  # that purge locks no executions row first
        writer.execute("BEGIN")
        writer.execute(
            "SELECT stepwise_commit_v2(%s, %s, %s)", ("w", now, json.dumps(batch))
        ).fetchone()
        purge = threading.Thread(target=_earlier_purge, args=(postgres_url, execution_id))
        purge.start()
        watched = sa.create_engine(postgres_url)
        try:
            with watched.connect() as watch:
                wait_until(lambda: _waiting_on_a_lock(watch) == 1, timeout=60)
        finally:
            watched.dispose()
        writer.execute("COMMIT")
        purge.join(timeout=120)
        assert not purge.is_alive()
    finally:
        writer.close()
    store = Store(postgres_url)
    try:
        with store._engine.connect() as conn:
            assert _orphans(conn) == dict.fromkeys(OWNED, 0)
    finally:
        store.close()
    with Engine(postgres_url, registry=_registry()) as engine:
        # On a queue no worker serves: what it would replay is what it loads.
        again = engine.start_sync("task", {}, name="reused", queue="unserved")
        assert again.execution_id == execution_id
        assert engine.store.load(execution_id).journal == {}


def _at_schema(url: str, monkeypatch: pytest.MonkeyPatch, version: int) -> None:
    """Create the database as Stepwise at schema `version` did."""
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:version])
        patched.setattr(schema, "SCHEMA_VERSION", version)
        Store(url).close()


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
    _at_schema(db_url, monkeypatch, 15)
    every = dict.fromkeys(
        ("journal", "history_events", "work_queue", "task_tokens", "map_runs"), True
    )
    assert _foreign_keys(db_url) == every
    store = Store(db_url)  # opening it migrates
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION
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


def test_migration_17_deletes_rows_left_behind_and_every_later_deletion_takes_its_rows(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: rows left behind at schema 16 go; an operator's DELETE takes its rows."""
    _at_schema(postgres_url, monkeypatch, 16)
    now = datetime.now(UTC)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO journal (execution_id, key, value, recorded_at) "
                    "VALUES ('gone', 'k', '{}', :now)"
                ),
                {"now": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO history_events (execution_id, event_id, previous_event_id, "
                    "type, timestamp, details) "
                    "VALUES ('gone', 1, 0, 'ExecutionStarted', :now, '{}')"
                ),
                {"now": now},
            )
            assert _orphans(conn)["journal"] == 1
        store = Store(postgres_url)  # opening it migrates
        try:
            assert store.schema_version() == schema.SCHEMA_VERSION
        finally:
            store.close()
        with engine.connect() as conn:
            assert _orphans(conn) == dict.fromkeys(OWNED, 0)
    finally:
        engine.dispose()
    with Engine(postgres_url, registry=_registry()) as running:
        running.create_state_machine_sync("task", TASK)
        record = running.wait_sync(running.start_sync("task", {}), timeout=120)
        with running.store._engine.begin() as conn:  # an operator's DELETE, on purpose
            assert _orphans(conn)["journal"] == 0
            conn.execute(
                sa.delete(executions).where(executions.c.execution_id == record.execution_id)
            )
        with running.store._engine.connect() as conn:
            assert _orphans(conn) == dict.fromkeys(OWNED, 0)
            assert conn.execute(sa.text("SELECT count(*) FROM journal")).scalar_one() == 0
            assert conn.execute(sa.text("SELECT count(*) FROM history_events")).scalar_one() == 0
