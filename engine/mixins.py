"""What the Engine's mixins (`MachineApi`, `MapRunApi`, `ScheduleApi`) may rely on.

`EngineParts` declares the parts `engine.Engine` supplies them — its clock,
store and lifecycle — so each mixin is typed without importing the Engine
(which imports them). `entered` is the one check that a part built by
``async with Engine(...)`` exists, with the one message for using it too early.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from engine.clock import Clock
from engine.lifecycle import Lifecycle
from engine.store import Store

if TYPE_CHECKING:
    from engine.runner import Runtime

__all__ = ["EngineParts", "entered"]

T = TypeVar("T")


def entered(part: T | None) -> T:
    """`part`, once the Engine has been entered; a RuntimeError saying how before."""
    if part is None:
        raise RuntimeError("use the Engine inside 'async with Engine(...)' or 'with Engine(...)'")
    return part


class EngineParts:
    """The clock, store and lifecycle an Engine mixin works with (the Engine's own)."""

    clock: Clock
    # The Engine's runtime once it is entered (None before and after).
    _runtime: Runtime | None

    @property
    def store(self) -> Store:
        raise NotImplementedError  # the Engine's own store

    @property
    def lifecycle(self) -> Lifecycle:
        raise NotImplementedError  # the Engine's own lifecycle
