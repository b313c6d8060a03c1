"""Features a run does not use are not loaded: the JSONata library waits for its first expression.

Peak memory is part of issue 19's targets; every module imported and not
used costs resident memory in every worker. Checked in a fresh interpreter,
since this test process has long imported everything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import sys
import engine, engine.api
from statemachine.build import build
from statemachine.jsonata import Limits, QueryEvaluationError
machine = build({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
assert "jsonata" not in sys.modules, "JSONata loaded for a JSONPath definition"
build({"QueryLanguage": "JSONata", "StartAt": "P",
       "States": {"P": {"Type": "Pass", "Output": "{% 1 + 1 %}", "End": True}}})
assert "jsonata" in sys.modules, "JSONata not loaded by a JSONata definition"
print("ok")
"""


def test_the_jsonata_library_loads_only_with_the_first_jsonata_expression() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
