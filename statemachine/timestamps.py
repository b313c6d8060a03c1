"""Timestamps as ASL reads and writes them.

ASL timestamps (Wait `Timestamp`/`TimestampPath`, the Choice `Timestamp*`
operators and `IsTimestamp`) are RFC 3339 date-times the way AWS accepts
them: an upper-case ``T`` between date and time, seconds present, an optional
fraction of any precision, and a mandatory ``Z`` or numeric ``±HH:MM``
offset. Anything else — a space instead of ``T``, a missing offset, an
impossible date or time such as month 13, hour 25 or a leap second — is not
a timestamp. `format_timestamp` writes the form AWS uses for times in the
context object and history (UTC, milliseconds, ``Z``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["format_timestamp", "parse_timestamp"]

# re.ASCII: `\d` must not accept other scripts' digits (int() would).
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_timestamp(text: str) -> datetime | None:
    """Parse an ASL timestamp into a timezone-aware datetime, or None if it is not one.

    The returned datetime keeps the offset the text gave (compare instances
    as instants; Python does so for aware datetimes). Fractions finer than a
    microsecond are truncated, not rounded. Never raises: any value that is
    not a string, or a string AWS would reject, gives None.
    """
    if not isinstance(text, str):
        return None
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    fraction = match.group(7) or ""
    microsecond = int(fraction[:6].ljust(6, "0")) if fraction else 0
    if match.group(8):
        tz: timezone = UTC
    else:
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = timedelta(hours=offset_hours, minutes=offset_minutes)
        tz = timezone(-offset if match.group(9) == "-" else offset)
    try:
        return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz)
    except ValueError:
        # Month 13, 30 February, hour 24, second 60, year 0: impossible on AWS too.
        return None


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as AWS writes context-object times.

    The result is ISO 8601 in UTC with exactly three fraction digits
    (milliseconds, truncated) and a ``Z``: ``2024-01-01T00:00:00.123Z``.
    Raises ValueError for a naive datetime, whose instant is unknown.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("format_timestamp needs a timezone-aware datetime")
    utc = moment.astimezone(UTC)
    # Explicit padding: strftime's %Y does not zero-pad years before 1000 on glibc.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )
