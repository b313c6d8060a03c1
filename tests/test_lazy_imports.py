"""Features a run does not use are not loaded: the JSONata library waits for its first expression.

Peak memory is part of issue 19's targets; every module imported and not
used costs resident memory in every worker. Checked in a fresh interpreter,
since this test process has long imported everything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python(script: str, *args: str) -> str:
    """What a fresh interpreter running `script` with `args` prints (it must exit 0)."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


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
    assert _python(CHECK) == "ok"


# A fresh interpreter runs a small workflow (a Task, a Pass) on the store at
# argv[1], then prints the names of the modules it loaded.
RUN_AND_LIST = """
import sys
import anyio
from activities.registry import Registry
from engine import Engine

def inc(payload):
    return {"v": payload["v"] + 1}

registry = Registry()
registry.register("inc", inc)

DEFINITION = {"StartAt": "T", "States": {
    "T": {"Type": "Task", "Resource": "inc", "Next": "P"},
    "P": {"Type": "Pass", "End": True}}}

async def main():
    async with Engine(sys.argv[1], registry=registry) as engine:
        await engine.create_state_machine("m", DEFINITION)
        record = await engine.wait(await engine.start("m", {"v": 1}))
        assert record.status == "SUCCEEDED", record

anyio.run(main)
print("\\n".join(sorted(sys.modules)))
"""


def _modules_after_a_run(url: str) -> set[str]:
    return set(_python(RUN_AND_LIST, url).split())


# Engine features a plain run does not use, on either store: TestState, and
# the schedule service and expressions (the scheduler loop itself runs on
# every in-process worker, but loads them only with the first schedule due).
UNUSED_ENGINE_FEATURES = {
    "engine.teststate",
    "engine.scheduling.expressions",
    "engine.scheduling.service",
    # The language's Choice rules and Map validation (statemachine/parts.py).
    "statemachine.choice",
    "statemachine.validate_choice",
    "statemachine.validate_map",
    "statemachine.intrinsics",
}


def test_a_run_on_postgresql_does_not_load_sqlite(postgres_url: str) -> None:
    loaded = _modules_after_a_run(postgres_url)
    assert "psycopg" in loaded  # the check itself sees what a run loads
    assert not {"sqlite3", "_sqlite3", "sqlalchemy.dialects.sqlite"} & loaded
    assert not {m for m in loaded if m.startswith("engine.store.sqlite")}
    assert "engine.scheduling.scheduler" in loaded  # the loop runs
    assert not UNUSED_ENGINE_FEATURES & loaded


def test_the_schedule_api_and_teststate_load_when_used(sqlite_url: str) -> None:
    # The lazy paths still work: a schedule created and described, a state
    # tested, through the Engine and the public import paths.
    check = """
import sys
import anyio
from engine import Engine

async def main():
    async with Engine(sys.argv[1]) as engine:
        assert "engine.scheduling.service" not in sys.modules
        from engine.scheduling import Schedules, parse_expression, ScheduleDescription
        await engine.create_state_machine(
            "m", {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
        await engine.create_schedule("every-hour", "m", "rate(1 hour)")
        described = await engine.describe_schedule("every-hour")
        assert isinstance(engine.schedules, Schedules)
        assert isinstance(described, ScheduleDescription)
        answer = await engine.test_state({"Type": "Pass", "Result": 1, "End": True})
        assert answer["status"] == "SUCCEEDED", answer
        assert parse_expression("rate(5 minutes)", "UTC") is not None

anyio.run(main)
print("ok")
"""
    assert _python(check, sqlite_url) == "ok"


