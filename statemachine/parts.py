"""The parts of the language only some definitions use, loaded with the first definition that does.

A machine of Task and Pass states (issue 19's W1) never compiles a Choice
rule, an intrinsic function call or checks a Map's fields, so
`statemachine.choice`, `statemachine.validate_choice`,
`statemachine.intrinsics` and `statemachine.validate_map` stay unloaded
until a definition with a Choice, a call or a Map state is validated or
built (`require`, from the validator's and the builder's code for each).
Every later use of such a part works on objects only that part could have
made, so it finds the module loaded: a broken part fails where the
definition is loaded — `create_state_machine`, `stepwise run` of that file,
an engine loading a stored definition — as `LanguageUnavailable`, never in
the middle of an execution. `tests/test_lazy_imports.py` checks both.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from statemachine.errors import LanguageUnavailable

if TYPE_CHECKING:
    from statemachine.intrinsics import Intrinsic

__all__ = ["CHOICE", "INTRINSICS", "MAP_VALIDATION", "compile_call", "require"]

# Choice rules: compiled by the builder, evaluated by the engine's Choice plans.
CHOICE = ("statemachine.choice", "statemachine.validate_choice")
# Intrinsic function calls (``States.Format(…)``): compiled where a value is one
# (`statemachine.calls.is_intrinsic`), evaluated by dataflow and the engine.
INTRINSICS = ("statemachine.intrinsics",)
# A Map state's own fields (ItemReader, ItemBatcher, ResultWriter, tolerances …).
MAP_VALIDATION = ("statemachine.validate_map",)


def require(modules: tuple[str, ...]) -> None:
    """Import `modules` (a lookup once loaded); raise LanguageUnavailable if one cannot be."""
    for name in modules:
        # Always through the import system: a module another thread is still
        # importing is waited for, and one whose import failed is tried again
        # (a check of `sys.modules` would pass a half-loaded module).
        try:
            importlib.import_module(name)
        except Exception as error:
            raise LanguageUnavailable(
                f"Stepwise's {name} could not be loaded ({type(error).__name__}: {error}); "
                "the installation is broken"
            ) from error


def compile_call(text: str) -> Intrinsic:
    """The intrinsic function call `text`, compiled; the intrinsics loaded first (`require`)."""
    require(INTRINSICS)
    from statemachine.intrinsics import compile_intrinsic

    return compile_intrinsic(text)
