"""Errors the durable store raises, named as the Step Functions API names them.

Every class derives from `statemachine.errors.StepwiseError` and carries its
`aws_code` and CLI `exit_code`; the one drawing of the whole tree is in
`engine/errors.py`, which re-exports these. `InfrastructureError` is the
branch for failures of the database or of a worker's hold on an execution
(exit 3, no AWS code: a server error); the others are answers to a request
(exit 2).
"""

from __future__ import annotations

from statemachine.errors import StepwiseError

__all__ = [
    "AmbiguousExecution",
    "CommitConflict",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "ExecutionNotRunning",
    "InfrastructureError",
    "InvalidOutput",
    "InvalidToken",
    "LeaseLost",
    "StateMachineDeleting",
    "StateMachineDoesNotExist",
    "StoreUnavailable",
    "TaskDoesNotExist",
    "TaskTimedOut",
    "UnstorableData",
]


class InfrastructureError(StepwiseError):
    """The database or a worker's hold on an execution failed; not the request's fault."""

    exit_code = 3
    server_error = True


class StoreUnavailable(InfrastructureError):
    """The database cannot be reached, opened or brought to the right schema.

    The message is meant for people: it names the database (never its
    password) and the driver's one-line reason, with no traceback.
    `transient` is False for a configuration error no retry can fix (a bad
    password, a missing database, a corrupt file); see `store/boundary.py`.
    """

    transient: bool = True


class UnstorableData(InfrastructureError):
    """The database refused a value as data (not an outage): the fault of whoever supplied it.

    A data exception (SQLSTATE class 22: e.g. a character the database
    cannot store, a value out of range), a value over a program limit
    (54000), sqlite3's DataError (a string too big) or an encoding error
    binding a value; `store/boundary.py` decides which driver errors these
    are. Raised by a commit, it fails the one execution whose checkpoint
    it was at once (States.Runtime, `runner._poisoned`); its group-mates
    commit without it. A start's answer (`StartResult.error`) when its own
    data was refused: `Lifecycle.start` raises InvalidExecutionInput for
    it. Every other driver error is `StoreUnavailable`: retried, never an
    execution's failure.
    """


class LeaseLost(InfrastructureError):
    """A worker tried to act on an execution whose lease it no longer holds."""


class CommitConflict(InfrastructureError):
    """A commit hit a unique-key conflict: another writer already recorded that step."""


class ExecutionAlreadyExists(StepwiseError):
    """An execution name is reused with different input, or after that execution closed."""

    aws_code = "ExecutionAlreadyExists"


class ExecutionDoesNotExist(StepwiseError):
    """No execution has the given id (or name)."""

    aws_code = "ExecutionDoesNotExist"


class AmbiguousExecution(StepwiseError):
    """A name given in place of an execution id matches more than one execution.

    AWS addresses executions by ARN only, so this code is Stepwise's own.
    """

    aws_code = "AmbiguousExecution"


class ExecutionNotRunning(StepwiseError):
    """The execution has already closed, so it cannot be stopped (a code of Stepwise's own)."""

    aws_code = "ExecutionNotRunning"


class ExecutionNotRedrivable(StepwiseError):
    """The execution cannot be redriven; the message is AWS's redriveStatusReason."""

    aws_code = "ExecutionNotRedrivable"


class ResourceNotFound(StepwiseError):
    """A published version or an alias that does not exist (AWS: ResourceNotFound)."""

    aws_code = "ResourceNotFound"


class ConflictError(StepwiseError):
    """The change conflicts with what exists (AWS: ConflictException): an alias routes there."""

    aws_code = "ConflictException"


class InvalidRouting(StepwiseError):
    """An alias routing configuration AWS would reject (INVALID_ROUTING_CONFIGURATION)."""

    aws_code = "ValidationException"


class StateMachineDoesNotExist(StepwiseError):
    """No state machine by that name, or it has no such version."""

    aws_code = "StateMachineDoesNotExist"


class StateMachineDeleting(StepwiseError):
    """The state machine is being deleted: its running executions finish, new ones are refused."""

    aws_code = "StateMachineDeleting"


class InvalidToken(StepwiseError):
    """The task token was never issued by this store."""

    aws_code = "InvalidToken"


class InvalidOutput(StepwiseError):
    """SendTaskSuccess's output is not JSON or is too large (AWS: InvalidOutput)."""

    aws_code = "InvalidOutput"


class TaskDoesNotExist(StepwiseError):
    """The token's task no longer exists (its execution record is gone)."""

    aws_code = "TaskDoesNotExist"


class TaskTimedOut(StepwiseError):
    """The token's task already closed: it succeeded, failed, timed out or its execution ended."""

    aws_code = "TaskTimedOut"