def test_a_run_on_sqlite_loads_no_optional_feature(sqlite_url: str) -> None:
    loaded = _modules_after_a_run(sqlite_url)
    assert "sqlite3" in loaded  # the check itself sees what a run loads
    optional = (
        "psycopg",  # PostgreSQL's driver
        "sqlalchemy.dialects.postgresql",
        "opentelemetry",  # telemetry, unless configured
        "croniter",  # schedules
        "jsonata",  # JSONata expressions
        "cryptography",  # payload encryption
        "starlette",  # the HTTP API and web view
        "uvicorn",
        "multiprocessing",
        "engine.cli",
        "engine.http",
        "engine.web",
        "engine.telemetry.export",
        "engine.telemetry.metrics",
        "engine.states.distributed_map",  # Distributed Map, its item reader and writer
        "engine.itemreader",
        "engine.resultwriter",
        "engine.s3local",
        "http.client",  # the HTTP Task and webhook alerts (with the email package under it)
    )
    assert not {
        module
        for module in loaded
        for name in optional
        if module == name or module.startswith(name + ".")
    }
    assert not UNUSED_ENGINE_FEATURES & loaded


# A fresh interpreter opens the store at argv[1] (migrating it when it is
# behind) and prints whether it imported the migrations' module, and whether
# that module is still alive afterwards (in sys.modules or anywhere in the heap).
OPEN_AND_WATCH = """
import gc, sys

imported = []

class Watch:
    def find_spec(self, name, path=None, target=None):
        imported.append(name)
        return None

sys.meta_path.insert(0, Watch())
from engine.store import Store
from engine.store.schema import SCHEMA_VERSION

store = Store(sys.argv[1])
assert store.schema_version() == SCHEMA_VERSION
alive = "engine.store.migrations" in sys.modules or any(
    isinstance(o, type(sys)) and o.__name__ == "engine.store.migrations" for o in gc.get_objects()
)
store.close()
print("engine.store.migrations" in imported, alive)
"""


def _open_and_watch(url: str) -> str:
    return _python(OPEN_AND_WATCH, url)


def test_the_migrations_load_only_to_migrate_and_are_released_after(db_url: str) -> None:
    # A fresh database: the store migrates it to the current version, then
    # drops the migrations' module (nothing keeps its code for the run). A
    # fresh SQLite file takes the migrated schema in one pass
    # (engine/store/fresh_sqlite.py) and never loads them.
    fresh = "False False" if db_url.startswith("sqlite") else "True False"
    assert _open_and_watch(db_url) == fresh
    # A migrated database: the process never imports the migrations.
    assert _open_and_watch(db_url) == "False False"


def test_the_schema_version_is_the_last_migrations_number() -> None:
    from engine.store.migrations import MIGRATIONS
    from engine.store.schema import SCHEMA_VERSION

    versions = [version for version, _description, _step in MIGRATIONS]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    assert versions[-1] == SCHEMA_VERSION


# A fresh interpreter: a Task/Pass machine loads no Choice or Map part of
# the language; validating a machine with a Choice and a Map loads them, and
# it runs. With argv[2] naming one of those parts, that part is broken (its
# import fails): the Pass machine still runs, and creating the other fails.
PARTS = """
import sys
import anyio
from engine import Engine
from engine.walk import is_poison
from statemachine import is_valid, validate
from statemachine.errors import LanguageUnavailable

PARTS = ("statemachine.choice", "statemachine.validate_choice", "statemachine.validate_map",
         "statemachine.intrinsics")
broken = sys.argv[2] if len(sys.argv) > 2 else None
if broken:
    sys.modules[broken] = None  # its import raises ImportError
CHOOSE = {"StartAt": "C", "States": {
    "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "M"}],
          "Default": "F"},
    "M": {"Type": "Map", "ItemsPath": "$.items", "End": True,
          "ItemProcessor": {"StartAt": "T", "States": {
              "T": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($, 1)"},
                    "End": True}}}},
    "F": {"Type": "Fail", "Error": "Unexpected"}}}

async def main():
    async with Engine(sys.argv[1]) as engine:
        await engine.create_state_machine("plain", {"StartAt": "P", "States": {
            "P": {"Type": "Pass", "End": True}}})
        record = await engine.wait(await engine.start("plain", {"v": 1}))
        assert record.status == "SUCCEEDED", record
        assert not [m for m in PARTS if m in sys.modules and sys.modules[m]], "loaded for Pass"
        if broken:
            try:
                await engine.create_state_machine("choose", CHOOSE)
            except LanguageUnavailable as error:
                assert broken in str(error), error
                assert not is_poison(error)  # a stored machine's execution is retried, not failed
                print("refused")
                return
            raise AssertionError("a Choice machine was created without its part")
        assert is_valid(validate(CHOOSE)), validate(CHOOSE)
        assert all(m in sys.modules for m in PARTS), "not loaded by validating a Choice and a Map"
        await engine.create_state_machine("choose", CHOOSE)
        record = await engine.wait(await engine.start("choose", {"n": 1, "items": [1, 2]}))
        assert record.status == "SUCCEEDED" and record.output == '[{"v":2},{"v":3}]', record
        print("ran")

anyio.run(main)
"""


