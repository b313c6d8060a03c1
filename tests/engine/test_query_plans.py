"""The queries workers and the CLI run use indexes with 1 M events in the database.

On each store, 10,000 executions with 100 events as rows, 50 more in five
history blocks of ten, and 10 journal rows each (1,500,000 events) are
written with one INSERT … SELECT per table; then every SQL
statement the worker's calls (claim, load, stop poll) and the CLI's calls
(describe by id or name, list pages, history pages both ways, purge) send
is captured from the store's own connection and explained (EXPLAIN on
PostgreSQL, EXPLAIN QUERY PLAN on SQLite). No plan may read the events,
the journal or the executions table in full: the assertion is on the plan,
never on a timing. The statements inside PostgreSQL's group-commit function
(`stepwise_commit_v3`, migration 19) never pass through SQLAlchemy: they are
explained as they run, by auto_explain loaded into the store's sessions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.store import Checkpoint, CommitResult, Event, Finish, Store

EXECUTIONS = 10_000
EVENTS_EACH = 100
# Events 101-150 of each execution: five blocks of ten.
BLOCKS_EACH = 5
BLOCK_SIZE = 10
JOURNAL_EACH = 10
LAST_EVENT = EVENTS_EACH + BLOCKS_EACH * BLOCK_SIZE
BIG_TABLES = ("executions", "history_events", "history_blocks", "journal")

_SQLITE_FILL = [
    """
    INSERT INTO executions (execution_id, name, machine, version, status, input, start_date,
                            stop_date, trace_id, stop_requested, last_event_id)
    WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
    SELECT 'x-' || n, 'run-' || n, 'bulk', 1,
           CASE WHEN n % 100 = 0 THEN 'RUNNING' ELSE 'SUCCEEDED' END, '{}',
           strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || n || ' minutes'),
           CASE WHEN n % 100 = 0 THEN NULL
                ELSE strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || n || ' minutes') END,
           printf('%032x', n), 0, :last
    FROM g
    """,
    """
    INSERT INTO history_events (execution_id, event_id, previous_event_id, type, timestamp,
                                details)
    WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count),
                   e(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM e WHERE i < :events)
    SELECT 'x-' || n, i, i - 1, 'PassStateEntered',
           strftime('%Y-%m-%d %H:%M:%f', 'now'), '{"name": "P"}'
    FROM g, e
    """,
    """
    INSERT INTO history_blocks (execution_id, first_event_id, last_event_id, events)
    WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count),
                   b(f) AS (SELECT :events + 1 UNION ALL SELECT f + :size FROM b
                            WHERE f + :size <= :last),
                   e(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM e WHERE i + 1 < :size)
    SELECT 'x-' || n, f, f + :size - 1,
           (SELECT json_group_array(json_array(f + i, f + i - 1, 'PassStateEntered',
                                               '2025-01-01 12:00:00.000000', '{"name": "P"}'))
            FROM e)
    FROM g, b
    """,
    """
    INSERT INTO journal (execution_id, key, value, recorded_at)
    WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count),
                   j(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM j WHERE i < :journal)
    SELECT 'x-' || n, 'step:' || i, '{"v": null, "e": 0}', strftime('%Y-%m-%d %H:%M:%f', 'now')
    FROM g, j
    """,
    """
    INSERT INTO work_queue (execution_id, due_at, wakeups, wakeups_seen)
    SELECT execution_id, start_date, 0, 0 FROM executions WHERE status = 'RUNNING'
    """,
    "ANALYZE",
]

_POSTGRES_FILL = [
    """
    INSERT INTO executions (execution_id, name, machine, version, status, input, start_date,
                            stop_date, trace_id, stop_requested, last_event_id)
    SELECT 'x-' || n, 'run-' || n, 'bulk', 1,
           CASE WHEN n % 100 = 0 THEN 'RUNNING' ELSE 'SUCCEEDED' END, '{}',
           now() - n * interval '1 minute',
           CASE WHEN n % 100 = 0 THEN NULL ELSE now() - n * interval '1 minute' END,
           md5(n::text), false, :last
    FROM generate_series(1, :count) AS n
    """,
    """
    INSERT INTO history_events (execution_id, event_id, previous_event_id, type, timestamp,
                                details)
    SELECT 'x-' || n, i, i - 1, 'PassStateEntered', now(), '{"name": "P"}'
    FROM generate_series(1, :count) AS n, generate_series(1, :events) AS i
    """,
    """
    INSERT INTO history_blocks (execution_id, first_event_id, last_event_id, events)
    SELECT 'x-' || n, f, f + :size - 1, blocks.events
    FROM generate_series(1, :count) AS n,
         generate_series(:events + 1, :last, :size) AS f,
         LATERAL (SELECT json_agg(json_build_array(f + i, f + i - 1, 'PassStateEntered',
                                                   '2025-01-01 12:00:00.000000', '{"name": "P"}')
                  ORDER BY i)::text AS events
                  FROM generate_series(0, :size - 1) AS i) AS blocks
    """,
    """
    INSERT INTO journal (execution_id, key, value, recorded_at)
    SELECT 'x-' || n, 'step:' || i, '{"v": null, "e": 0}', now()
    FROM generate_series(1, :count) AS n, generate_series(1, :journal) AS i
    """,
    """
    INSERT INTO work_queue (execution_id, due_at, wakeups, wakeups_seen)
    SELECT execution_id, start_date, 0, 0 FROM executions WHERE status = 'RUNNING'
    """,
    "ANALYZE",
]


def _fill(store: Store) -> None:
    store.put_state_machine(
        "bulk", '{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}', "STANDARD"
    )
    engine = store._engine
    statements = _POSTGRES_FILL if engine.dialect.name == "postgresql" else _SQLITE_FILL
    values = {
        "count": EXECUTIONS,
        "events": EVENTS_EACH,
        "size": BLOCK_SIZE,
        "last": LAST_EVENT,
        "journal": JOURNAL_EACH,
    }
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # The fill is set-up, not a query under test: the store's statement
            # timeout (meant for its own short statements) does not apply to it;
            # on a loaded machine a million-row INSERT can outlast it.
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        for statement in statements[:-1]:
            conn.execute(sa.text(statement), values)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(statements[-1])


@contextmanager
def _captured(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """Every SELECT/UPDATE/DELETE the store sends while the block runs, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE"):
            seen.append((statement, parameters))

    sa.event.listen(store._engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", record)


def _full_scans(store: Store, statement: str, parameters: Any) -> list[str]:
    """The plan lines of `statement` that read one of the big tables in full."""
    engine = store._engine
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            plan = [row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters)]
            pattern = re.compile(rf"Seq Scan on ({'|'.join(BIG_TABLES)})\b")
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            plan = [row[-1] for row in rows]
            # "SCAN t" reads the table; "SCAN t USING INDEX i" walks an index in order
            # (a LIMITed page), "SEARCH t USING … INDEX" is a range read.
            pattern = re.compile(rf"^SCAN ({'|'.join(BIG_TABLES)})$")
        return [line for line in plan if pattern.search(line.strip())]


