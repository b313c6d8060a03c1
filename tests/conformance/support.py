"""Running AWS-recorded conformance cases (../shared/conformance), compared as its README says."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(
    os.environ.get(
        "STEPWISE_CONFORMANCE_DIR",
        Path(__file__).resolve().parents[2].parent / "shared" / "conformance",
    )
)


def case_files(kind: str) -> list[Path]:
    files = sorted((ROOT / "cases" / kind).glob("*.json"))
    if not files:
        raise RuntimeError(f"no conformance cases under {ROOT / 'cases' / kind}")
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
