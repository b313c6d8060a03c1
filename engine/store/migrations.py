"""The bodies of the store's numbered migrations, loaded only to run them.

`MIGRATIONS` is the ordered list of steps that builds the schema
`schema.metadata` describes; `schema.migrate()` imports this module only
when a database is behind, applies the missing steps and drops the module
again, so a process on a migrated database never holds their code. A
migration never reads `schema.metadata`: it builds its own frozen tables
from `tables.py`, so adding migration N+1 cannot change what migration N
does to a fresh database. Append only; never edit an applied step.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store.pgfunctions import COMMIT_FUNCTION_V2, COMMIT_FUNCTION_V3
from engine.store.records import DEFAULT_QUEUE
from engine.store.tables import (
    define_activities_and_tags,
    define_alerts,
    define_executions_newest_first_index,
    define_history_blocks,
    define_map_runs,
    define_queues,
    define_retention_index,
    define_schedules,
    define_v1,
    define_v2,
    define_versions_and_aliases,
    superseded_due_index,
)

__all__ = ["MIGRATIONS"]


def _create_index_if_missing(conn: Connection, index: sa.Index) -> None:
    """CREATE INDEX IF NOT EXISTS (both backends): what `checkfirst=True` does, unreflected."""
    conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))


def _migration_1(conn: Connection) -> None:
    """Create the first schema: machines, executions, history, journal, timers, tokens, queue."""
    frozen = sa.MetaData()
    define_v1(frozen)
    frozen.create_all(conn)


def _migration_2(conn: Connection) -> None:
    """Add activity_tasks (activity workers' queue) and sql_effects (SQL activities)."""
    frozen = sa.MetaData()
    define_v1(frozen)
    define_v2(frozen)
    for name in ("activity_tasks", "sql_effects"):
        frozen.tables[name].create(conn)


def _migration_3(conn: Connection) -> None:
    """Drop timers: nothing read it; durable timers are due rows in work_queue."""
    frozen = sa.MetaData()
    define_v1(frozen)
    frozen.tables["timers"].drop(conn)


def _migration_4(conn: Connection) -> None:
    """Add ix_executions_start_id so each page of ListExecutions is an index range scan."""
    frozen = sa.MetaData()
    define_v1(frozen)
    _create_index_if_missing(conn, define_executions_newest_first_index(frozen))


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
    define_v1(frozen)
    _create_index_if_missing(conn, define_queues(frozen))


def _migration_6(conn: Connection) -> None:
    """Add ix_executions_stop_date so each purge batch is an index range scan, not a table scan."""
    frozen = sa.MetaData()
    define_v1(frozen)
    _create_index_if_missing(conn, define_retention_index(frozen))


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


def _migration_versions_and_aliases(conn: Connection) -> None:
    """Add published_versions and machine_aliases, and executions.published_version/alias."""
    frozen = sa.MetaData()
    define_v1(frozen)
    define_versions_and_aliases(frozen)
    for name in ("published_versions", "machine_aliases"):
        frozen.tables[name].create(conn)
    conn.execute(sa.text("ALTER TABLE executions ADD COLUMN published_version INTEGER"))
    conn.execute(sa.text("ALTER TABLE executions ADD COLUMN alias TEXT"))


def _migration_schedules(conn: Connection) -> None:
    """Add schedules (each a due row workers claim) and schedule_ticks (what each tick did)."""
    frozen = sa.MetaData()
    define_schedules(frozen)
    frozen.create_all(conn)


def _migration_alerts(conn: Connection) -> None:
    """Add alerts and alert_deliveries (the outbox the finishing commit writes to)."""
    frozen = sa.MetaData()
    define_alerts(frozen)
    frozen.create_all(conn)


def _migration_machine_deletion(conn: Connection) -> None:
    """Add state_machines.deleted_at (DeleteStateMachine): NULL for a live machine."""
    kind = sa.DateTime(timezone=True).compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE state_machines ADD COLUMN deleted_at {kind}"))


def _migration_activities_and_tags(conn: Connection) -> None:
    """Add activities and resource_tags (kept by the server's process before, lost on restart)."""
    frozen = sa.MetaData()
    define_activities_and_tags(frozen)
    frozen.create_all(conn)


def _migration_map_runs(conn: Connection) -> None:
    """Add map_runs and map_run_children (Distributed Map child executions, issue 13)."""
    frozen = sa.MetaData()
    define_v1(frozen)  # the foreign key's target
    define_map_runs(frozen)
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


# The foreign keys migration 16 drops on PostgreSQL: each journal and
# history row a commit inserts fired an RI trigger (a `SELECT … FOR KEY
# SHARE` of its execution), about half of a 700-row commit's server time
# (benchmarks/PROFILE_STORE.md, session s12rows).
_PER_ROW_FOREIGN_KEYS = ("journal", "history_events")


def _migration_rows_without_foreign_keys(conn: Connection) -> None:
    """PostgreSQL only: journal and history_events rows no longer check their execution per row.

    Stop every process of an earlier Stepwise before this migration runs
    (earlier processes check the schema version only when they start): an
    earlier version's retention purge deletes journal and history before
    the work row it then waits for, so a commit holding that row would
    leave its rows behind, and a later start with the same name would
    replay them. Migration 17's trigger deletes them with the execution
    whoever deletes it, as defence in depth.

    What the foreign keys guaranteed, that no row outlives its execution,
    rests on two rules instead. Every writer of these rows either writes
    the execution's row or work row in the same transaction (the start, a
    redrive, a Map Run's children: work_queue keeps its foreign key, so a
    redrive of an execution deleted meanwhile fails whole), or holds a row
    the purge must lock first: the commit function's lease check locks the
    execution's work row (FOR UPDATE) until it commits, a token's answer
    its task_tokens row, an activity task's claim its activity_tasks row.
    And the one path that deletes executions (`Store.purge_executions`)
    locks the executions row and then tries each of those rows with SKIP
    LOCKED, leaving an execution a writer holds one of for a later purge
    (writers lock the work row before the executions row: waiting would
    deadlock): a writer that comes later waits for the purge, then finds
    its lease (or token, or task) gone and writes nothing (the commit
    function raises; the careful path reports LEASE_LOST). SQLite keeps its
    foreign keys: dropping one rebuilds the table, and its one writer at a
    time leaves no race to guard.
    """
    if conn.dialect.name != "postgresql":
        return
    for table in _PER_ROW_FOREIGN_KEYS:
        names = conn.execute(
            sa.text(
                "SELECT conname FROM pg_constraint WHERE contype = 'f' "
                "AND conrelid = CAST(:table AS regclass) "
                "AND confrelid = CAST('executions' AS regclass)"
            ),
            {"table": table},
        ).scalars()
        for name in list(names):
            conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))


