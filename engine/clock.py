"""Time, injected: the engine reads the time and sleeps only through a `Clock`.

`SystemClock` is wall time. `LoopClock` derives wall time from the event
loop's own clock (``anyio.current_time()``), so a test running anyio on trio
with ``trio.testing.MockClock(autojump_threshold=0)`` skips an hour-long Wait
in milliseconds while the engine still sees consistent datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio

__all__ = ["Clock", "LoopClock", "SystemClock"]


class Clock(Protocol):
    """Where the engine gets the time from."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return at `when` (at once if it is past)."""
        ...


class SystemClock:
    """Wall-clock time; sleeps on the event loop."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds()
        if delay > 0:
            await anyio.sleep(delay)


class LoopClock:
    """Wall time = `epoch` + the event loop's clock; follows a mocked loop clock."""

    def __init__(self, epoch: datetime | None = None) -> None:
        self._epoch = epoch or datetime(2030, 1, 1, tzinfo=UTC)
        self._origin: float | None = None

    def now(self) -> datetime:
        current = anyio.current_time()
        if self._origin is None:
            self._origin = current
        return self._epoch + timedelta(seconds=current - self._origin)

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds()
        if delay > 0:
            await anyio.sleep(delay)
