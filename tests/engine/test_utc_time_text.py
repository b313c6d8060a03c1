"""The raw SQLite paths store a time as the exact text SQLAlchemy's UTCDateTime stores.

Starts and group commits written through the sqlite3 driver format their
times with `utc_time_processor`; a row they write must read back (and sort,
`due_at <= now`) exactly as one the careful path wrote.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from engine.store.blocks import stamp, stamps
from engine.store.rawstart import utc_time_processor
from engine.store.schema import UTCDateTime

TIMES = [
    datetime(2026, 12, 2, 7, 40, 45, 389143, tzinfo=UTC),
    datetime(2026, 12, 2, 7, 40, 45, tzinfo=UTC),  # no microseconds: still six digits
    datetime(2026, 12, 2, 9, 40, 45, 1, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 12, 1, 23, 0, tzinfo=timezone(timedelta(hours=-9))),  # the next day in UTC
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(999, 3, 4, 5, 6, 7, 80, tzinfo=UTC),  # a year of three digits: still four
]


@pytest.mark.parametrize("value", TIMES, ids=str)
def test_a_time_is_stored_as_sqlalchemy_stores_it(value: datetime) -> None:
    dialect = sqlite.dialect()
    careful = UTCDateTime()._cached_bind_processor(dialect)
    assert careful is not None
    assert utc_time_processor(dialect)(value) == careful(value)


@pytest.mark.parametrize("value", TIMES, ids=str)
def test_a_block_stamp_is_the_stored_text_of_the_time(value: datetime) -> None:
    # History blocks keep each event's time as this text (`blocks.stamp`):
    # what a row of history_events holds, and what `isoformat` writes for
    # the naive UTC time.
    careful = UTCDateTime()._cached_bind_processor(sqlite.dialect())
    assert careful is not None
    assert stamp(value) == careful(value)
    assert stamp(value) == value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def test_a_block_stamp_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        stamp(datetime(2026, 12, 2))


def test_no_time_and_a_naive_time_are_handled_as_the_careful_path_does() -> None:
    fast = utc_time_processor(sqlite.dialect())
    assert fast(None) is None
    with pytest.raises(ValueError, match="naive"):
        fast(datetime(2026, 12, 2))


def test_sqlite_takes_the_fast_formatter_not_the_fallback() -> None:
    # The shortcut is checked against SQLAlchemy's processor on sample times
    # and dropped when they disagree; on SQLite (what the raw paths serve)
    # they agree, so the formatter in use must be the shortcut itself.
    fast = utc_time_processor(sqlite.dialect())
    assert fast is not UTCDateTime()._cached_bind_processor(sqlite.dialect())
    assert fast.__name__ == "formatted"


def test_a_run_of_block_stamps_is_each_time_s_stamp() -> None:
    # `stamps` formats a minute's text once per run of times in it: times
    # that cross a minute, an hour, a day, a month and a year (and come back,
    # and come in other zones) must each still get their own full text.
    base = datetime(2026, 12, 31, 23, 58, 59, 999999, tzinfo=UTC)
    steps = [0, 1, 2, 60_000_000, 60_000_001, 3_600_000_000, 86_400_000_000, -1, 0, 5]
    run = [base + timedelta(microseconds=step) for step in steps]
    run += [value.astimezone(timezone(timedelta(hours=-9))) for value in run]
    run += [
        datetime(2026, 11, 30, 23, 59, 0, tzinfo=UTC),  # same minute, hour and day of a month
        datetime(2026, 12, 30, 23, 59, 0, tzinfo=UTC),  # ... but not the month
        datetime(2025, 12, 30, 23, 59, 0, tzinfo=UTC),  # ... nor the year
        *TIMES,
    ]
    assert stamps(run) == [stamp(value) for value in run]
    assert stamps([]) == []


def test_a_run_of_block_stamps_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        stamps([datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 2)])
