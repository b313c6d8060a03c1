"""PostgreSQL functions that migrations create, from migration 15 on, frozen as applied.

`migrations.py` holds the numbered migrations; the text of a PL/pgSQL function
one of them creates is long, so from migration 15 on it lives here, kept
exactly as applied: a change is a new function under a new name, created by
a new migration (the function before it stays defined, for processes that
still call it). `COMMIT_FUNCTION_V3` is the group commit's one statement
(`fastcommit._one_call` builds its batch); `COMMIT_FUNCTION_V2` is the one
before it, for a database at 15 to 18.
"""

from __future__ import annotations

__all__ = ["COMMIT_FUNCTION_V2", "COMMIT_FUNCTION_V3"]

# Migration 15's function: `stepwise_commit_v1` (migrations.py) with the same
# contract, arguments, answer and order of work, reading the batch as `jsonb`
# instead of `json`. A `json` value is text: each `->>` re-parses its element
# from the start, so reading six columns of a row parsed it six times over
# (the journal's and the history's rows are most of a group). `jsonb` is
# parsed once, when the batch is cast, and `->>` then indexes into it: about
# half the function's server time for a group of 500-650 rows
# (benchmarks/PROFILE_STORE.md, session s8jsonb). Every UPDATE and DELETE is
# still by primary key.
COMMIT_FUNCTION_V2 = """
CREATE FUNCTION stepwise_commit_v2(p_worker text, p_now timestamptz, p_batch text)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    b jsonb := p_batch::jsonb;
    ids text[] := ARRAY(SELECT jsonb_array_elements_text(b->'ids'));
    held integer;
    item jsonb;
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
    SELECT r->>0, r->>1, r->>2, p_now FROM jsonb_array_elements(b->'journal') AS r;
    INSERT INTO history_events
        (execution_id, event_id, previous_event_id, type, timestamp, details)
    SELECT r->>0, (r->>1)::integer, (r->>2)::integer, r->>3, (r->>4)::timestamptz, r->>5
    FROM jsonb_array_elements(b->'events') AS r;
    -- One indexed UPDATE per row: a join with json_array_elements is planned
    -- for 100 rows and reads the whole executions table (a hash join).
    FOR item IN SELECT jsonb_array_elements(b->'progress') LOOP
        UPDATE executions SET last_event_id = (item->>1)::integer
        WHERE execution_id = item->>0;
    END LOOP;
    FOR item IN SELECT jsonb_array_elements(b->'finish') LOOP
        UPDATE executions SET status = item->>1, output = item->>2, error = item->>3,
            cause = item->>4, stop_date = (item->>5)::timestamptz
        WHERE execution_id = item->>0;
        -- The outbox (outbox_hook.ENQUEUE_SQL as it stands at migration 15).
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
    FOR item IN SELECT jsonb_array_elements(b->'release') LOOP
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


# Migration 19's function: v2 with the history as blocks (engine/store/blocks.py).
# The batch's `blocks` are (execution, first event id, last event id, events
# text) built by the client exactly as SQLite's commit builds them (same
# caps, same sealing, same JSON text), inserted as they come; it has no
# `events` rows. Each execution with a block moves its `last_event_id` by
# compare-and-set (`advance`: set to `last` only while the stored one is
# below the block's first id), the blocks' unique-key safety net: an
# execution whose row does not move makes the function raise
# unique_violation (SQLSTATE 23505, an IntegrityError to the client),
# having written nothing, as a duplicate event row did. The id "" is no
# execution's (the warm-up's items use it): its miss raises nothing.
# `progress` (executions without a block) never moves `last_event_id`
# backwards (GREATEST). The rest is v2's, unchanged.
COMMIT_FUNCTION_V3 = """
CREATE FUNCTION stepwise_commit_v3(p_worker text, p_now timestamptz, p_batch text)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    b jsonb := p_batch::jsonb;
    ids text[] := ARRAY(SELECT jsonb_array_elements_text(b->'ids'));
    held integer;
    item jsonb;
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
    SELECT r->>0, r->>1, r->>2, p_now FROM jsonb_array_elements(b->'journal') AS r;
    INSERT INTO history_blocks (execution_id, first_event_id, last_event_id, events)
    SELECT r->>0, (r->>1)::integer, (r->>2)::integer, r->>3
    FROM jsonb_array_elements(b->'blocks') AS r;
    -- One indexed UPDATE per row: a join with json_array_elements is planned
    -- for 100 rows and reads the whole executions table (a hash join).
    FOR item IN SELECT jsonb_array_elements(b->'advance') LOOP
        UPDATE executions SET last_event_id = (item->>1)::integer
        WHERE execution_id = item->>0 AND last_event_id < (item->>2)::integer;
        IF NOT FOUND AND item->>0 <> '' THEN
            RAISE EXCEPTION USING ERRCODE = 'unique_violation',
                MESSAGE = 'history blocks: events of ' || (item->>0) || ' from '
                    || (item->>2) || ' already recorded';
        END IF;
    END LOOP;
    FOR item IN SELECT jsonb_array_elements(b->'progress') LOOP
        UPDATE executions SET last_event_id = GREATEST(last_event_id, (item->>1)::integer)
        WHERE execution_id = item->>0;
    END LOOP;
    FOR item IN SELECT jsonb_array_elements(b->'finish') LOOP
        UPDATE executions SET status = item->>1, output = item->>2, error = item->>3,
            cause = item->>4, stop_date = (item->>5)::timestamptz
        WHERE execution_id = item->>0;
        -- The outbox (outbox_hook.ENQUEUE_SQL as it stands at migration 19).
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
    FOR item IN SELECT jsonb_array_elements(b->'release') LOOP
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