def test_worker_and_cli_queries_use_indexes_with_a_million_events(db_url: str) -> None:
    store = Store(db_url)
    try:
        _fill(store)
        now = datetime.now(UTC)
        with _captured(store) as statements:
            # The worker: claim due work, load an execution, poll stops.
            store.claim_due("w", limit=8, lease_seconds=30, now=now)
            loaded = store.load("x-500")
            assert len(loaded.journal) == JOURNAL_EACH
            store.stop_requests(["x-100", "x-200"])
            # The CLI: describe, list pages, history pages, purge.
            assert store.get_execution("x-42").name == "run-42"
            assert store.get_execution("run-42").execution_id == "x-42"
            page = store.list_executions(limit=100)
            store.list_executions(limit=100, after=(page[-1].start_date, page[-1].execution_id))
            store.list_executions(machine="bulk", status="SUCCEEDED", limit=100)
            first = store.history_page("x-7", limit=40)
            assert [e.event_id for e in first] == list(range(1, 41))
            store.history_page("x-7", after=40, limit=40)
            store.history_page("x-7", after=60, limit=40, reverse=True)
            # Pages in the blocks, and across rows and blocks both ways.
            inside = store.history_page("x-7", after=125, limit=10)
            assert [e.event_id for e in inside] == list(range(126, 136))
            store.history_page("x-7", after=95, limit=10)
            store.history_page("x-7", after=105, limit=10, reverse=True)
            store.history_page("x-7", limit=10, reverse=True)
            assert [e.event_id for e in store.history("x-8")] == list(range(1, LAST_EVENT + 1))
            paged = [e.event_id for p in store.iter_history("x-9", page_size=30) for e in p]
            assert paged == list(range(1, LAST_EVENT + 1))
            purged = store.purge_executions(stopped_before=now - timedelta(days=6), limit=5)
            assert len(purged) == 5
        assert len(statements) >= 15
        # The check itself sees a full read when there is one.
        no_parameters: Any = {} if store._engine.dialect.name == "postgresql" else ()
        unindexed = "SELECT * FROM history_events WHERE type = 'ExecutionFailed'"
        assert _full_scans(store, unindexed, no_parameters)
        # And a read of the blocks by their last event id (no index holds it).
        assert _full_scans(
            store, "SELECT * FROM history_blocks WHERE last_event_id = 120", no_parameters
        )
        assert sum("history_blocks" in statement for statement, _ in statements) >= 8
        problems = {
            statement: scans
            for statement, parameters in statements
            if (scans := _full_scans(store, statement, parameters))
        }
        assert problems == {}
    finally:
        store.close()


