"""Errors of the ASL language layer: the root `StepwiseError` and the language's own errors.

The whole tree is drawn once, in `engine/errors.py`'s docstring. Every class
carries `aws_code` (the error code the Step Functions API returns, or None)
and `exit_code` (the `stepwise` CLI's exit status for it), so every face
renders an error from its class. `States` lists the predefined ``States.*``
error names. Nothing here does I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

__all__ = [
    "DefinitionError",
    "ExpressionSyntaxError",
    "LanguageUnavailable",
    "States",
    "StatesError",
    "StepwiseError",
]


class StepwiseError(Exception):
    """Root of every error Stepwise raises on purpose.

    `aws_code` is the error code the Step Functions API names this error with
    (None when it has none); `exit_code` is what the CLI exits with (2: bad
    input, unless a subclass says otherwise); `server_error` marks errors of
    the infrastructure rather than of the request (an HTTP face answers 5xx).
    """

    aws_code: ClassVar[str | None] = None
    exit_code: ClassVar[int] = 2
    server_error: ClassVar[bool] = False


class States(StrEnum):
    """The predefined error names of the Amazon States Language."""

    ALL = "States.ALL"
    TIMEOUT = "States.Timeout"
    HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
    TASK_FAILED = "States.TaskFailed"
    PERMISSIONS = "States.Permissions"
    RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
    PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
    QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"
    BRANCH_FAILED = "States.BranchFailed"
    NO_CHOICE_MATCHED = "States.NoChoiceMatched"
    INTRINSIC_FAILURE = "States.IntrinsicFailure"
    EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
    ITEM_READER_FAILED = "States.ItemReaderFailed"
    RESULT_WRITER_FAILED = "States.ResultWriterFailed"
    DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
    RUNTIME = "States.Runtime"


class StatesError(StepwiseError):
    """An ASL runtime error, the thing Retry and Catch see.

    `error` is the error name (``States.Runtime``, ``MyCustomError`` …) and
    `cause` a human-readable explanation (may be None, as on AWS when a Fail
    state gives no Cause). Reaching a face, it means the execution failed.
    """

    exit_code = 1

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = str(error)
        self.cause = cause

    def __repr__(self) -> str:
        return f"StatesError({self.error!r}, {self.cause!r})"


class ExpressionSyntaxError(StepwiseError):
    """A path, intrinsic function or JSONata expression that does not parse."""

    aws_code = "InvalidDefinition"


class LanguageUnavailable(StepwiseError):
    """A part of the language a definition uses could not be loaded: a broken install.

    Raised where the definition is validated or built (`statemachine.parts`),
    never as the execution's own failure: an engine that meets it while
    loading a stored definition leaves the execution to be retried.
    """

    exit_code = 3
    server_error = True


class DefinitionError(StepwiseError):
    """A definition that failed validation; `diagnostics` lists every problem."""

    aws_code = "InvalidDefinition"

    def __init__(self, diagnostics: list[object]) -> None:
        self.diagnostics = diagnostics
        lines = "; ".join(str(d) for d in diagnostics[:5])
        more = f" (+{len(diagnostics) - 5} more)" if len(diagnostics) > 5 else ""
        super().__init__(f"invalid state machine definition: {lines}{more}")
