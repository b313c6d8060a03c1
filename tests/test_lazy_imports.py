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
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


# Engine features a plain run does not use, on either store: TestState, and
# the schedule service and expressions (the scheduler loop itself runs on
# every in-process worker, but loads them only with the first schedule due).
UNUSED_ENGINE_FEATURES = {
    "engine.teststate",
    "engine.scheduling.expressions",
    "engine.scheduling.service",
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
    result = subprocess.run(
        [sys.executable, "-c", check, sqlite_url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


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
    result = subprocess.run(
        [sys.executable, "-c", OPEN_AND_WATCH, url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


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
