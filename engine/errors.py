"""Every error Stepwise raises on purpose, in one tree — the one drawing of it.

Each class carries `aws_code`, the error code the Step Functions API uses
for it (None when AWS has none), and `exit_code`, the `stepwise` CLI's exit
status for it; `server_error` marks the infrastructure branch. Every face
(the CLI, the HTTP API) renders an error from these class attributes, never
by matching names as strings. Classes are defined where they are raised
(`statemachine/errors.py`, `engine/store/errors.py`, here) and all
re-exported here::

    StepwiseError                    aws_code                  exit
    ├── DefinitionError              InvalidDefinition          2   .diagnostics: every problem
    ├── ExpressionSyntaxError        InvalidDefinition          2   a path/intrinsic/JSONata text
    ├── StatesError                  (its own .error name)      1   ASL runtime error, see `States`
    ├── InvalidName                  InvalidName                2   a name AWS would reject
    ├── InvalidExecutionInput        InvalidExecutionInput      2   not JSON, or over 256 KiB
    ├── InvalidSetting               —                          2   a setting (or $STEPWISE_*) bad
    ├── StateMachineDoesNotExist     StateMachineDoesNotExist   2
    ├── StateMachineDeleting         StateMachineDeleting       2   start after DeleteStateMachine
    ├── ExecutionDoesNotExist        ExecutionDoesNotExist      2
    ├── AmbiguousExecution           AmbiguousExecution         2   a name matching several
    ├── ExecutionNotRunning          ExecutionNotRunning        2   stop after it closed
    ├── ExecutionNotRedrivable       ExecutionNotRedrivable     2   redrive refused (AWS reason)
    ├── ResourceNotFound             ResourceNotFound           2   no such version or alias
    ├── ConflictError                ConflictException          2   e.g. an alias routes there
    ├── InvalidRouting               ValidationException        2   alias routes/weights invalid
    ├── MapRunUpdateRefused          ValidationException        2   UpdateMapRun on an ended run
    ├── InvalidTestState             InvalidDefinition          2   TestState: no such state
    ├── TestStateValidation          ValidationException        2   TestState: a bad argument
    ├── ExecutionAlreadyExists       ExecutionAlreadyExists     2   same name, other input
    ├── InvalidToken                 InvalidToken               2   a token never issued
    ├── InvalidOutput                InvalidOutput              2   SendTaskSuccess output not JSON
    ├── TaskDoesNotExist             TaskDoesNotExist           2   the token's task is gone
    ├── TaskTimedOut                 TaskTimedOut               2   the token's task already closed
    ├── InvalidScheduleExpression    ValidationException        2   a schedule setting unusable
    ├── ScheduleDoesNotExist         ResourceNotFoundException  2
    ├── ScheduleAlreadyExists        ConflictException          2
    ├── InvalidAlert                 ValidationException        2   an alert target refused
    ├── AlertDoesNotExist            ResourceNotFoundException  2
    ├── AlertAlreadyExists           ConflictException          2
    ├── DeliveryDoesNotExist         ResourceNotFoundException  2
    ├── NondeterminismError          — (server error)           3   a recorded step differs now
    ├── LanguageUnavailable          — (server error)           3   a language part failed to load
    └── InfrastructureError          — (server error)           3
        ├── StoreUnavailable                                        the database cannot be reached
        │   └── EncryptionKeyError                                  a payload key missing, wrong
        ├── UnstorableData                                          the database refused a value
        ├── LeaseLost                                               another worker owns it now
        └── CommitConflict                                          another writer recorded the step

Exit 1 is also what the CLI returns when an execution FAILED, TIMED_OUT or
was ABORTED, and when ``validate`` finds an invalid definition; exit 2 is
also every usage error. Errors that reach a user never chain the driver
exception behind them (``raise … from None`` at the boundary). `States`
enumerates the predefined ``States.*`` error names.
"""

from __future__ import annotations

from engine.store.codec import EncryptionKeyError
from engine.store.errors import (
    AmbiguousExecution,
    CommitConflict,
    ConflictError,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    ExecutionNotRedrivable,
    ExecutionNotRunning,
    InfrastructureError,
    InvalidOutput,
    InvalidRouting,
    InvalidToken,
    LeaseLost,
    ResourceNotFound,
    StateMachineDeleting,
    StateMachineDoesNotExist,
    StoreUnavailable,
    TaskDoesNotExist,
    TaskTimedOut,
    UnstorableData,
)
from engine.store.map_runs import MapRunUpdateRefused
from engine.store.outbox import (
    AlertAlreadyExists,
    AlertDoesNotExist,
    DeliveryDoesNotExist,
    InvalidAlert,
)
from engine.store.schedules import (
    InvalidScheduleExpression,
    ScheduleAlreadyExists,
    ScheduleDoesNotExist,
)
from statemachine.errors import (
    DefinitionError,
    ExpressionSyntaxError,
    LanguageUnavailable,
    States,
    StatesError,
    StepwiseError,
)

__all__ = [
    "AlertAlreadyExists",
    "AlertDoesNotExist",
    "AmbiguousExecution",
    "CommitConflict",
    "ConflictError",
    "DefinitionError",
    "DeliveryDoesNotExist",
    "EncryptionKeyError",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "ExecutionNotRedrivable",
    "ExecutionNotRunning",
    "ExpressionSyntaxError",
    "InfrastructureError",
    "InvalidAlert",
    "InvalidExecutionInput",
    "InvalidName",
    "InvalidOutput",
    "InvalidRouting",
    "InvalidScheduleExpression",
    "InvalidSetting",
    "InvalidTestState",
    "InvalidToken",
    "LanguageUnavailable",
    "LeaseLost",
    "MapRunUpdateRefused",
    "NondeterminismError",
    "ResourceNotFound",
    "ScheduleAlreadyExists",
    "ScheduleDoesNotExist",
    "StateMachineDeleting",
    "StateMachineDoesNotExist",
    "States",
    "StatesError",
    "StepwiseError",
    "StoreUnavailable",
    "TaskDoesNotExist",
    "TaskTimedOut",
    "TestStateValidation",
    "UnstorableData",
]


class InvalidName(StepwiseError):
    """A state machine or execution name that AWS would reject."""

    aws_code = "InvalidName"


class InvalidExecutionInput(StepwiseError):
    """Execution input that is not JSON, or is larger than 256 KiB."""

    aws_code = "InvalidExecutionInput"


class InvalidSetting(StepwiseError, ValueError):
    """An Engine setting, or the ``STEPWISE_*`` environment variable giving it, that is unusable.

    Raised when an Engine is made (never later, mid-run); a ValueError too,
    as these settings' errors were before they had a class of their own.
    """


class InvalidTestState(StepwiseError):
    """TestState's definition is not JSON, or names no state it can run."""

    aws_code = "InvalidDefinition"


class TestStateValidation(StepwiseError):
    """A TestState argument AWS would refuse (variables not an object, a mock on a non-Task)."""

    __test__ = False  # not a pytest test class, despite the name
    aws_code = "ValidationException"


class NondeterminismError(StepwiseError):
    """A recorded step differs from what the walk reaches now (the definition changed under it)."""

    exit_code = 3
    server_error = True
