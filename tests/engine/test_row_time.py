"""`journal.row_time`: an entry row's time text is `isoformat`'s, cached second or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.journal import row_time

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(timezones=zones),
    micros=st.sampled_from([0, 1, 999_999, None]),
    later=st.integers(min_value=0, max_value=2_000_000),
)
def test_row_time_is_isoformat(moment: datetime, micros: int | None, later: int) -> None:
    """Every time's text is `isoformat`'s: a fresh second, the same second again, the next."""
    if micros is not None:
        moment = moment.replace(microsecond=micros)
    assert row_time(moment) == moment.isoformat()
    again = moment.replace(microsecond=(moment.microsecond + later) % 1_000_000)
    assert row_time(again) == again.isoformat()  # the same second: from the kept text
    if moment.year < 9999:
        following = moment + timedelta(microseconds=later)
        assert row_time(following) == following.isoformat()


def test_row_time_keeps_no_second_across_dates() -> None:
    """Two times with the same clock reading on different days get their own dates."""
    first = datetime(2026, 12, 3, 8, 0, 0, 5, tzinfo=UTC)
    assert row_time(first) == "2026-12-03T08:00:00.000005+00:00"
    assert row_time(first.replace(day=4)) == "2026-12-04T08:00:00.000005+00:00"
    assert row_time(first.replace(microsecond=0)) == "2026-12-03T08:00:00+00:00"
