"""Telling an intrinsic function call from a path, without loading the intrinsic functions.

A definition's ``.$`` values and ``…Path`` fields are paths or intrinsic
calls (``States.Format(…)``); most machines use paths alone, so the
intrinsics (`statemachine.intrinsics`, loaded by `statemachine.parts`) wait
for the first definition with a call.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["is_intrinsic"]

_CALL_START: Final = re.compile(r"\s*[A-Za-z0-9_.]+\s*\(")


def is_intrinsic(text: str) -> bool:
    """True when `text` looks like a function call: a name followed by ``(``."""
    return isinstance(text, str) and _CALL_START.match(text) is not None
