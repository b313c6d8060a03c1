"""The queries workers and the CLI run use indexes with 1 M events in the database.

On each store, 10,000 executions with 100 events and 10 journal rows each
(1,000,000 events) are written with one INSERT … SELECT; then every SQL
statement the worker's calls (claim, load, stop poll) and the CLI's calls
(describe by id or name, list pages, history pages both ways, purge) send
is captured from the store's own connection and explained (EXPLAIN on
PostgreSQL, EXPLAIN QUERY PLAN on SQLite). No plan may read the events,
the journal or the executions table in full: the assertion is on the plan,
never on a timing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.store import Store

EXECUTIONS = 10_000
EVENTS_EACH = 100
JOURNAL_EACH = 10
BIG_TABLES = ("executions", "history_events", "journal")

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
           printf('%032x', n), 0, :events
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
           md5(n::text), false, :events
    FROM generate_series(1, :count) AS n
    """,
    """
    INSERT INTO history_events (execution_id, event_id, previous_event_id, type, timestamp,
                                details)
    SELECT 'x-' || n, i, i - 1, 'PassStateEntered', now(), '{"name": "P"}'
    FROM generate_series(1, :count) AS n, generate_series(1, :events) AS i
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
    values = {"count": EXECUTIONS, "events": EVENTS_EACH, "journal": JOURNAL_EACH}
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
            assert sum(len(p) for p in store.iter_history("x-9", page_size=30)) == EVENTS_EACH
            purged = store.purge_executions(stopped_before=now - timedelta(days=6), limit=5)
            assert len(purged) == 5
        assert len(statements) >= 15
        # The check itself sees a full read when there is one.
        no_parameters: Any = {} if store._engine.dialect.name == "postgresql" else ()
        unindexed = "SELECT * FROM history_events WHERE type = 'ExecutionFailed'"
        assert _full_scans(store, unindexed, no_parameters)
        problems = {
            statement: scans
            for statement, parameters in statements
            if (scans := _full_scans(store, statement, parameters))
        }
        assert problems == {}
    finally:
        store.close()
