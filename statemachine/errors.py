"""Errors of the ASL language layer.

The tree (engine/errors.py extends it with the runtime's own errors)::

    StepwiseError                 root of everything Stepwise raises on purpose
    ├── DefinitionError           a definition failed validation; carries every Diagnostic
    ├── ExpressionSyntaxError     a JSONPath, intrinsic or JSONata text does not parse
    └── StatesError               an ASL runtime error: `error` name + `cause`, as ASL has them;
                                  Retry/Catch match on `error`

`States` lists the predefined `States.*` error names. Nothing here does I/O.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "DefinitionError",
    "ExpressionSyntaxError",
    "States",
    "StatesError",
    "StepwiseError",
]


class StepwiseError(Exception):
    """Root of every error Stepwise raises on purpose."""


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
    state gives no Cause).
    """

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = str(error)
        self.cause = cause

    def __repr__(self) -> str:
        return f"StatesError({self.error!r}, {self.cause!r})"


class ExpressionSyntaxError(StepwiseError):
    """A path, intrinsic function or JSONata expression that does not parse."""


class DefinitionError(StepwiseError):
    """A definition that failed validation; `diagnostics` lists every problem."""

    def __init__(self, diagnostics: list[object]) -> None:
        self.diagnostics = diagnostics
        lines = "; ".join(str(d) for d in diagnostics[:5])
        more = f" (+{len(diagnostics) - 5} more)" if len(diagnostics) > 5 else ""
        super().__init__(f"invalid state machine definition: {lines}{more}")
