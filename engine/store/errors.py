"""Errors the durable store raises, named as the Step Functions API names them.

Every class derives from `statemachine.errors.StepwiseError`; `engine/errors.py`
re-exports them into the engine's one error tree::

    StepwiseError
    ├── StoreUnavailable          the database cannot be reached, opened or migrated
    ├── ExecutionAlreadyExists    a (machine, name) pair reused with other input or after it closed
    ├── ExecutionDoesNotExist     no execution has that id (or name)
    ├── AmbiguousExecution        a name given instead of an id matches several executions
    ├── ExecutionNotRunning       stop requested for an execution that already closed
    ├── StateMachineDoesNotExist  no state machine (or no such version) by that name
    ├── InvalidToken              a task token that was never issued
    ├── TaskDoesNotExist          a token whose task is gone with its execution
    ├── TaskTimedOut              a token already completed, failed or timed out
    └── LeaseLost                 a worker no longer holds the lease on an execution
"""

from __future__ import annotations

from statemachine.errors import StepwiseError

__all__ = [
    "AmbiguousExecution",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "ExecutionNotRunning",
    "InvalidToken",
    "LeaseLost",
    "StateMachineDoesNotExist",
    "StoreUnavailable",
    "TaskDoesNotExist",
    "TaskTimedOut",
]


class StoreUnavailable(StepwiseError):
    """The database cannot be reached, opened or brought to the right schema.

    The message is meant for people: it names the database (never its
    password) and the driver's one-line reason, with no traceback.
    """


class ExecutionAlreadyExists(StepwiseError):
    """An execution name is reused with different input, or after that execution closed."""


class ExecutionDoesNotExist(StepwiseError):
    """No execution has the given id (or name)."""


class AmbiguousExecution(StepwiseError):
    """A name given in place of an execution id matches more than one execution."""


class ExecutionNotRunning(StepwiseError):
    """The execution has already closed, so it cannot be stopped."""


class StateMachineDoesNotExist(StepwiseError):
    """No state machine by that name, or it has no such version."""


class InvalidToken(StepwiseError):
    """The task token was never issued by this store."""


class TaskDoesNotExist(StepwiseError):
    """The token's task no longer exists (its execution record is gone)."""


class TaskTimedOut(StepwiseError):
    """The token's task already closed: it succeeded, failed, timed out or its execution ended."""


class LeaseLost(StepwiseError):
    """A worker tried to act on an execution whose lease it no longer holds."""


class CommitConflict(StepwiseError):
    """A commit collided with a row another writer recorded first (a unique key decided)."""
