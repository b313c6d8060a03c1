"""The one place that finds the AWS-recorded conformance data, and compares results with it.

The data lives in ``$STEPWISE_CONFORMANCE_DIR`` when that is set, else in
``../shared/conformance`` beside the checkout. Every test module reads it
through `ROOT` / `case_files` here. A missing folder fails the run at
import (a collection error, exit code non-zero), never a silent skip: a
machine where the data sits elsewhere must say so, not check nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _find_root() -> Path:
    configured = os.environ.get("STEPWISE_CONFORMANCE_DIR")
    if configured:
        root = Path(configured)
        where = f"STEPWISE_CONFORMANCE_DIR={configured}"
    else:
        root = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
        where = f"{root} (beside the checkout; set STEPWISE_CONFORMANCE_DIR to move it)"
    if not (root / "cases").is_dir():
        raise RuntimeError(f"the conformance data is missing: no cases/ folder under {where}")
    return root


ROOT = _find_root()


def case_files(kind: str = "*") -> list[Path]:
    """The case files of one kind (``local``, ``lambda``, …; ``*`` for all), sorted.

    Raises RuntimeError when there are none: an empty folder checks nothing.
    """
    files = sorted((ROOT / "cases").glob(f"{kind}/*.json"))
    if not files:
        raise RuntimeError(f"no conformance cases under {ROOT / 'cases' / kind}")
    return files


def data_files(folder: str) -> list[Path]:
    """The JSON files of another folder of the data (``validation``), sorted; raises when empty."""
    files = sorted((ROOT / folder).glob("*.json"))
    if not files:
        raise RuntimeError(f"no conformance data under {ROOT / folder}")
    return files


def load_case(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _as_json(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def mismatches(
    case: dict[str, Any], status: str, output: str | None, error: str | None, cause: str | None
) -> list[str]:
    """What differs from AWS's recorded result (empty when the case passes)."""
    expected = case["expected"]
    problems = []
    if status != expected["status"]:
        problems.append(
            f"status {status} != {expected['status']} (error={error!r} cause={cause!r})"
        )
        return problems
    for field in case["exact_fields"]:
        if field == "status":
            continue
        want = expected.get(field)
        if field == "output":
            got = None if output is None else json.loads(output)
            if got != want:
                problems.append(f"output {got!r} != {want!r}")
        elif field == "error" and error != want:
            problems.append(f"error {error!r} != {want!r}")
        elif field == "cause" and _as_json(cause) != _as_json(want):
            problems.append(f"cause {cause!r} != {want!r}")
    return problems
