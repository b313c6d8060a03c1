"""The mutation check: the suite must fail when a safety mechanism is removed.

Each row of `MUTATIONS` names a deliberate bug — a file, an exact anchor
text and its replacement — and the tests that must catch it. For each row
the packages, tests and pyproject are copied to a temporary folder, the
anchor is replaced there (never in the checkout), and the named tests run
against the copy in a child pytest with the copy first on ``sys.path``
(worker subprocesses the tests spawn inherit it). The row passes when that
run fails, naming each listed test among its failures.

When the code moves, a row's anchor is no longer found exactly once and the
row fails saying so: update the anchor, keep it short. A baseline run of
every listed test on the unmutated copy guards against a copy that fails
for reasons of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conformance.support import ROOT as CONFORMANCE_ROOT


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    anchor: str
    replacement: str
    caught_by: tuple[str, ...]
    # Further (anchor, replacement) pairs in the same file, for a mechanism written twice.
    more: tuple[tuple[str, str], ...] = ()


# One row per mutation: (file, the exact text, what replaces it, the tests that must fail).
MUTATIONS = [
    Mutation(
        "lease check without owner/expiry",
        "engine/store/checkpoints.py",
        "    return lease_owner == worker_id and lease_expires_at is not None"
        " and lease_expires_at > now\n",
        "    return True\n",
        ("tests/engine/test_store.py::test_commit_with_a_lost_lease_writes_nothing[sqlite]",),
    ),
    Mutation(
        "SQL effect replayed instead of read back",
        "engine/store/effects.py",
        "                if done is not None:\n"
        '                    return {"ok": json.loads(self._codec.open(done.result))}\n',
        "",
        (
            "tests/activities/test_builtins.py::test_a_rerun_sql_step_reads_its_recorded_effect[sqlite]",
        ),
    ),
    Mutation(
        "journal record_once always produces",
        "engine/journal.py",
        "        if found is not MISSING:\n            return found\n"
        "        value, events = produce()",
        "        value, events = produce()",
        (
            "tests/activities/test_callbacks.py::test_engine_run_notices_a_callback_long_before_its_timeout",
        ),
        more=(
            (
                "        if found is not MISSING:\n            return found\n"
                "        value, events = await produce()",
                "        value, events = await produce()",
            ),
        ),
    ),
    Mutation(
        "no nondeterminism check",
        "engine/journal.py",
        "        if state is not None and recorded_state is not None"
        " and recorded_state != state:\n",
        "        if False:\n",
        (
            "tests/engine/test_replay_nondeterminism.py::test_a_changed_walk_is_caught_at_any_record_not_only_entry",
        ),
    ),
    Mutation(
        "idempotency key differs per run",
        "engine/keys.py",
        'return f"{execution_id}/{frame}/{attempt_number}"',
        "return f\"{execution_id}/{frame}/{attempt_number}/{__import__('time').time()}\"",
        (
            "tests/engine/test_paused_worker.py::test_paused_worker_cannot_write_after_losing_its_lease[sqlite]",
        ),
    ),
    Mutation(
        "JSONata without its deadline",
        "statemachine/jsonata_eval.py",
        "self._deadline = time.monotonic() + limits.timeout_seconds",
        'self._deadline = float("inf")',
        (
            "tests/statemachine/test_jsonata.py::test_the_deadline_stops_a_long_but_finite_evaluation",
        ),
    ),
]

CHECKOUT = Path(__file__).resolve().parents[2]
COPIED = ("activities", "engine", "statemachine", "tests", "pyproject.toml")
# Per test, in the child run (pytest-timeout): a mutated test that hangs fails.
TEST_SECONDS = 90


def _copy_tree(target: Path) -> Path:
    target.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = CHECKOUT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    return target


def _environment(tree: Path) -> dict[str, str]:
    # Not an xdist worker's identity: the child is a plain pytest run of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["STEPWISE_CONFORMANCE_DIR"] = str(CONFORMANCE_ROOT)
    return env


def _pytest(tree: Path, tests: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `tests` in the copy, each bounded by TEST_SECONDS, in one process (`-n 0`).

    The copied pyproject's addopts run the suite in parallel; a handful of
    tests gain nothing from worker processes, and xdist's report would
    differ from the plain one the FAILED lines are read from.
    """
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "-n", "0"]
    command += [f"--timeout={TEST_SECONDS}", *tests]
    return subprocess.run(command, cwd=tree, env=_environment(tree), capture_output=True, text=True)


def _mutate(tree: Path, mutation: Mutation) -> None:
    path = tree / mutation.file
    text = path.read_text()
    found = text.count(mutation.anchor)
    if found != 1:
        pytest.fail(
            f"mutation {mutation.name!r}: its anchor occurs {found} times in {mutation.file} "
            "(must be exactly once): the code moved, update the anchor in "
            f"tests/mutations/test_mutations.py:\n{mutation.anchor}",
            pytrace=False,
        )
    text = text.replace(mutation.anchor, mutation.replacement)
    for anchor, replacement in mutation.more:
        if text.count(anchor) != 1:
            pytest.fail(
                f"mutation {mutation.name!r}: a further anchor is not found exactly once in "
                f"{mutation.file}: update it in tests/mutations/test_mutations.py:\n{anchor}",
                pytrace=False,
            )
        text = text.replace(anchor, replacement)
    path.write_text(text)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_tree(tmp_path_factory.mktemp("mutations") / "pristine")


def test_the_copy_is_what_runs_and_the_listed_tests_pass_on_it(pristine: Path) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import engine, statemachine, tests; print(engine.__file__)"],
        cwd=pristine,
        env=_environment(pristine),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()) == pristine / "engine" / "__init__.py"
    tests = sorted({test for m in MUTATIONS for test in m.caught_by})
    baseline = _pytest(pristine, tests)
    assert baseline.returncode == 0, baseline.stdout[-4000:] + baseline.stderr[-2000:]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_the_suite_catches_the_mutation(mutation: Mutation, tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path / "tree")
    _mutate(tree, mutation)
    result = _pytest(tree, list(mutation.caught_by))
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode != 0, f"mutation {mutation.name!r} survived:\n{report}"
    for test in mutation.caught_by:
        assert f"FAILED {test}" in result.stdout, f"{test} did not fail:\n{report}"
