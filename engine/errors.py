"""Every error Stepwise raises on purpose, in one tree.

::

    StepwiseError
    ├── DefinitionError              invalid definition; .diagnostics lists every problem
    ├── ExpressionSyntaxError        a path, intrinsic or JSONata text that does not parse
    ├── StatesError                  ASL runtime error: .error (name) and .cause; see `States`
    ├── NondeterminismError          a recorded step differs from what the walk reaches now
    ├── InvalidName                  a machine/execution name AWS would reject
    ├── InvalidExecutionInput        execution input that is not JSON or is over 256 KiB
    ├── StateMachineDoesNotExist
    ├── ExecutionDoesNotExist / AmbiguousExecution / ExecutionNotRunning
    ├── ExecutionAlreadyExists       same name, different input
    ├── InvalidToken / TaskDoesNotExist / TaskTimedOut   callback tokens, as AWS names them
    └── infrastructure
        ├── StoreUnavailable         the database cannot be reached
        └── LeaseLost                another worker owns the execution now; nothing was written

`States` enumerates the predefined ``States.*`` error names.
"""

from __future__ import annotations

from engine.journal import NondeterminismError
from engine.store.errors import (
    AmbiguousExecution,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    ExecutionNotRunning,
    InvalidToken,
    LeaseLost,
    StateMachineDoesNotExist,
    StoreUnavailable,
    TaskDoesNotExist,
    TaskTimedOut,
)
from statemachine.errors import (
    DefinitionError,
    ExpressionSyntaxError,
    States,
    StatesError,
    StepwiseError,
)

__all__ = [
    "AmbiguousExecution",
    "DefinitionError",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "ExecutionNotRunning",
    "ExpressionSyntaxError",
    "InvalidExecutionInput",
    "InvalidName",
    "InvalidToken",
    "LeaseLost",
    "NondeterminismError",
    "StateMachineDoesNotExist",
    "States",
    "StatesError",
    "StepwiseError",
    "StoreUnavailable",
    "TaskDoesNotExist",
    "TaskTimedOut",
]


class InvalidName(StepwiseError):
    """A state machine or execution name that AWS would reject."""


class InvalidExecutionInput(StepwiseError):
    """Execution input that is not JSON, or is larger than 256 KiB."""