def test_choice_and_map_parts_load_with_the_first_definition_that_has_them(
    sqlite_url: str,
) -> None:
    assert _python(PARTS, sqlite_url) == "ran"


@pytest.mark.parametrize("part", ["statemachine.choice", "statemachine.intrinsics"])
def test_a_broken_part_refuses_the_definition_not_an_execution(sqlite_url: str, part: str) -> None:
    assert _python(PARTS, sqlite_url, part) == "refused"


# `stepwise run` of a file of Task and Pass states, in a fresh interpreter:
# what it loads of the language's optional parts, printed as it exits.
CLI_RUN = """
import atexit, sys
PARTS = ("statemachine.choice", "statemachine.validate_choice", "statemachine.validate_map",
         "statemachine.intrinsics")
atexit.register(lambda: print("LOADED", sorted(m for m in PARTS if m in sys.modules)))
sys.argv = ["stepwise", "run", sys.argv[1], "--input", '{"v": 1}', "--db", sys.argv[2]]
from engine.cli import main
main()
"""


def test_stepwise_run_of_a_pass_machine_loads_no_optional_part(tmp_path: Path) -> None:
    definition = tmp_path / "pass.json"
    definition.write_text('{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}')
    printed = _python(CLI_RUN, str(definition), f"sqlite:///{tmp_path / 'run.db'}")
    assert '"v": 1' in printed  # it ran
    assert printed.endswith("LOADED []"), printed


# argv[2] "start": record an execution of a Choice machine, with no worker.
# argv[2] "work": with `statemachine.choice` broken, a real worker meets it for
# two seconds; then it is stopped. Prints its status, the worker's tries, and
# its status after the stop.
STORED_CHOICE = """
import logging, sys
import anyio
from engine import Engine

CHOOSE = {"StartAt": "C", "States": {
    "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "D"}],
          "Default": "D"},
    "D": {"Type": "Succeed"}}}

async def main():
    if sys.argv[2] == "start":
        async with Engine(sys.argv[1], worker=False) as engine:
            await engine.create_state_machine("choose", CHOOSE)
            print((await engine.start("choose", {"n": 1})).execution_id)
        return
    sys.modules["statemachine.choice"] = None  # a broken install: its import raises
    tries = []
    class Count(logging.Handler):
        def emit(self, record):
            if "could not be loaded" in record.getMessage():
                tries.append(record)
    logging.getLogger("stepwise").addHandler(Count())
    async with Engine(sys.argv[1]) as engine:
        await anyio.sleep(2)
        running = (await engine.describe(sys.argv[3])).status
        stopped = (await engine.stop(sys.argv[3])).status
    print(running, len(tries), stopped)

anyio.run(main)
"""


def test_a_broken_part_leaves_a_stored_execution_to_be_retried_with_backoff(
    db_url: str,
) -> None:
    """The worker neither fails nor spins on it (0.5 s, 2 s … apart); a stop still ends it."""
    execution_id = _python(STORED_CHOICE, db_url, "start")
    running, tries, stopped = _python(STORED_CHOICE, db_url, "work", execution_id).split()
    assert running == "RUNNING"
    assert 1 <= int(tries) <= 4, f"{tries} tries in 2 s"
    assert stopped == "ABORTED"
