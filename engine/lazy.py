"""Names a package exports but loads on first use (PEP 562), for its `__init__`.

A package whose public names live in heavy modules (SQLAlchemy, the
interpreter, an HTTP stack, zoneinfo) maps each name to its home module;
`lazy_names` gives it the module-level ``__getattr__`` and ``__dir__``
that import the home on first access and keep the value in the package's
namespace, so later accesses cost nothing. Imports nothing of ours.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, homes: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for `package`, whose name `homes` maps to a module."""
    namespace = sys.modules[package].__dict__
    listed = frozenset(public)

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *listed})

    return __getattr__, __dir__
