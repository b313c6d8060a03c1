"""The public surface of each package, pinned: a change here is a change users see."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "statemachine": [
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
    ],
    "engine": [
        "Clock",
        "Engine",
        "Event",
        "ExecutionRecord",
        "LoopClock",
        "MachineVersion",
        "SystemClock",
    ],
    "activities": [
        "ActivityContext",
        "ActivityError",
        "Registry",
        "activity",
        "default_registry",
        "lambda_function",
    ],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_statemachine_imports_nothing_of_ours() -> None:
    """The language layer stands alone: arrows point from engine to statemachine only."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "statemachine"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("engine", "activities")), path.name
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith(("engine", "activities")), path.name


def test_activities_import_neither_engine_nor_statemachine_at_module_level() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "activities"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: the CLI imports the engine lazily
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("engine", "statemachine")), path.name
