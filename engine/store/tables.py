"""The store's tables as the migrations define them, one function per step.

Each `define_*` adds to a `MetaData` what one migration adds to the
database. `schema.py` calls them all to describe the current schema (its
`metadata`, what the store queries); each migration (`migrations.py`) calls
the ones it needs on a throwaway `MetaData` of its own, so adding a step
cannot change what an earlier one does to a fresh database. Timestamps are
timezone-aware UTC datetimes (`UTCDateTime`); JSON payloads are text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from engine.store.records import DEFAULT_QUEUE

__all__ = [
    "UTCDateTime",
    "define_activities_and_tags",
    "define_alerts",
    "define_executions_newest_first_index",
    "define_history_blocks",
    "define_machine_deletion",
    "define_map_runs",
    "define_queues",
    "define_redrive",
    "define_retention_index",
    "define_schedules",
    "define_v1",
    "define_v2",
    "define_versions_and_aliases",
    "execution_version_columns",
    "queue_column",
    "redrive_columns",
    "schema_migrations_table",
    "superseded_due_index",
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


def define_v1(md: sa.MetaData) -> None:
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


def schema_migrations_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        "schema_migrations",
        md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("applied_at", UTCDateTime, nullable=False),
    )


def define_v2(md: sa.MetaData) -> None:
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


def define_executions_newest_first_index(md: sa.MetaData) -> sa.Index:
    """The index ListExecutions pages by: newest first, ties broken by execution id."""
    table = md.tables["executions"]
    return sa.Index("ix_executions_start_id", table.c.start_date, table.c.execution_id)


def queue_column() -> sa.Column[str]:
    """The queue an execution is on (Temporal's task queue); old rows are on the default one."""
    return sa.Column("queue", sa.Text, nullable=False, server_default=DEFAULT_QUEUE)


def define_queues(md: sa.MetaData) -> sa.Index:
    """What the queues migration adds to `md`: the queue columns and the claim index."""
    md.tables["executions"].append_column(queue_column())
    work = md.tables["work_queue"]
    work.append_column(queue_column())
    return sa.Index("ix_work_queue_queue_due_at", work.c.queue, work.c.due_at)


def superseded_due_index(md: sa.MetaData) -> sa.Index:
    """Migration 20's: `ix_work_queue_due_at` of `md` (defined by `define_v1`), taken out of it.

    Every claim filters on its queue and orders by due time since the queues
    migration added `ix_work_queue_queue_due_at`; nothing reads work by due
    time alone, and the index cost a b-tree write on every start, release
    and end (`benchmarks/PROFILE.md`, s15a).
    """
    work = md.tables["work_queue"]
    index = next(ix for ix in work.indexes if ix.name == "ix_work_queue_due_at")
    work.indexes.discard(index)
    return index


def define_retention_index(md: sa.MetaData) -> sa.Index:
    """The index retention purges by: closed executions, oldest stop first."""
    table = md.tables["executions"]
    return sa.Index("ix_executions_stop_date", table.c.stop_date)


def redrive_columns() -> list[sa.Column[Any]]:
    """What an execution keeps of its redrives: the count, the last date and its client token."""
    return [
        sa.Column("redrive_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("redrive_date", UTCDateTime),
        sa.Column("redrive_token", sa.Text),
    ]


def define_redrive(md: sa.MetaData) -> None:
    for column in redrive_columns():
        md.tables["executions"].append_column(column)


def define_versions_and_aliases(md: sa.MetaData) -> None:
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


def execution_version_columns() -> list[sa.Column[Any]]:
    """The published version and alias an execution was started through (NULL: neither)."""
    return [sa.Column("published_version", sa.Integer), sa.Column("alias", sa.Text)]


def define_schedules(md: sa.MetaData) -> None:
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


def define_alerts(md: sa.MetaData) -> None:
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


def define_machine_deletion(md: sa.MetaData) -> None:
    md.tables["state_machines"].append_column(sa.Column("deleted_at", UTCDateTime))


def define_activities_and_tags(md: sa.MetaData) -> None:
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


def define_map_runs(md: sa.MetaData) -> None:
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


def define_history_blocks(md: sa.MetaData, *, foreign_key: bool = True) -> None:
    """Migration 18's table: the events of one commit of one execution as one row.

    `events` is a JSON array of `[event_id, previous_event_id, type,
    timestamp, details]` (`blocks.py`), each details sealed by the codec as
    a history_events row's. The key (execution, first event id) is the
    unique-key safety net: two writers resuming from the same point write
    the same first id. PostgreSQL creates it without the foreign key
    (migration 16's reasoning; migration 18's trigger deletes the blocks).
    """
    owner: list[Any] = (
        [sa.ForeignKey("executions.execution_id", ondelete="CASCADE")] if foreign_key else []
    )
    sa.Table(
        "history_blocks",
        md,
        sa.Column("execution_id", sa.Text, *owner, primary_key=True),
        sa.Column("first_event_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_event_id", sa.Integer, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
    )
