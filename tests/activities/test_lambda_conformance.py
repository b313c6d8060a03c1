"""The AWS-recorded Lambda cases (../shared/conformance/cases/lambda) run under Stepwise.

Each case's `lambda_functions` binds a function ARN to a behaviour of
conformance/lambdas.py, registered with `lambda_function`; the case runs with
`Engine.run` on a fresh SQLite file and is compared as conformance/README.md says,
its history's event types with AWS's recorded `aws_history` included.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from activities import Registry, lambda_function
from engine.api import Engine
from tests.conformance.support import ROOT as CONFORMANCE
from tests.conformance.support import case_files, check_history

CASES = case_files("lambda")


def _behaviours() -> ModuleType:
    spec = importlib.util.spec_from_file_location("conformance_lambdas", CONFORMANCE / "lambdas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAMBDAS = _behaviours()


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and isinstance(actual, str):
        try:
            return bool(json.loads(expected) == json.loads(actual))
        except ValueError:
            return expected == actual
    return bool(expected == actual)


def test_all_sixteen_cases_are_collected() -> None:
    assert len(CASES) == 16


@pytest.mark.parametrize("path", CASES, ids=[p.stem[:90] for p in CASES])
def test_lambda_case(path: Path, tmp_path: Path) -> None:
    case = json.loads(path.read_text())
    registry = Registry()
    for arn, behaviour in case["lambda_functions"].items():
        lambda_function(arn, registry=registry)(LAMBDAS.BEHAVIOURS[behaviour])

    async def main() -> Any:
        async with Engine(f"sqlite:///{tmp_path / 'db.sqlite'}", registry=registry) as engine:
            with anyio.fail_after(90):
                record = await engine.run(case["definition"], case["input"])
            return record, [event.type for event in await engine.history(record)]

    record, types = anyio.run(main)
    expected = case["expected"]
    assert record.status == expected["status"], (record.error, record.cause)
    for name in case["exact_fields"]:
        if name == "status":
            continue
        if name == "output":
            assert json.loads(record.output or "null") == expected["output"]
        elif name == "error":
            assert record.error == expected["error"]
        elif name == "cause":
            if expected["cause"] is None:
                assert record.cause is None
            else:
                assert _same(expected["cause"], record.cause), record.cause
    check_history(case, types)
