"""The error tree: every class carries its AWS error code and its CLI exit code.

The CLI (and the HTTP API) render errors from these attributes, so this
table is what users see: the code in ``stepwise: error: CODE: …`` and the
exit status scripts branch on.
"""

from __future__ import annotations

import pytest

import engine.errors as tree
from engine.errors import StepwiseError

TABLE: list[tuple[type[StepwiseError], str | None, int]] = [
    (tree.StepwiseError, None, 2),
    (tree.DefinitionError, "InvalidDefinition", 2),
    (tree.ExpressionSyntaxError, "InvalidDefinition", 2),
    (tree.StatesError, None, 1),
    (tree.InvalidName, "InvalidName", 2),
    (tree.InvalidExecutionInput, "InvalidExecutionInput", 2),
    (tree.InvalidSetting, None, 2),
    (tree.StateMachineDoesNotExist, "StateMachineDoesNotExist", 2),
    (tree.StateMachineDeleting, "StateMachineDeleting", 2),
    (tree.ExecutionDoesNotExist, "ExecutionDoesNotExist", 2),
    (tree.AmbiguousExecution, "AmbiguousExecution", 2),
    (tree.ExecutionNotRunning, "ExecutionNotRunning", 2),
    (tree.ExecutionNotRedrivable, "ExecutionNotRedrivable", 2),
    (tree.ResourceNotFound, "ResourceNotFound", 2),
    (tree.ConflictError, "ConflictException", 2),
    (tree.InvalidRouting, "ValidationException", 2),
    (tree.MapRunUpdateRefused, "ValidationException", 2),
    (tree.InvalidTestState, "InvalidDefinition", 2),
    (tree.TestStateValidation, "ValidationException", 2),
    (tree.ExecutionAlreadyExists, "ExecutionAlreadyExists", 2),
    (tree.InvalidToken, "InvalidToken", 2),
    (tree.InvalidOutput, "InvalidOutput", 2),
    (tree.TaskDoesNotExist, "TaskDoesNotExist", 2),
    (tree.TaskTimedOut, "TaskTimedOut", 2),
    (tree.InvalidScheduleExpression, "ValidationException", 2),
    (tree.ScheduleDoesNotExist, "ResourceNotFoundException", 2),
    (tree.ScheduleAlreadyExists, "ConflictException", 2),
    (tree.InvalidAlert, "ValidationException", 2),
    (tree.AlertDoesNotExist, "ResourceNotFoundException", 2),
    (tree.AlertAlreadyExists, "ConflictException", 2),
    (tree.DeliveryDoesNotExist, "ResourceNotFoundException", 2),
    (tree.NondeterminismError, None, 3),
    (tree.LanguageUnavailable, None, 3),
    (tree.InfrastructureError, None, 3),
    (tree.StoreUnavailable, None, 3),
    (tree.EncryptionKeyError, None, 3),
    (tree.UnstorableData, None, 3),
    (tree.LeaseLost, None, 3),
    (tree.CommitConflict, None, 3),
]


@pytest.mark.parametrize(("cls", "aws_code", "exit_code"), TABLE, ids=lambda v: str(v))
def test_each_class_carries_its_aws_code_and_exit_code(
    cls: type[StepwiseError], aws_code: str | None, exit_code: int
) -> None:
    assert cls.aws_code == aws_code
    assert cls.exit_code == exit_code
    # Infrastructure failures are the server's, not the request's.
    assert cls.server_error == (exit_code == 3)


def test_the_table_covers_every_error_the_tree_exports() -> None:
    exported = {
        getattr(tree, name)
        for name in tree.__all__
        if isinstance(getattr(tree, name), type) and issubclass(getattr(tree, name), StepwiseError)
    }
    assert exported == {cls for cls, _, _ in TABLE}


def test_invalid_output_is_not_an_invalid_token() -> None:
    assert not issubclass(tree.InvalidOutput, tree.InvalidToken)
    from engine.callbacks import InvalidOutput

    assert InvalidOutput is tree.InvalidOutput


def test_a_commit_conflict_is_not_a_lost_lease() -> None:
    assert not issubclass(tree.CommitConflict, tree.LeaseLost)
    assert not issubclass(tree.LeaseLost, tree.CommitConflict)
    assert issubclass(tree.CommitConflict, tree.InfrastructureError)


def test_old_import_paths_still_name_the_same_classes() -> None:
    from engine.journal import NondeterminismError
    from engine.store import InvalidToken, StoreUnavailable

    assert NondeterminismError is tree.NondeterminismError
    assert (InvalidToken, StoreUnavailable) == (tree.InvalidToken, tree.StoreUnavailable)


def test_states_error_keeps_its_own_error_name() -> None:
    error = tree.StatesError("MyError", "it broke")
    assert (error.error, error.cause, str(error)) == ("MyError", "it broke", "MyError: it broke")
