"""The store's current tables (SQLAlchemy Core) and the entry to its numbered migrations.

`metadata` describes the current schema and is what the store queries; it is
assembled from the steps' definitions in `tables.py`. `SCHEMA_VERSION` is
the last migration's number. `migrate()` applies the missing migrations
inside the caller's transaction, which holds the database's migration lock
(the backend's: PostgreSQL's transaction-scoped advisory lock, SQLite's
BEGIN IMMEDIATE), and records each in `schema_migrations`, so two processes
upgrading at once apply every step exactly once. The steps' bodies
(`migrations.py`, also `schema.MIGRATIONS`) are imported by `migrate()` only
when the database is behind, and dropped after it: a process on a migrated
database never loads them, a fresh one gives them back before its work.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store.tables import (
    UTCDateTime,
    define_activities_and_tags,
    define_alerts,
    define_executions_newest_first_index,
    define_history_blocks,
    define_machine_deletion,
    define_map_runs,
    define_queues,
    define_redrive,
    define_retention_index,
    define_schedules,
    define_v1,
    define_v2,
    define_versions_and_aliases,
    execution_version_columns,
    schema_migrations_table,
    superseded_due_index,
)

if TYPE_CHECKING:
    from engine.store.migrations import MIGRATIONS

__all__ = [
    "HISTORY_BLOCKS_VERSION",
    "MIGRATIONS",
    "PG_BLOCK_WRITES_VERSION",
    "SCHEMA_VERSION",
    "UTCDateTime",
    "activities",
    "activity_tasks",
    "alert_deliveries",
    "alerts",
    "current_version",
    "executions",
    "history_blocks",
    "history_events",
    "journal",
    "machine_aliases",
    "map_run_children",
    "map_runs",
    "metadata",
    "migrate",
    "published_versions",
    "resource_tags",
    "schedule_ticks",
    "schedules",
    "schema_migrations",
    "sql_effects",
    "state_machine_versions",
    "state_machines",
    "task_tokens",
    "work_queue",
]

# The last entry of `migrations.MIGRATIONS` (a test checks they agree): known
# without loading the migrations, which a migrated database never needs.
SCHEMA_VERSION = 20
# The migration that adds history_blocks (a database opened unmigrated may be older).
HISTORY_BLOCKS_VERSION = 18
# The migration from which PostgreSQL's commits write history blocks (its
# commit function `stepwise_commit_v3`); SQLite's write them from 18.
PG_BLOCK_WRITES_VERSION = 19

_MIGRATIONS_MODULE = "engine.store.migrations"
_Step = tuple[int, str, Callable[[Connection], None]]


metadata = sa.MetaData()
schema_migrations = schema_migrations_table(metadata)
define_v1(metadata)
define_v2(metadata)
metadata.remove(metadata.tables["timers"])  # dropped by migration 3
define_executions_newest_first_index(metadata)
define_queues(metadata)
superseded_due_index(metadata)  # dropped by migration 20
define_retention_index(metadata)
define_redrive(metadata)
define_versions_and_aliases(metadata)
for _column in execution_version_columns():
    metadata.tables["executions"].append_column(_column)
define_schedules(metadata)
define_alerts(metadata)
define_machine_deletion(metadata)
define_activities_and_tags(metadata)
define_map_runs(metadata)
define_history_blocks(metadata)
state_machines = metadata.tables["state_machines"]
state_machine_versions = metadata.tables["state_machine_versions"]
executions = metadata.tables["executions"]
history_events = metadata.tables["history_events"]
history_blocks = metadata.tables["history_blocks"]
journal = metadata.tables["journal"]
task_tokens = metadata.tables["task_tokens"]
work_queue = metadata.tables["work_queue"]
activity_tasks = metadata.tables["activity_tasks"]
sql_effects = metadata.tables["sql_effects"]
published_versions = metadata.tables["published_versions"]
machine_aliases = metadata.tables["machine_aliases"]
schedules = metadata.tables["schedules"]
alerts = metadata.tables["alerts"]
alert_deliveries = metadata.tables["alert_deliveries"]
schedule_ticks = metadata.tables["schedule_ticks"]
activities = metadata.tables["activities"]
resource_tags = metadata.tables["resource_tags"]
map_runs = metadata.tables["map_runs"]
map_run_children = metadata.tables["map_run_children"]


def __getattr__(name: str) -> Any:
    """`MIGRATIONS`, the (version, description, step) list, loaded on first use."""
    if name == "MIGRATIONS":
        from engine.store.migrations import MIGRATIONS

        return MIGRATIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def current_version(conn: Connection) -> int:
    """Return the highest applied migration, 0 for an empty database."""
    if not sa.inspect(conn).has_table("schema_migrations"):
        return 0
    version: Any = conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar()
    return int(version or 0)


def migrate(conn: Connection, now: datetime) -> int:
    """Apply every missing migration inside the caller's open transaction.

    Returns the schema version reached. The caller must hold the backend's
    migration lock in this transaction (`Backend.lock_migrations`; SQLite's
    BEGIN IMMEDIATE is one), so concurrent upgrades queue up and the later
    ones find nothing left to do. Raises RuntimeError when the database is
    newer than this code knows. The migrations' module is loaded only when a
    step is missing, and unloaded afterwards unless it was loaded before.
    An empty SQLite database gets the migrated schema in one pass
    (`fresh_sqlite.py`).
    """
    schema_migrations_table(sa.MetaData()).create(conn, checkfirst=True)
    applied = current_version(conn)
    if applied > SCHEMA_VERSION:
        raise RuntimeError(
            f"the schema is at version {applied}, newer than this Stepwise "
            f"understands ({SCHEMA_VERSION}); upgrade Stepwise"
        )
    if applied == SCHEMA_VERSION:
        return SCHEMA_VERSION
    if applied == 0 and _replays_fresh(conn):
        from engine.store import fresh_sqlite

        fresh_sqlite.create(conn)
        conn.execute(
            sa.insert(schema_migrations),
            [{"version": v, "applied_at": now} for v in range(1, SCHEMA_VERSION + 1)],
        )
        return SCHEMA_VERSION
    loaded_before = _MIGRATIONS_MODULE in sys.modules
    try:
        # A test may set `schema.MIGRATIONS` to build an older schema.
        steps: list[_Step] = globals().get("MIGRATIONS") or __getattr__("MIGRATIONS")
        for version, _description, step in steps:
            if version <= applied:
                continue
            step(conn)
            conn.execute(sa.insert(schema_migrations).values(version=version, applied_at=now))
            # The step's throwaway tables are reference cycles: freed here,
            # step by step, the migrations' garbage never piles up (~1.9 MB
            # at once before), so the heap they leave behind is ~1 MB smaller
            # (pymalloc keeps an arena while any object in it lives). Young
            # generations only: ~1 ms each, on a database that is behind.
            gc.collect(1)
    finally:
        if not loaded_before:
            _unload_migrations()
    # Each step built its own throwaway tables (reference cycles): free them
    # now, before the first Engine freezes the heap (frozen garbage is never
    # freed). The young ones went step by step; ~1,800 objects of a fresh
    # database's steps had reached the oldest generation meanwhile, so this
    # collection is full: ~25 ms of CPU, once, and only when steps ran (a
    # fresh SQLite file's one pass above leaves next to nothing behind).
    gc.collect()
    return SCHEMA_VERSION


def _replays_fresh(conn: Connection) -> bool:
    """Whether an empty database may take `fresh_sqlite`'s statements for its migrations.

    Only SQLite, only when they were generated from the migrations this
    code has (`FRESH_VERSION`), not while a test has set `schema.MIGRATIONS`
    to a shorter list to build an older schema, and only when the file holds
    nothing but `schema_migrations` (a file shared with another
    application's tables goes through the migrations, as it always has).
    """
    if conn.dialect.name != "sqlite":
        return False
    from engine.store.fresh_sqlite import FRESH_VERSION

    steps: list[_Step] | None = globals().get("MIGRATIONS")
    if steps is not None and (not steps or steps[-1][0] != SCHEMA_VERSION):
        return False
    if FRESH_VERSION != SCHEMA_VERSION:
        return False
    others = conn.exec_driver_sql(
        "SELECT count(*) FROM sqlite_master WHERE tbl_name != 'schema_migrations'"
    ).scalar()
    return others == 0


def _unload_migrations() -> None:
    """Forget the migrations' module, so a collection frees its code.

    Importing a submodule also binds it on its package: both references go.
    """
    sys.modules.pop(_MIGRATIONS_MODULE, None)
    package = sys.modules.get("engine.store")
    if package is not None:
        vars(package).pop("migrations", None)
