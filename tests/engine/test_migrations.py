"""Migrations that add an index leave an index already there alone (both stores).

Migrations 4, 5 and 6 add an index "if it is missing", as they always have:
a database whose operator created the index by hand (or an upgrade that
stopped after the index and before its version row) still upgrades, and
ends with one index of that name. Migration 20 drops one "if it exists".
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from engine.api import Engine
from engine.store import Store, schema
from engine.store.schema import MIGRATIONS, SCHEMA_VERSION

SUCCEED = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}


def test_an_index_a_migration_adds_may_already_exist(db_url: str) -> None:
    Store(db_url, auto_migrate=False).close()  # an empty database, created
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
            for version, _description, step in MIGRATIONS[:3]:
                step(conn)
                conn.execute(
                    sa.text("INSERT INTO schema_migrations VALUES (:v, :t)"),
                    {"v": version, "t": now},
                )
            conn.execute(
                sa.text(
                    "CREATE INDEX ix_executions_start_id ON executions (start_date, execution_id)"
                )
            )
            conn.execute(sa.text("CREATE INDEX ix_executions_stop_date ON executions (stop_date)"))
        store = Store(db_url)
        try:
            assert store.schema_version() == SCHEMA_VERSION
        finally:
            store.close()
        indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("executions")}
        assert {"ix_executions_start_id", "ix_executions_stop_date"} <= indexes
        work = {ix["name"] for ix in sa.inspect(engine).get_indexes("work_queue")}
        assert "ix_work_queue_queue_due_at" in work
    finally:
        engine.dispose()


def _work_indexes(engine: sa.Engine) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(engine).get_indexes("work_queue")}


@pytest.mark.parametrize("dropped_by_hand", [False, True], ids=["as-built", "already-dropped"])
def test_migration_20_drops_the_due_index_and_claims_still_find_work(
    db_url: str, monkeypatch: pytest.MonkeyPatch, dropped_by_hand: bool
) -> None:
    """A version-19 database loses ix_work_queue_due_at; its queued work is still claimed.

    Every claim filters on its queue, so ix_work_queue_queue_due_at serves
    it (on SQLite the claim's plan is checked to use it). An index an
    operator already dropped is no obstacle to the upgrade.
    """
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:19])
        patched.setattr(schema, "SCHEMA_VERSION", 19)
        # No worker: the execution's work row waits for a claim.
        with Engine(db_url, worker=False) as old:
            old.create_state_machine_sync("m", SUCCEED)
            old.start_sync("m", {}, name="queued")
    engine = sa.create_engine(db_url)
    try:
        assert "ix_work_queue_due_at" in _work_indexes(engine)
        if dropped_by_hand:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP INDEX ix_work_queue_due_at"))
        with Engine(db_url, poll_seconds=0.1) as upgraded:  # opening it migrates
            assert upgraded.store.schema_version() == SCHEMA_VERSION == 20
            assert upgraded.wait_sync("queued", timeout=120).status == "SUCCEEDED"
        assert "ix_work_queue_due_at" not in _work_indexes(engine)
        assert "ix_work_queue_queue_due_at" in _work_indexes(engine)
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                plan = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT execution_id FROM work_queue "
                    "WHERE queue = 'default' AND due_at <= '2030-01-01 00:00:00.000000' "
                    "ORDER BY due_at, execution_id LIMIT 8"
                ).all()
            assert any("ix_work_queue_queue_due_at" in str(row[-1]) for row in plan), plan
    finally:
        engine.dispose()


def test_a_fresh_database_has_no_due_index(db_url: str) -> None:
    Store(db_url).close()
    engine = sa.create_engine(db_url)
    try:
        assert _work_indexes(engine) == {"ix_work_queue_queue_due_at"}
    finally:
        engine.dispose()
