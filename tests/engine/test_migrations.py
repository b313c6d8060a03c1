"""Migrations that add an index leave an index already there alone (both stores).

Migrations 4, 5 and 6 add an index "if it is missing", as they always have:
a database whose operator created the index by hand (or an upgrade that
stopped after the index and before its version row) still upgrades, and
ends with one index of that name.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from engine.store import Store
from engine.store.schema import MIGRATIONS, SCHEMA_VERSION


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
