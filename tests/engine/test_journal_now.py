"""`Journal.now`: the time a record's events carry, read from the journal's clock."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio

from engine.clock import LoopClock, SystemClock
from engine.journal import Journal, Thread


def test_the_system_clock_is_read_as_the_system_time_in_utc() -> None:
    journal = Journal("e", {}, last_event_id=1, clock=SystemClock())
    before = datetime.now(UTC)
    read = journal.now()
    assert before <= read <= datetime.now(UTC)
    assert read.tzinfo is UTC


def test_any_other_clock_is_read_through_its_own_now_and_stamps_the_events() -> None:
    epoch = datetime(2030, 1, 2, 3, 4, 5, 6789, tzinfo=UTC)
    clock = LoopClock(epoch)

    async def main() -> None:
        journal = Journal("e", {}, last_event_id=1, clock=clock)
        assert journal.now() == epoch  # the loop clock's first read is its epoch
        journal.record("0:out", {"o": 1}, thread=Thread(1), events=[("PassStateExited", {})])
        _rows, events = journal.drain()
        assert epoch <= events[0].timestamp <= clock.now()
        assert events[0].timestamp.year == 2030  # the loop clock's time, not the system's

    anyio.run(main)