# Migration 17's trigger: what ON DELETE CASCADE did for journal and
# history before migration 16, without the per-row check on insert. A
# statement-level trigger fires once per DELETE of executions (only a
# purge deletes them), never on the commit path.
_DELETE_EXECUTION_ROWS = """
CREATE OR REPLACE FUNCTION stepwise_delete_execution_rows() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM journal WHERE execution_id IN (SELECT execution_id FROM gone);
    DELETE FROM history_events WHERE execution_id IN (SELECT execution_id FROM gone);
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stepwise_executions_deleted AFTER DELETE ON executions
REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
EXECUTE FUNCTION stepwise_delete_execution_rows();
DELETE FROM journal j WHERE NOT EXISTS
    (SELECT 1 FROM executions e WHERE e.execution_id = j.execution_id);
DELETE FROM history_events h WHERE NOT EXISTS
    (SELECT 1 FROM executions e WHERE e.execution_id = h.execution_id);
"""


def _migration_delete_trigger(conn: Connection) -> None:
    """PostgreSQL only: deleting an execution deletes its journal and history (a trigger).

    Whoever deletes it: an earlier version's purge (whose order leaves a
    concurrent commit's rows behind without the foreign keys migration 16
    dropped), an operator's DELETE. Each statement of the trigger's
    function reads a fresh snapshot, after every lock the DELETE waited
    for, so it sees what a writer holding one committed. Without it a
    start reusing a purged execution's name would load that journal and
    replay a stale step. It also deletes rows already left behind.
    """
    if conn.dialect.name == "postgresql":
        conn.execution_options(no_parameters=True).exec_driver_sql(_DELETE_EXECUTION_ROWS)


# Migration 18's trigger function: migration 17's, deleting history blocks too.
_DELETE_EXECUTION_ROWS_V2 = """
CREATE OR REPLACE FUNCTION stepwise_delete_execution_rows() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM journal WHERE execution_id IN (SELECT execution_id FROM gone);
    DELETE FROM history_events WHERE execution_id IN (SELECT execution_id FROM gone);
    DELETE FROM history_blocks WHERE execution_id IN (SELECT execution_id FROM gone);
    RETURN NULL;
END
$fn$
"""


def _migration_history_blocks(conn: Connection) -> None:
    """Add history_blocks: one row holds the events one commit wrote for one execution.

    No data migration: rows already in history_events stay where they are,
    and the store's readers merge both tables by event id. On SQLite a block
    cascades with its execution like history_events; on PostgreSQL it has no
    foreign key (migration 16) and the trigger function of migration 17 is
    replaced by one that deletes the execution's blocks too.
    """
    frozen = sa.MetaData()
    postgres = conn.dialect.name == "postgresql"
    if not postgres:
        define_v1(frozen)  # the foreign key's target
    define_history_blocks(frozen, foreign_key=not postgres)
    frozen.tables["history_blocks"].create(conn)
    if postgres:
        conn.execution_options(no_parameters=True).exec_driver_sql(_DELETE_EXECUTION_ROWS_V2)


def _migration_commit_function_blocks(conn: Connection) -> None:
    """PostgreSQL only: `stepwise_commit_v3`, v2 writing history blocks (pgfunctions.py)."""
    if conn.dialect.name == "postgresql":
        conn.execution_options(no_parameters=True).exec_driver_sql(COMMIT_FUNCTION_V3)


def _migration_drop_superseded_due_index(conn: Connection) -> None:
    """Drop ix_work_queue_due_at: every claim reads the queues' (queue, due_at) index.

    If it is already gone (an operator dropped it), nothing to do.
    """
    frozen = sa.MetaData()
    define_v1(frozen)
    conn.execute(sa.schema.DropIndex(superseded_due_index(frozen), if_exists=True))


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
    (
        16,
        "PostgreSQL: journal and history rows without a per-row foreign key check",
        _migration_rows_without_foreign_keys,
    ),
    (
        17,
        "PostgreSQL: deleting an execution deletes its journal and history (a trigger)",
        _migration_delete_trigger,
    ),
    (18, "history blocks: one row per execution per commit", _migration_history_blocks),
    (
        19,
        "PostgreSQL: the group commit's function writes history blocks",
        _migration_commit_function_blocks,
    ),
    (
        20,
        "drop ix_work_queue_due_at: claims read the (queue, due_at) index",
        _migration_drop_superseded_due_index,
    ),
]