# -- inside the group commit's function (PostgreSQL) ---------------------------

# The work table joins the big ones here: the function locks its rows by id.
_FUNCTION_TABLES = (*BIG_TABLES, "work_queue")


def _plans_in(message: str) -> list[dict[str, Any]]:
    """The JSON plans in one auto_explain message ("duration: … ms  plan:\\n{…}")."""
    _, found, rest = message.partition("plan:")
    if not found:
        return []
    plan, _ = json.JSONDecoder().raw_decode(rest.strip())
    return [plan]


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _reads_in_full(plan: dict[str, Any]) -> list[str]:
    """The nodes of one statement's plan that scan a big table sequentially or hash-join one."""
    found = []
    for node in _nodes(plan["Plan"]):
        relation = node.get("Relation Name")
        if node["Node Type"] == "Seq Scan" and relation in _FUNCTION_TABLES:
            found.append(f"Seq Scan on {relation}")
        if node["Node Type"] == "Hash Join":
            joined = {str(n.get("Relation Name")) for n in _nodes(node)} & set(_FUNCTION_TABLES)
            found.extend(f"Hash Join over {name}" for name in sorted(joined))
    return found


def test_the_commit_function_and_the_purge_trigger_use_indexes_with_a_million_events(
    postgres_url: str,
) -> None:
    """Every statement `stepwise_commit_v3` and migration 18's trigger run is explained as it runs.

    Their statements never pass through SQLAlchemy, so the test above cannot
    see them: here the database loads auto_explain into every session of the
    store (nested statements included, plans as JSON sent to the client as
    NOTICEs), a group of progress, a finish and releases is committed through
    the store's normal commit path, a batch of executions is purged (their
    journal and history go by the trigger), and every plan is checked. The
    join form of the progress UPDATE (before 6934584) is planned here as a
    hash join over a sequential scan of executions.
    """
    filling = Store(postgres_url)
    try:
        _fill(filling)
        # Many executions waiting (timers far ahead): a work table of the fill's size.
        with filling._engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO work_queue (execution_id, due_at, wakeups, wakeups_seen) "
                "SELECT execution_id, now() + interval '1 day', 0, 0 FROM executions "
                "WHERE status <> 'RUNNING'"
            )
        with filling._engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "ANALYZE work_queue"
            )
    finally:
        filling.close()
    database = sa.make_url(postgres_url).database
    settings = {
        "session_preload_libraries": "auto_explain",
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_nested_statements": "on",
        "auto_explain.log_format": "json",
        "auto_explain.log_level": "notice",
    }
    admin = sa.create_engine(postgres_url)
    try:
        with admin.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("LOAD 'auto_explain'")
            for name, value in settings.items():
                conn.exec_driver_sql(f"ALTER DATABASE {database} SET {name} = '{value}'")
    finally:
        admin.dispose()

    store = Store(postgres_url)
    plans: list[dict[str, Any]] = []
    listening: set[int] = set()

    def on_notice(diagnostic: Any) -> None:
        plans.extend(_plans_in(diagnostic.message_primary or ""))

    def on_checkout(dbapi_connection: Any, *_: Any) -> None:
        if id(dbapi_connection) not in listening:
            listening.add(id(dbapi_connection))
            dbapi_connection.add_notice_handler(on_notice)

    sa.event.listen(store._engine, "checkout", on_checkout)
    try:
        now = datetime.now(UTC)
        claimed = [row[0] for row in store.claim_due("w", limit=8, lease_seconds=60, now=now)]
        assert len(claimed) == 8
        stamp = now + timedelta(seconds=1)

        def event(event_id: int, type_: str) -> Event:
            return Event(event_id, event_id - 1, type_, stamp, {"name": "P"})

        group = [
            Checkpoint(
                eid,
                journal=[("step:next", '{"v": 1, "e": 0}')],
                events=[event(LAST_EVENT + 1, "PassStateExited")],
                last_event_id=LAST_EVENT,
            )
            for eid in claimed[:5]
        ]
        # Events after the fill's blocks' (their last_event_id is LAST_EVENT).
        group.append(
            Checkpoint(
                claimed[5],
                events=[event(LAST_EVENT + 1, "ExecutionSucceeded")],
                last_event_id=LAST_EVENT,
                finish=Finish("SUCCEEDED", stamp, output="{}"),
            )
        )
        group += [
            Checkpoint(eid, events=[event(LAST_EVENT + 1, "WaitStateEntered")], release=True)
            for eid in claimed[6:]
        ]
        plans.clear()
        results = store.commit(group, worker_id="w", now=stamp)
        assert results == [CommitResult.OK] * len(group)
        assert store.get_execution(claimed[5]).status == "SUCCEEDED"
        # Migration 17's trigger: the purge's journal and history deletes.
        plans.append({"Query Text": "-- the purge --", "Plan": {"Node Type": "Result"}})
        purged = store.purge_executions(stopped_before=now - timedelta(days=6), limit=5)
        assert len(purged) == 5
    finally:
        sa.event.remove(store._engine, "checkout", on_checkout)
        store.close()

    texts = [plan.get("Query Text", "") for plan in plans]
    # The check sees the function's own statements, not only the call.
    assert any("stepwise_commit_v3" in text for text in texts), texts
    purge = texts.index("-- the purge --")
    for inside in ("INSERT INTO history_blocks", "SET last_event_id", "DELETE FROM work_queue"):
        assert any(inside in text for text in texts[:purge]), (inside, texts)
    for inside in (
        "DELETE FROM journal",
        "DELETE FROM history_events",
        "DELETE FROM history_blocks",
    ):
        assert any(inside in text for text in texts[purge:]), (inside, texts)
    problems = {
        plan.get("Query Text", ""): found for plan in plans if (found := _reads_in_full(plan))
    }
    assert problems == {}
