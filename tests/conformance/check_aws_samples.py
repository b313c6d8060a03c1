"""Validate the public AWS sample workflows (aws-samples/step-functions-workflows-collection).

A script, not a test: the collection is not ours to commit (its licence), so
this checks a copy fetched beside the checkout, when one is there::

    python -m tests.conformance.check_aws_samples PATH [--verbose]

PATH is a checkout or a bare git directory of the collection. Every
``*.asl.json`` is read, its template placeholders (``${FunctionArn}``,
``${AWS::Region}``, …) replaced by valid values of the kind the name asks
for, and validated as AWS does (`statemachine.validate`). It prints one line
per rejected definition and the count; exit status 1 when any is rejected.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from statemachine.validate import is_valid, validate

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_ACCOUNT = "123456789012"
_REGION = "us-east-1"


def _value_for(name: str, *, whole: bool, key: str | None) -> str:
    """A valid stand-in for the placeholder `name` (a whole string value or part of one)."""
    lowered = name.lower()
    if "partition" in lowered:
        return "aws"
    if "region" in lowered:
        return _REGION
    if "account" in lowered:
        return _ACCOUNT
    if not whole:
        return re.sub(r"[^A-Za-z0-9-]", "-", name) or "value"
    if key == "Resource" or "function" in lowered or "lambda" in lowered:
        return f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:{_safe(name)}"
    if "statemachine" in lowered or "state_machine" in lowered:
        return f"arn:aws:states:{_REGION}:{_ACCOUNT}:stateMachine:{_safe(name)}"
    if "topic" in lowered or "sns" in lowered:
        return f"arn:aws:sns:{_REGION}:{_ACCOUNT}:{_safe(name)}"
    if "queueurl" in lowered or ("queue" in lowered and "url" in lowered):
        return f"https://sqs.{_REGION}.amazonaws.com/{_ACCOUNT}/{_safe(name)}"
    if "role" in lowered:
        return f"arn:aws:iam::{_ACCOUNT}:role/{_safe(name)}"
    if "arn" in lowered:
        return f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:{_safe(name)}"
    return _safe(name)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9-_]", "-", name) or "value"


def substitute(text: str) -> str:
    """The definition text with every placeholder replaced (quoted and bare ones)."""

    def whole_string(match: re.Match[str]) -> str:
        prefix, name = match.group(1) or "", match.group(2)
        key = prefix.split(":")[0].strip().strip('"') or None
        return f'{prefix}"{_value_for(name, whole=True, key=key)}"'

    # A placeholder that is a whole string value, with the key before it when there is one.
    text = re.sub(r'("[^"]*"\s*:\s*)?"\$\{([^}]*)\}"', whole_string, text)
    # A bare placeholder where a number belongs (`"MaxConcurrency": ${N}`).
    text = re.sub(r"(:\s*)\$\{([^}]*)\}(?=\s*[,}\]])", r"\g<1>1", text)
    return _PLACEHOLDER.sub(lambda m: _value_for(m.group(1), whole=False, key=None), text)


def definitions(root: Path) -> list[tuple[str, str]]:
    """(path, text) of every *.asl.json in a checkout or a bare git directory."""
    if (root / "HEAD").is_file() and not (root / ".git").exists():
        names = subprocess.run(
            ["git", "--git-dir", str(root), "ls-tree", "-r", "--name-only", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        return [
            (
                name,
                subprocess.run(
                    ["git", "--git-dir", str(root), "show", f"HEAD:{name}"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout,
            )
            for name in names
            if name.endswith(".asl.json")
        ]
    return [
        (str(path.relative_to(root)), path.read_text()) for path in sorted(root.rglob("*.asl.json"))
    ]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    verbose = "--verbose" in argv
    root = Path(next(a for a in argv if not a.startswith("--")))
    found = definitions(root)
    rejected = 0
    for name, text in found:
        try:
            definition = json.loads(substitute(text))
        except ValueError as exc:
            print(f"{name}: not JSON after substitution: {exc}")
            rejected += 1
            continue
        diagnostics = validate(definition)
        if not is_valid(diagnostics):
            rejected += 1
            print(f"{name}: rejected")
            if verbose:
                for diagnostic in diagnostics:
                    print(f"    {diagnostic}")
    print(f"{len(found) - rejected} of {len(found)} definitions validate")
    return 1 if rejected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
