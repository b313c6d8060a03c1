"""SQLite's start writes through the raw driver: the same rows, without building statements.

A start batch on SQLite spends most of its Python time having SQLAlchemy
build, cache-key and compile its statements (`benchmarks/PROFILE.md`). Here
the name check and the three inserts of `StartStore._start_batch` run on
the sqlite3 connection underneath the store's own SQLAlchemy connection —
same connection, same BEGIN IMMEDIATE transaction — with SQL text built
once per shape. Every value goes through the column type's own bind
processor (the one SQLAlchemy would apply), so the rows written are exactly
those of the careful path (`tests/engine/test_start_raw_rows.py` compares
them). The driver's errors are raised as SQLAlchemy's, so the store's error
boundary and its collision fallback treat both paths alike. The name check
only says whether any name or id is taken; the careful path then reads
the existing executions. `first_row` runs a prepared SELECT the same way
(its columns through their types' result processors): the start's machine
lookup and `Store.get_execution` read through it. The `*_on` forms take the
sqlite3 connection itself (its errors stay sqlite3's): a start batch run
wholly on the driver (`StartStore._raw_batch`) uses them.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect

from engine.store.blocks import stamp
from engine.store.boundary import fault_of
from engine.store.records import ExecutionRecord
from engine.store.schema import UTCDateTime

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "any_taken",
    "any_taken_on",
    "first_row",
    "first_row_on",
    "first_row_read",
    "insert_rows",
    "insert_rows_on",
    "refusal",
    "utc_time_processor",
]

_Processor = Callable[[Any], Any] | None
# A prepared SELECT: its SQL, its parameters (name, default, bind processor) in
# order, its columns' result processors, and the row type.
_SelectShape = tuple[
    str, tuple[tuple[str, Any, _Processor], ...], tuple[_Processor, ...], Callable[..., Any]
]


@contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    """sqlite3's errors as SQLAlchemy's (what `boundary.mapped_errors` and the fallback expect)."""
    import sqlite3  # here: only SQLite runs this, and a PostgreSQL process never loads sqlite3

    try:
        yield
    except sqlite3.IntegrityError as error:
        raise sa_exc.IntegrityError(statement, None, error) from error
    except sqlite3.OperationalError as error:
        raise sa_exc.OperationalError(statement, None, error) from error


def refusal(error: BaseException) -> BaseException | None:
    """What a raw start batch raises for `error`, when the careful path would meet it alike.

    The database refusing the data (`boundary.fault_of`: a value too big)
    or a unique key the name check did not see: the same rows written
    carefully are refused the same way, so the batch is split at once
    (`StartStore.start_executions`) rather than tried again. The data's
    error as it is (the boundary names it `UnstorableData`), a collision as
    SQLAlchemy's IntegrityError (what the split catches). None for anything
    else: the careful path decides.
    """
    fault = fault_of(error)
    if fault == "data":
        return error
    if fault == "collision":
        return sa_exc.IntegrityError("a raw start batch", None, error)
    return None


def _driver(conn: Connection) -> sqlite3.Connection:
    driver: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
    return driver


def any_taken(conn: Connection, wanted: Sequence[ExecutionRecord]) -> bool:
    """Whether an execution holds any (machine, name) or execution id of `wanted`."""
    with _driver_errors(_taken_sql(max(len(wanted), 1))):
        return any_taken_on(_driver(conn), wanted)


def any_taken_on(driver: sqlite3.Connection, wanted: Sequence[ExecutionRecord]) -> bool:
    """`any_taken` on a sqlite3 connection itself (its errors are sqlite3's)."""
    if not wanted:
        return False
    sql = _taken_sql(len(wanted))
    params: list[str] = []
    for record in wanted:
        params += (record.machine, record.name)
    params += [record.execution_id for record in wanted]
    return driver.execute(sql, params).fetchone() is not None


@functools.cache
def _taken_sql(count: int) -> str:
    names = " OR ".join(["(machine = ? AND name = ?)"] * count)
    ids = ", ".join(["?"] * count)
    return f"SELECT 1 FROM executions WHERE {names} OR execution_id IN ({ids}) LIMIT 1"


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (all with the same keys) into `table`, bound as SQLAlchemy binds them."""
    if not rows:
        return
    with _driver_errors(_insert_shape(table, tuple(rows[0]), conn.dialect)[0]):
        insert_rows_on(_driver(conn), conn.dialect, table, rows)


def insert_rows_on(
    driver: sqlite3.Connection, dialect: Dialect, table: sa.Table, rows: Sequence[dict[str, Any]]
) -> None:
    """`insert_rows` on a sqlite3 connection itself (its errors are sqlite3's)."""
    if not rows:
        return
    columns = tuple(rows[0])
    sql, processed = _insert_shape(table, columns, dialect)
    values = []
    for row in rows:
        row_values = [row[name] for name in columns]
        for index, value in enumerate(row_values):
            if type(value) not in _PLAIN_TYPES:
                row_values[index] = _plain(value)
        for index, process in processed:
            row_values[index] = process(row_values[index])
        values.append(row_values)
    driver.executemany(sql, values)


# Values bound as they are; anything else goes through `_plain` first.
_PLAIN_TYPES = frozenset({str, int, float, bool, bytes, type(None)})


def _plain(value: Any) -> Any:
    # A str/int Enum (ExecutionStatus) is written as its value, as SQLAlchemy's String does.
    return value.value if isinstance(value, Enum) else value


@functools.cache
def _insert_shape(
    table: sa.Table, columns: tuple[str, ...], dialect: Dialect
) -> tuple[str, tuple[tuple[int, Callable[[Any], Any]], ...]]:
    """The INSERT of `columns`, and the (index, bind processor) of the columns that have one."""
    processors = (
        utc_time_processor(dialect)
        if isinstance(table.c[name].type, UTCDateTime)
        else table.c[name].type._cached_bind_processor(dialect)
        for name in columns
    )
    processed = tuple(
        (index, process) for index, process in enumerate(processors) if process is not None
    )
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    return sql, processed


@functools.cache
def utc_time_processor(dialect: Dialect) -> Callable[[datetime | None], Any]:
    """What SQLAlchemy stores for a time on this dialect (UTCDateTime's bind processor), faster.

    Its fixed-width text is also what `datetime.isoformat` writes for the
    naive UTC time: `blocks.stamp` writes it at a fraction of the cost; that
    shortcut is taken only when it agrees with the processor on sample times
    (naive ones still go to the processor, which refuses them).
    """
    process = UTCDateTime()._cached_bind_processor(dialect)
    assert process is not None  # UTCDateTime always normalizes

    def formatted(value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return process(value)
        return stamp(value)

    samples = [
        datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime.fromisoformat("2030-01-02T05:04:05.000001+02:00"),
    ]
    if all(formatted(value) == process(value) for value in samples):
        return formatted
    return process


def first_row(conn: Connection, statement: sa.Select[Any], **params: Any) -> Any:
    """The first row of `statement` (bound by name from `params`) on the driver, or None.

    The row has the statement's column keys as attributes and each value
    through its column type's result processor, as SQLAlchemy's own row
    would (`tests/engine/test_start_raw_rows.py` compares them). The
    statement is compiled once per dialect: pass a module-level constant
    whose parameters are `sa.bindparam`s.
    """
    with _driver_errors(_select_shape(statement, conn.dialect)[0]):
        return first_row_on(_driver(conn), conn.dialect, statement, **params)


def first_row_read(
    driver: sqlite3.Connection, dialect: Dialect, statement: sa.Select[Any], **params: Any
) -> Any:
    """`first_row_on` as one SELECT outside a transaction; errors as SQLAlchemy's."""
    with _driver_errors(_select_shape(statement, dialect)[0]):
        return first_row_on(driver, dialect, statement, **params)


def first_row_on(
    driver: sqlite3.Connection, dialect: Dialect, statement: sa.Select[Any], **params: Any
) -> Any:
    """`first_row` on a sqlite3 connection itself (its errors are sqlite3's)."""
    raw = raw_first_on(driver, dialect, statement, **params)
    return None if raw is None else row_of(dialect, statement, raw)


def raw_first_on(
    driver: sqlite3.Connection, dialect: Dialect, statement: sa.Select[Any], **params: Any
) -> tuple[Any, ...] | None:
    """`first_row_on`'s values as the driver returns them: nothing of ours can raise."""
    sql, binds, _, _ = _select_shape(statement, dialect)
    values = tuple(
        params.get(name, default) if bind is None else bind(params.get(name, default))
        for name, default, bind in binds
    )
    row: tuple[Any, ...] | None = driver.execute(sql, values).fetchone()
    return row


def row_of(dialect: Dialect, statement: sa.Select[Any], raw: tuple[Any, ...]) -> Any:
    """`raw_first_on`'s values as `first_row_on`'s row (result processors may raise)."""
    _, _, processors, make = _select_shape(statement, dialect)
    return make(*(v if p is None else p(v) for v, p in zip(raw, processors, strict=True)))


@functools.cache
def _select_shape(statement: sa.Select[Any], dialect: Dialect) -> _SelectShape:
    compiled = statement.compile(dialect=dialect)
    defaults = compiled.params  # e.g. LIMIT's value; None for the caller's parameters
    bind_processors: dict[str, _Processor] = compiled._bind_processors  # type: ignore[assignment]
    binds = tuple(
        (name, defaults.get(name), bind_processors.get(name)) for name in compiled.positiontup or ()
    )
    columns = list(statement.selected_columns)
    processors = tuple(column.type._cached_result_processor(dialect, None) for column in columns)
    make = namedtuple("_Row", [column.key for column in columns])  # type: ignore[misc]
    return compiled.string, binds, processors, make
