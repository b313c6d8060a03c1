"""PostgreSQL's start batch in one round trip: every row, the NOTIFY and COMMIT pipelined.

On PostgreSQL a start batch reads first — the machine's status and
revision, and whether any name is taken, in autocommit as every read there
(`PostgresBackend.reading`) — and then sends its writes with psycopg's
pipeline mode and waits once: BEGIN, the executions rows, their
``ExecutionStarted`` events, their work rows, a NOTIFY for the workers
(none when every work row is leased already to a worker of this process),
and COMMIT. The names were checked before, outside this transaction, so another
process may have taken one since: the unique keys then abort the
transaction, nothing of the batch is written, and the caller retries each
start alone (`StartStore.start_executions`), where the existing execution
decides. The rows are those the careful path inserts (same dicts, payloads
already sealed); `tests/engine/test_start_raw_rows.py` compares them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from enum import Enum
from typing import Any

import psycopg
from sqlalchemy.engine import Engine

from engine.store.notify import CHANNEL
from engine.store.pgraw import pooled_psycopg

__all__ = ["pipelined_starts"]


def pipelined_starts(
    engine: Engine,
    execution_rows: Sequence[dict[str, Any]],
    event_rows: Sequence[dict[str, Any]],
    work_rows: Sequence[dict[str, Any]],
    *,
    notify: bool = True,
) -> bool:
    """Insert the rows of a start batch and NOTIFY in one transaction and one round trip.

    `notify` False: no NOTIFY (every work row is leased to a worker of the
    starting process already, so no worker need look).

    Returns False, having written nothing, when a unique key collides.
    Raises psycopg.OperationalError when the database fails (the store's
    boundary maps it).
    """
    try:
        with pooled_psycopg(engine) as connection, connection.pipeline():
            cursor = connection.cursor()
            for table, rows in (
                ("executions", execution_rows),
                ("history_events", event_rows),
                ("work_queue", work_rows),
            ):
                cursor.executemany(
                    _insert_sql(table, tuple(rows[0])),
                    [{k: _plain(v) for k, v in row.items()} for row in rows],
                )
            if notify:
                cursor.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
            connection.commit()
    except psycopg.errors.IntegrityError:
        return False
    return True


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    """The INSERT of one row of `table` with these columns (built once per shape)."""
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(f'%({name})s' for name in columns)})"
    )
