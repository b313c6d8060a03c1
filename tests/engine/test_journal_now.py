"""`Journal.now`: the time a record's events carry, read from the journal's clock."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.clock import SystemClock
from engine.journal import Journal, Thread


class _FixedClock:
    """A clock standing still at one instant (sleeping is never asked of it here)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    async def sleep_until(self, when: datetime) -> None:
        raise AssertionError("not slept on")


def test_the_system_clock_is_read_as_the_system_time_in_utc() -> None:
    journal = Journal("e", {}, last_event_id=1, clock=SystemClock())
    before = datetime.now(UTC)
    read = journal.now()
    assert before <= read <= datetime.now(UTC)
    assert read.tzinfo is UTC


def test_any_other_clock_is_read_through_its_own_now_and_stamps_the_events() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 6789, tzinfo=UTC)
    journal = Journal("e", {}, last_event_id=1, clock=_FixedClock(moment))
    assert journal.now() == moment
    journal.record("0:out", {"o": 1}, thread=Thread(1), events=[("PassStateExited", {})])
    _rows, events = journal.drain()
    assert [event.timestamp for event in events] == [moment]
