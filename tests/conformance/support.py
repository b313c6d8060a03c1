"""The one place that finds the AWS-recorded conformance data, and compares results with it.

The data lives in ``$STEPWISE_CONFORMANCE_DIR`` when that is set, else in
``../shared/conformance`` beside the checkout. Every test module reads it
through `ROOT` / `case_files` here. A missing folder fails the run at
import (a collection error, exit code non-zero), never a silent skip: a
machine where the data sits elsewhere must say so, not check nothing.
`mismatches` compares an outcome, `history_mismatch` the event types AWS
recorded (`aws_history`), and `KNOWN_HISTORY_GAPS` lists, by case id, the
histories Stepwise does not record yet, each with the reason.
"""

from __future__ import annotations

import json
import os
from collections import Counter
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


# Histories Stepwise cannot record yet, by case id, with the reason. The
# tests assert this is exactly the set of mismatching histories: a case
# listed here that starts matching fails too, so the list shrinks the day
# the feature lands. Empty since Distributed Map's Map Runs (issue 13).
KNOWN_HISTORY_GAPS: dict[str, str] = {}


def history_mismatch(case: dict[str, Any], types: list[str]) -> str | None:
    """How the recorded event types differ from AWS's `aws_history` (None when they agree).

    Types must be equal in order, or as a multiset where the recording
    re-sorted parallel events (`aws_history_order_normalized`). A case
    without `aws_history` has nothing to compare.
    """
    want = case.get("aws_history")
    if want is None:
        return None
    if case.get("aws_history_order_normalized"):
        if Counter(want) == Counter(types):
            return None
        missing = Counter(want) - Counter(types)
        extra = Counter(types) - Counter(want)
        return f"event types differ as a multiset: missing {dict(missing)}, extra {dict(extra)}"
    if want == types:
        return None
    at = next(
        (i for i, (a, b) in enumerate(zip(want, types, strict=False)) if a != b),
        min(len(want), len(types)),
    )
    return (
        f"event types differ from #{at + 1}: AWS {want[at : at + 4]} != ours {types[at : at + 4]}"
    )


def check_history(case: dict[str, Any], types: list[str]) -> None:
    """Assert the history agrees with AWS's, or, for a known gap, that it still differs."""
    problem = history_mismatch(case, types)
    if case["id"] in KNOWN_HISTORY_GAPS:
        assert problem is not None, (
            f"{case['id']} now matches AWS's history: remove it from KNOWN_HISTORY_GAPS"
        )
        return
    assert problem is None, problem
