"""The store's tables (SQLAlchemy Core) and its numbered migrations.

`metadata` describes the current schema and is what the store queries.
`MIGRATIONS` is the ordered list of steps that builds it; `migrate()` applies
the missing ones inside the caller's transaction, which holds the database's
migration lock (the backend's: PostgreSQL's transaction-scoped advisory lock,
SQLite's BEGIN IMMEDIATE), and records each in `schema_migrations`, so two
processes upgrading at once apply every step exactly once. A migration never
reads `metadata`: it builds its own frozen tables, so adding migration N+1
cannot change what migration N does to a fresh database. Timestamps are timezone-aware UTC datetimes
(`UTCDateTime`); JSON payloads are text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from engine.store.pgfunctions import COMMIT_FUNCTION_V2
from engine.store.records import DEFAULT_QUEUE

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "UTCDateTime",
    "activities",
    "activity_tasks",
    "alert_deliveries",
    "alerts",
    "current_version",
    "executions",
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


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC datetime on both backends.

    PostgreSQL stores TIMESTAMPTZ. SQLite has no time type: SQLAlchemy keeps a
    fixed-width ISO string, so the value is normalized to naive UTC on the way
    in (lexical order is then time order, which `due_at <= now` relies on) and
    marked UTC on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only takes aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _define_v1(md: sa.MetaData) -> None:
    """The tables as migration 1 creates them."""
    sa.Table(
        "state_machines",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "state_machine_versions",
        md,
        sa.Column("machine_id", sa.Integer, sa.ForeignKey("state_machines.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("machine_type", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "executions",
        md,
        sa.Column("execution_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("machine", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("cause", sa.Text),
        sa.Column("start_date", UTCDateTime, nullable=False),
        sa.Column("stop_date", UTCDateTime),
        sa.Column("trace_id", sa.Text, nullable=False),
        sa.Column("stop_requested", sa.Boolean, nullable=False, default=False),
        sa.Column("stop_requested_error", sa.Text),
        sa.Column("stop_requested_cause", sa.Text),
        sa.Column("last_event_id", sa.Integer, nullable=False),
        sa.UniqueConstraint("machine", "name", name="uq_executions_machine_name"),
        sa.Index("ix_executions_status", "status"),
        sa.Index("ix_executions_machine_start", "machine", "start_date"),
        sa.Index("ix_executions_name", "name"),
    )
    sa.Table(
        "history_events",
        md,
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey("executions.execution_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("previous_event_id", sa.Integer, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
    )
    sa.Table(
        "journal",
        md,
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey("executions.execution_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "timers",
        md,
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey("executions.execution_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("fire_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "task_tokens",
        md,
        sa.Column("token", sa.Text, primary_key=True),
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey("executions.execution_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("state_name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Index("ix_task_tokens_execution", "execution_id"),
    )
    sa.Table(
        "work_queue",
        md,
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey("executions.execution_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        # NULL: nothing is due by itself; only a callback or a stop wakes it.
        sa.Column("due_at", UTCDateTime),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", UTCDateTime),
        # Bumped by every callback/stop; the claim remembers the value it saw,
        # so a release can tell that a signal arrived while it held the lease.
        sa.Column("wakeups", sa.Integer, nullable=False, default=0),
        sa.Column("wakeups_seen", sa.Integer, nullable=False, default=0),
        sa.Index("ix_work_queue_due_at", "due_at"),
    )


def _schema_migrations_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "schema_migrations",
        md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("applied_at", UTCDateTime, nullable=False),
    )


def _migration_1(conn: Connection) -> None:
    """Create the first schema: machines, executions, history, journal, timers, tokens, queue."""
    frozen = sa.MetaData()
    _define_v1(frozen)
    frozen.create_all(conn)


def _define_v2(md: sa.MetaData) -> None:
    """Tables migration 2 adds: queued activity tasks and SQL activity effects."""
    sa.Table(
        "activity_tasks",
        md,
        sa.Column("token", sa.Text, primary_key=True),
        sa.Column("activity", sa.Text, nullable=False),
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey("executions.execution_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("worker_name", sa.Text),
        sa.Column("started_at", UTCDateTime),
        sa.Index("ix_activity_tasks_queue", "activity", "started_at", "created_at"),
    )
    sa.Table(
        "sql_effects",
        md,
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey("executions.execution_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )


def _migration_2(conn: Connection) -> None:
    """Add activity_tasks (activity workers' queue) and sql_effects (SQL activities)."""
    frozen = sa.MetaData()
    _define_v1(frozen)
    _define_v2(frozen)
    for name in ("activity_tasks", "sql_effects"):
        frozen.tables[name].create(conn)


def _migration_3(conn: Connection) -> None:
    """Drop timers: nothing read it; durable timers are due rows in work_queue."""
    frozen = sa.MetaData()
    _define_v1(frozen)
    frozen.tables["timers"].drop(conn)


def _define_executions_newest_first_index(md: sa.MetaData) -> sa.Index:
    """The index ListExecutions pages by: newest first, ties broken by execution id."""
    table = md.tables["executions"]
    return sa.Index("ix_executions_start_id", table.c.start_date, table.c.execution_id)


def _migration_4(conn: Connection) -> None:
    """Add ix_executions_start_id so each page of ListExecutions is an index range scan."""
    frozen = sa.MetaData()
    _define_v1(frozen)
    _define_executions_newest_first_index(frozen).create(conn, checkfirst=True)


def _queue_column() -> sa.Column[str]:
    """The queue an execution is on (Temporal's task queue); old rows are on the default one."""
    return sa.Column("queue", sa.Text, nullable=False, server_default=DEFAULT_QUEUE)


def _define_queues(md: sa.MetaData) -> sa.Index:
    """What the queues migration adds to `md`: the queue columns and the claim index."""
    md.tables["executions"].append_column(_queue_column())
    work = md.tables["work_queue"]
    work.append_column(_queue_column())
    return sa.Index("ix_work_queue_queue_due_at", work.c.queue, work.c.due_at)


def _migration_queues(conn: Connection) -> None:
    """Add executions.queue and work_queue.queue (default 'default') and their claim index.

    A worker claims only its queue's work, so ``stepwise run`` (a private
    queue) never loses its execution to a worker that lacks its handlers.
    """
    for table in ("executions", "work_queue"):
        conn.execute(
            sa.text(f"ALTER TABLE {table} ADD COLUMN queue TEXT NOT NULL DEFAULT '{DEFAULT_QUEUE}'")
        )
    frozen = sa.MetaData()
    _define_v1(frozen)
    _define_queues(frozen).create(conn, checkfirst=True)


def _define_retention_index(md: sa.MetaData) -> sa.Index:
    """The index retention purges by: closed executions, oldest stop first."""
    table = md.tables["executions"]
    return sa.Index("ix_executions_stop_date", table.c.stop_date)


def _migration_6(conn: Connection) -> None:
    """Add ix_executions_stop_date so each purge batch is an index range scan, not a table scan."""
    frozen = sa.MetaData()
    _define_v1(frozen)
    _define_retention_index(frozen).create(conn, checkfirst=True)


def _redrive_columns() -> list[sa.Column[Any]]:
    """What an execution keeps of its redrives: the count, the last date and its client token."""
    return [
        sa.Column("redrive_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("redrive_date", UTCDateTime),
        sa.Column("redrive_token", sa.Text),
    ]


def _define_redrive(md: sa.MetaData) -> None:
    for column in _redrive_columns():
        md.tables["executions"].append_column(column)


def _migration_redrive(conn: Connection) -> None:
    """Add executions.redrive_count, redrive_date and redrive_token (RedriveExecution).

    Executions recorded before it have never been redriven: count 0, no date.
    """
    kind = sa.DateTime(timezone=True).compile(dialect=conn.dialect)
    conn.execute(
        sa.text("ALTER TABLE executions ADD COLUMN redrive_count INTEGER NOT NULL DEFAULT 0")
    )
    conn.execute(sa.text(f"ALTER TABLE executions ADD COLUMN redrive_date {kind}"))
    conn.execute(sa.text("ALTER TABLE executions ADD COLUMN redrive_token TEXT"))


def _define_versions_and_aliases(md: sa.MetaData) -> None:
    """What migration 7 adds: published versions, aliases, and executions' version/alias."""
    sa.Table(
        "published_versions",
        md,
        sa.Column("machine_id", sa.Integer, sa.ForeignKey("state_machines.id"), primary_key=True),
        # AWS's version number: 1, 2, … per machine, never reused (deleted rows stay, marked).
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        # The revision (state_machine_versions.version) it snapshots.
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("deleted_at", UTCDateTime),
    )
    sa.Table(
        "machine_aliases",
        md,
        sa.Column("machine_id", sa.Integer, sa.ForeignKey("state_machines.id"), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("description", sa.Text),
        # JSON: [[version number, weight], …], one or two routes.
        sa.Column("routes", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def _execution_version_columns() -> list[sa.Column[Any]]:
    """The published version and alias an execution was started through (NULL: neither)."""
    return [sa.Column("published_version", sa.Integer), sa.Column("alias", sa.Text)]


def _migration_versions_and_aliases(conn: Connection) -> None:
    """Add published_versions and machine_aliases, and executions.published_version/alias."""
    frozen = sa.MetaData()
    _define_v1(frozen)
    _define_versions_and_aliases(frozen)
    for name in ("published_versions", "machine_aliases"):
        frozen.tables[name].create(conn)
    conn.execute(sa.text("ALTER TABLE executions ADD COLUMN published_version INTEGER"))
    conn.execute(sa.text("ALTER TABLE executions ADD COLUMN alias TEXT"))


def _define_schedules(md: sa.MetaData) -> None:
    """Tables the schedules migration adds: schedules (each a due row) and their ticks."""
    sa.Table(
        "schedules",
        md,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("machine", sa.Text, nullable=False),
        sa.Column("expression", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("overlap", sa.Text, nullable=False),
        sa.Column("catchup_window_seconds", sa.Float, nullable=False),
        sa.Column("jitter_seconds", sa.Float, nullable=False),
        sa.Column("start_date", UTCDateTime),
        sa.Column("end_date", UTCDateTime),
        sa.Column("scheduled_time_key", sa.Text),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("anchor", UTCDateTime, nullable=False),
        # The first tick not yet looked at, and the ticks held back by the overlap policy.
        sa.Column("next_tick", UTCDateTime),
        sa.Column("buffered", sa.Text, nullable=False),
        sa.Column("last_execution_id", sa.Text),
        sa.Column("due_at", UTCDateTime),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Index("ix_schedules_due_at", "due_at"),
    )
    sa.Table(
        "schedule_ticks",
        md,
        sa.Column("schedule", sa.Text, primary_key=True),
        sa.Column("tick", UTCDateTime, primary_key=True),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("execution_id", sa.Text),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
    )


def _migration_schedules(conn: Connection) -> None:
    """Add schedules (each a due row workers claim) and schedule_ticks (what each tick did)."""
    frozen = sa.MetaData()
    _define_schedules(frozen)
    frozen.create_all(conn)


def _define_alerts(md: sa.MetaData) -> None:
    """Tables the alerts migration adds: alert and trigger rules, their deliveries (the outbox)."""
    sa.Table(
        "alerts",
        md,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("machine", sa.Text),  # None: every state machine
        # The statuses it fires on, as ",FAILED,TIMED_OUT," (matched with LIKE in the commit).
        sa.Column("statuses", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),  # a webhook URL or python:MODULE:FUNCTION
        sa.Column("secret", sa.Text),  # sealed by the payload codec
        sa.Column("headers", sa.Text, nullable=False),  # JSON object, sealed
        sa.Column("include_payloads", sa.Boolean, nullable=False),
        # "alert", or "trigger" (its target is start:output|input:MACHINE).
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("paused", sa.Integer, nullable=False),  # 0 or 1: plain in the outbox's SQL
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "alert_deliveries",
        md,
        # "<execution arn>|<alert>|<status>": one delivery per alert and status change.
        sa.Column("delivery_id", sa.Text, primary_key=True),
        sa.Column("alert", sa.Text, nullable=False),
        sa.Column("execution_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),  # PENDING, DELIVERED, DEAD
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime),
        sa.Index("ix_alert_deliveries_due", "state", "next_attempt_at"),
    )


def _migration_alerts(conn: Connection) -> None:
    """Add alerts and alert_deliveries (the outbox the finishing commit writes to)."""
    frozen = sa.MetaData()
    _define_alerts(frozen)
    frozen.create_all(conn)


def _define_machine_deletion(md: sa.MetaData) -> None:
    md.tables["state_machines"].append_column(sa.Column("deleted_at", UTCDateTime))


def _migration_machine_deletion(conn: Connection) -> None:
    """Add state_machines.deleted_at (DeleteStateMachine): NULL for a live machine."""
    kind = sa.DateTime(timezone=True).compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE state_machines ADD COLUMN deleted_at {kind}"))


def _define_activities_and_tags(md: sa.MetaData) -> None:
    """Tables the activities-and-tags migration adds: the API's activities, resource tags."""
    sa.Table(
        "activities",
        md,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "resource_tags",
        md,
        # "stateMachine:NAME" or "activity:NAME": the ARN without region and account.
        sa.Column("resource", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def _migration_activities_and_tags(conn: Connection) -> None:
    """Add activities and resource_tags (kept by the server's process before, lost on restart)."""
    frozen = sa.MetaData()
    _define_activities_and_tags(frozen)
    frozen.create_all(conn)


def _define_map_runs(md: sa.MetaData) -> None:
    """Distributed Map's Map Runs and their children (issue 13)."""
    sa.Table(
        "map_runs",
        md,
        sa.Column("map_run_id", sa.Text, primary_key=True),
        sa.Column("arn", sa.Text, nullable=False, unique=True),
        sa.Column(
            "execution_id",
            sa.Text,
            sa.ForeignKey("executions.execution_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state_key", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        # The hidden machine (``<parent machine>/<label>``) the children run.
        sa.Column("machine", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("start_date", UTCDateTime, nullable=False),
        sa.Column("stop_date", UTCDateTime),
        sa.Column("max_concurrency", sa.Integer, nullable=False),
        sa.Column("tolerated_failure_percentage", sa.Float),
        sa.Column("tolerated_failure_count", sa.Integer),
        # True once every item is a child row: only then may the run end.
        sa.Column("loaded", sa.Boolean, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("pending", sa.Integer, nullable=False),
        sa.Column("running", sa.Integer, nullable=False),
        sa.Column("succeeded", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("timed_out", sa.Integer, nullable=False),
        sa.Column("aborted", sa.Integer, nullable=False),
        sa.Column("results_written", sa.Integer, nullable=False),
        sa.Column("redrive_count", sa.Integer, nullable=False, default=0),
        sa.Column("redrive_date", UTCDateTime),
        sa.Column("error", sa.Text),
        sa.Column("cause", sa.Text),
        sa.Index("ix_map_runs_execution", "execution_id", "start_date"),
    )
    sa.Table(
        "map_run_children",
        md,
        sa.Column(
            "map_run_id",
            sa.Text,
            sa.ForeignKey("map_runs.map_run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("item_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("execution_id", sa.Text, nullable=False, unique=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("item_count", sa.Integer, nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Index("ix_map_run_children_status", "map_run_id", "status", "item_index"),
    )


def _migration_map_runs(conn: Connection) -> None:
    """Add map_runs and map_run_children (Distributed Map child executions, issue 13)."""
    frozen = sa.MetaData()
    _define_v1(frozen)  # the foreign key's target
    _define_map_runs(frozen)
    frozen.tables["map_runs"].create(conn)
    frozen.tables["map_run_children"].create(conn)


# Migration 14's function: PostgreSQL's group commit as one statement (see
# `fastcommit._one_call`, which builds `p_batch`). Frozen here as applied:
# a change is a new migration that replaces it under a new name (so is a
# change of the outbox's `ENQUEUE_SQL`, copied into it). It checks
# the leases first, under the work rows' locks taken in id order, and raises
# (SQLSTATE P0001) unless every one is held by `p_worker` and unexpired
# at `p_now`; a row colliding with a unique key raises too. Either aborts the
# statement's transaction, so nothing is written and the caller's careful
# path decides. Then, in the pipeline's order: journal and history rows,
# progress, finishes (status, outbox, tokens closed, work done), releases.
# It returns whether released work fell due now (and then NOTIFYs the
# workers, delivered at COMMIT).
_COMMIT_FUNCTION_V1 = """
CREATE FUNCTION stepwise_commit_v1(p_worker text, p_now timestamptz, p_batch text)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    b json := p_batch::json;
    ids text[] := ARRAY(SELECT json_array_elements_text(b->'ids'));
    held integer;
    item json;
    due timestamptz;
    wake boolean := false;
BEGIN
    SELECT count(*) INTO held FROM (
        SELECT 1 FROM work_queue
        WHERE execution_id = ANY(ids) AND lease_owner = p_worker AND lease_expires_at > p_now
        ORDER BY execution_id FOR UPDATE
    ) AS locked;
    IF held <> cardinality(ids) THEN
        RAISE EXCEPTION 'a lease of the group is not held';
    END IF;
    INSERT INTO journal (execution_id, key, value, recorded_at)
    SELECT r->>0, r->>1, r->>2, p_now FROM json_array_elements(b->'journal') AS r;
    INSERT INTO history_events
        (execution_id, event_id, previous_event_id, type, timestamp, details)
    SELECT r->>0, (r->>1)::integer, (r->>2)::integer, r->>3, (r->>4)::timestamptz, r->>5
    FROM json_array_elements(b->'events') AS r;
    -- One indexed UPDATE per row: a join with json_array_elements is planned
    -- for 100 rows and reads the whole executions table (a hash join).
    FOR item IN SELECT json_array_elements(b->'progress') LOOP
        UPDATE executions SET last_event_id = (item->>1)::integer
        WHERE execution_id = item->>0;
    END LOOP;
    FOR item IN SELECT json_array_elements(b->'finish') LOOP
        UPDATE executions SET status = item->>1, output = item->>2, error = item->>3,
            cause = item->>4, stop_date = (item->>5)::timestamptz
        WHERE execution_id = item->>0;
        -- The outbox (outbox_hook.ENQUEUE_SQL as it stands at migration 14).
        INSERT INTO alert_deliveries (delivery_id, alert, execution_id, status, state, attempts,
            next_attempt_at, created_at)
        SELECT (item->>0) || '|' || alerts.name || '|' || (item->>1)
            || (SELECT CASE WHEN redrive_count > 0 THEN '|r' || redrive_count ELSE '' END
                FROM executions WHERE execution_id = item->>0),
            alerts.name, item->>0, item->>1, 'PENDING', 0,
            (item->>5)::timestamptz, (item->>5)::timestamptz
        FROM alerts
        WHERE alerts.paused = 0 AND alerts.statuses LIKE '%,' || (item->>1) || ',%'
            AND (alerts.machine IS NULL OR alerts.machine =
                (SELECT machine FROM executions WHERE execution_id = item->>0))
        ON CONFLICT (delivery_id) DO NOTHING;
        UPDATE task_tokens SET status = 'TIMED_OUT'
        WHERE execution_id = item->>0 AND status = 'OPEN';
        DELETE FROM work_queue WHERE execution_id = item->>0;
    END LOOP;
    FOR item IN SELECT json_array_elements(b->'release') LOOP
        UPDATE work_queue SET lease_owner = NULL, lease_expires_at = NULL,
            due_at = CASE WHEN wakeups <> wakeups_seen
                THEN LEAST(COALESCE((item->>1)::timestamptz, p_now), p_now)
                ELSE (item->>1)::timestamptz END,
            wakeups_seen = wakeups
        WHERE execution_id = item->>0 RETURNING due_at INTO due;
        IF due <= p_now THEN
            wake := true;
        END IF;
    END LOOP;
    IF wake THEN
        PERFORM pg_notify('stepwise_work', '');
    END IF;
    RETURN wake;
END
$fn$
"""


def _migration_commit_function(conn: Connection) -> None:
    """PostgreSQL only: the group commit's one-statement function (nothing on SQLite)."""
    if conn.dialect.name == "postgresql":
        # Passed to the driver as it is: no parameters, so its %s stay literal.
        conn.execution_options(no_parameters=True).exec_driver_sql(_COMMIT_FUNCTION_V1)


def _migration_commit_function_jsonb(conn: Connection) -> None:
    """PostgreSQL only: `stepwise_commit_v2`, v1 reading its batch as jsonb (pgfunctions.py)."""
    if conn.dialect.name == "postgresql":
        conn.execution_options(no_parameters=True).exec_driver_sql(COMMIT_FUNCTION_V2)


# (version, description, step). Append only; never edit an applied step.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _migration_1),
    (2, "activity tasks and SQL effects", _migration_2),
    (3, "drop the unused timers table", _migration_3),
    (4, "index for paging executions newest first", _migration_4),
    (5, "queues: executions and their work carry a queue name", _migration_queues),
    (6, "retention: index of executions by stop date", _migration_6),
    (7, "redrive: executions carry their redrive count, date and token", _migration_redrive),
    (8, "published versions and aliases", _migration_versions_and_aliases),
    (9, "schedules and their ticks (issue 14)", _migration_schedules),
    (10, "alerts and their deliveries, the outbox (issue 14)", _migration_alerts),
    (11, "deleting a state machine: state_machines.deleted_at", _migration_machine_deletion),
    (12, "activities and resource tags of the HTTP API (issue 15)", _migration_activities_and_tags),
    (13, "Distributed Map runs and their child executions (issue 13)", _migration_map_runs),
    (14, "PostgreSQL: the group commit as one function call", _migration_commit_function),
    (15, "PostgreSQL: the group commit's function reads jsonb", _migration_commit_function_jsonb),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

metadata = sa.MetaData()
schema_migrations = _schema_migrations_table(metadata)
_define_v1(metadata)
_define_v2(metadata)
metadata.remove(metadata.tables["timers"])  # dropped by migration 3
_define_executions_newest_first_index(metadata)
_define_queues(metadata)
_define_retention_index(metadata)
_define_redrive(metadata)
_define_versions_and_aliases(metadata)
for _column in _execution_version_columns():
    metadata.tables["executions"].append_column(_column)
_define_schedules(metadata)
_define_alerts(metadata)
_define_machine_deletion(metadata)
_define_activities_and_tags(metadata)
_define_map_runs(metadata)
state_machines = metadata.tables["state_machines"]
state_machine_versions = metadata.tables["state_machine_versions"]
executions = metadata.tables["executions"]
history_events = metadata.tables["history_events"]
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
    newer than this code knows.
    """
    _schema_migrations_table(sa.MetaData()).create(conn, checkfirst=True)
    applied = current_version(conn)
    if applied > SCHEMA_VERSION:
        raise RuntimeError(
            f"the schema is at version {applied}, newer than this Stepwise "
            f"understands ({SCHEMA_VERSION}); upgrade Stepwise"
        )
    for version, _description, step in MIGRATIONS:
        if version <= applied:
            continue
        step(conn)
        conn.execute(sa.insert(schema_migrations).values(version=version, applied_at=now))
    return SCHEMA_VERSION
