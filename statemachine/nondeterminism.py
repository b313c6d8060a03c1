"""What the language layer needs from the outside world, as a protocol.

`statemachine/` never reads a clock or a random source itself: intrinsics
(States.UUID, States.MathRandom), JSONata ($uuid, $random, $now, $millis) and
retry jitter ask a `Nondeterminism` the caller passes in. The engine's
implementation journals every value it hands out, so a replay after a crash
sees the same values; `Fixed` is a deterministic one for tests and tools.
"""

from __future__ import annotations

import uuid as _uuid
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Fixed", "Nondeterminism"]


class Nondeterminism(Protocol):
    """Source of every value that can differ between two runs."""

    def uuid(self) -> str:
        """A random (version 4) UUID in its canonical text form."""
        ...

    def random(self) -> float:
        """A uniformly distributed float in [0, 1)."""
        ...

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class Fixed:
    """A deterministic `Nondeterminism`: counters instead of randomness."""

    def __init__(self, *, now: datetime | None = None, random_value: float = 0.5) -> None:
        self._now = now or datetime(2024, 1, 1, tzinfo=UTC)
        self._random = random_value
        self._count = 0

    def uuid(self) -> str:
        self._count += 1
        return str(_uuid.UUID(int=self._count, version=4))

    def random(self) -> float:
        return self._random

    def now(self) -> datetime:
        return self._now
