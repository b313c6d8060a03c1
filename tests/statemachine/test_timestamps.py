"""Timestamps: RFC 3339 as AWS accepts it, and AWS's context-object format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemachine.timestamps import format_timestamp, parse_timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2012-10-09T19:00:55Z", datetime(2012, 10, 9, 19, 0, 55, tzinfo=UTC)),
        (
            "2012-10-09T19:00:55+01:00",
            datetime(2012, 10, 9, 19, 0, 55, tzinfo=timezone(timedelta(hours=1))),
        ),
        (
            "2012-10-09T19:00:55-05:30",
            datetime(2012, 10, 9, 19, 0, 55, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        ("2016-12-05T21:29:29.5Z", datetime(2016, 12, 5, 21, 29, 29, 500000, tzinfo=UTC)),
        ("2016-12-05T21:29:29.123Z", datetime(2016, 12, 5, 21, 29, 29, 123000, tzinfo=UTC)),
        # Nanoseconds and beyond: truncated to microseconds, not rounded.
        ("2016-12-05T21:29:29.123456999Z", datetime(2016, 12, 5, 21, 29, 29, 123456, tzinfo=UTC)),
        (
            "2016-12-05T21:29:29.9999999999999Z",
            datetime(2016, 12, 5, 21, 29, 29, 999999, tzinfo=UTC),
        ),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("2024-11-06T09:42:03Z", datetime(2024, 11, 6, 9, 42, 3, tzinfo=UTC)),
    ],
)
def test_parses_valid_timestamps(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        # The four invalid forms recorded on AWS (Wait TimestampPath → States.Runtime).
        "2016-13-05T21:29:29Z",  # month 13
        "05-12-2016T21:29:29Z",  # not ISO order
        "2016-12-05T25:29:29Z",  # hour 25
        "2016-12-05 21:29:29Z",  # no T
        "2016-12-05T21:29:29",  # no offset
        "2012-10-09T19:00:55",
        "2016-12-05t21:29:29Z",  # lower-case t
        "2016-12-05T21:29:29z",  # lower-case z
        "2023-02-29T00:00:00Z",  # not a leap year
        "2016-12-05T23:59:60Z",  # leap second
        "2016-12-05T24:00:00Z",
        "2016-12-05T21:60:00Z",
        "0000-01-01T00:00:00Z",
        "2016-12-05T21:29Z",  # seconds required
        "2016-12-05T21:29:29.Z",  # empty fraction
        "2016-12-05T21:29:29+0100",  # offset needs a colon
        "2016-12-05T21:29:29+24:00",
        "2016-12-05T21:29:29+01:60",
        "2016-12-05",
        " 2016-12-05T21:29:29Z",
        "2016-12-05T21:29:29Z ",
        "２０１６-12-05T21:29:29Z",  # full-width digits
        "",
    ],
)
def test_rejects_what_aws_rejects(text: str) -> None:
    assert parse_timestamp(text) is None


def test_non_strings_are_not_timestamps() -> None:
    assert parse_timestamp(12345) is None  # type: ignore[arg-type]
    assert parse_timestamp(None) is None  # type: ignore[arg-type]


def test_offsets_compare_as_instants() -> None:
    a = parse_timestamp("2012-10-09T19:00:55+01:00")
    b = parse_timestamp("2012-10-09T18:00:55Z")
    assert a is not None and b is not None
    assert a == b


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00.000Z"),
        (datetime(2024, 1, 1, 0, 0, 0, 123999, tzinfo=UTC), "2024-01-01T00:00:00.123Z"),
        (
            datetime(2024, 1, 1, 1, 30, 5, 7000, tzinfo=timezone(timedelta(hours=2))),
            "2023-12-31T23:30:05.007Z",
        ),
        (datetime(999, 3, 4, 5, 6, 7, tzinfo=UTC), "0999-03-04T05:06:07.000Z"),
    ],
)
def test_format_timestamp(moment: datetime, expected: str) -> None:
    assert format_timestamp(moment) == expected


def test_format_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2024, 1, 1))


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC),
    )
)
def test_format_then_parse_round_trips_to_the_millisecond(moment: datetime) -> None:
    parsed = parse_timestamp(format_timestamp(moment))
    assert parsed == moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@given(st.text(max_size=40))
def test_parse_never_raises(text: str) -> None:
    result = parse_timestamp(text)
    assert result is None or result.tzinfo is not None
