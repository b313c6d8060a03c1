"""The Amazon States Language: parse, validate and evaluate. Pure: no I/O, no clock, no randomness.

`load` validates a definition (every problem at once, as `Diagnostic`s) and
builds the typed, immutable model the engine walks; `validate` gives AWS's
verdict alone. Evaluation (paths, intrinsics, payload templates, Choice
rules, Retry/Catch arithmetic, JSONata) takes anything random or
time-dependent from a caller-supplied `Nondeterminism`.
"""

from statemachine.build import load, local_diagnostics, parse_definition
from statemachine.diagnostics import Diagnostic
from statemachine.errors import (
    DefinitionError,
    ExpressionSyntaxError,
    States,
    StatesError,
    StepwiseError,
)
from statemachine.model import StateMachine
from statemachine.nondeterminism import Fixed, Nondeterminism
from statemachine.validate import is_valid, validate, validate_text

__all__ = [
    "DefinitionError",
    "Diagnostic",
    "ExpressionSyntaxError",
    "Fixed",
    "Nondeterminism",
    "StateMachine",
    "States",
    "StatesError",
    "StepwiseError",
    "is_valid",
    "load",
    "local_diagnostics",
    "parse_definition",
    "validate",
    "validate_text",
]
