"""The parts of the language only some definitions use, loaded with the first definition that does.

A machine of Task and Pass states (issue 19's W1) never compiles a Choice
rule or checks a Map's fields, so `statemachine.choice`,
`statemachine.validate_choice` and `statemachine.validate_map` stay
unloaded until a definition with a Choice or a Map state is validated or
built (`require`, from the validator's and the builder's per-state code).
Every later use of such a part works on objects only that part could have
made, so it finds the module loaded: a broken part fails where the
definition is loaded — `create_state_machine`, `stepwise run` of that file,
an engine loading a stored definition — as `LanguageUnavailable`, never in
the middle of an execution. `tests/test_lazy_imports.py` checks both.
"""

from __future__ import annotations

import importlib
import sys

from statemachine.errors import LanguageUnavailable

__all__ = ["CHOICE", "MAP_VALIDATION", "require"]

# Choice rules: compiled by the builder, evaluated by the engine's Choice plans.
CHOICE = ("statemachine.choice", "statemachine.validate_choice")
# A Map state's own fields (ItemReader, ItemBatcher, ResultWriter, tolerances …).
MAP_VALIDATION = ("statemachine.validate_map",)


def require(modules: tuple[str, ...]) -> None:
    """Import `modules` unless they are loaded; raise LanguageUnavailable when one cannot be."""
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as error:
            raise LanguageUnavailable(
                f"Stepwise's {name} could not be loaded ({type(error).__name__}: {error}); "
                "the installation is broken"
            ) from error
