"""What leaves the store: its own errors without driver chains, its migrations, the caller's time.

A user who reuses an execution name, or whose database is down, sees one
Stepwise error with a message for people: no chained `sqlite3` or `psycopg`
exception, no SQL text. Opening an older database upgrades it (migration 3
drops the unused timers table). Times the store records for a release or an
activity pick-up are the caller's clock, not the wall clock.
"""

from __future__ import annotations

import subprocess
import sys
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa

from engine.callbacks import ensure_activity_task, get_activity_task_sync
from engine.store import (
    SCHEMA_VERSION,
    Checkpoint,
    CommitResult,
    Event,
    ExecutionAlreadyExists,
    Store,
    StoreUnavailable,
    TokenRecord,
)
from engine.store.connect import create_engine, parse_url
from engine.store.schema import MIGRATIONS, schema_migrations

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'
# Names of driver exceptions and SQL: none of them may reach the user.
DRIVER_WORDS = ("IntegrityError", "OperationalError", "sqlite3.", "psycopg.", "INSERT ", "SELECT ")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def start(store: Store, name: str, input: str = "{}") -> None:
    store.create_execution(
        execution_id=f"exec-{name}-{input}",
        name=name,
        machine=store.put_state_machine("Machine", DEFINITION),
        input=input,
        start_date=T0,
        trace_id="0" * 32,
        first_event=Event(1, 0, "ExecutionStarted", T0, {"input": input}),
    )


def assert_unchained(error: BaseException) -> None:
    assert error.__cause__ is None
    assert error.__suppress_context__ is True
    shown = "".join(traceback.format_exception(error))
    for word in DRIVER_WORDS:
        assert word not in shown, shown


# -- errors at the boundary ----------------------------------------------------


def test_a_reused_name_raises_execution_already_exists_without_the_driver_error(
    store: Store,
) -> None:
    start(store, "order-42", '{"amount": 12}')
    with pytest.raises(ExecutionAlreadyExists, match="Execution Already Exists") as raised:
        start(store, "order-42", '{"amount": 13}')
    assert_unchained(raised.value)


def test_an_unreachable_database_raises_store_unavailable_without_the_driver_error() -> None:
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1") as raised:
        Store("postgresql://nobody:secret@127.0.0.1:1/none")
    assert_unchained(raised.value)
    assert "secret" not in str(raised.value)


def test_rerunning_the_readme_example_shows_one_short_error(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    example = readme.split("### Embedded in a service\n```python\n")[1].split("```")[0]
    # The second run starts order-42 again, which has closed: the name is taken.
    (tmp_path / "example.py").write_text(example)
    runs = [
        subprocess.run(
            [sys.executable, "example.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        for _ in range(2)
    ]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[1].returncode != 0
    last_line = runs[1].stderr.strip().splitlines()[-1]
    assert "ExecutionAlreadyExists: Execution Already Exists" in last_line
    assert "During handling of the above exception" not in runs[1].stderr
    for word in DRIVER_WORDS:
        assert word not in runs[1].stderr, runs[1].stderr


# -- migrations ---------------------------------------------------------------------


def test_opening_a_version_2_database_drops_the_timers_table(db_url: str) -> None:
    parsed, dialect = parse_url(db_url)
    engine = create_engine(parsed, dialect)
    with engine.begin() as conn:
        schema_migrations.create(conn)
        for version, _description, step in MIGRATIONS[:2]:
            step(conn)
            conn.execute(sa.insert(schema_migrations).values(version=version, applied_at=T0))
    with engine.connect() as conn:
        assert "timers" in sa.inspect(conn).get_table_names()
    engine.dispose()
    store = Store(db_url)
    try:
        assert store.schema_version() == SCHEMA_VERSION >= 4
        start(store, "after-upgrade")
        assert store.get_execution("after-upgrade").status == "RUNNING"
    finally:
        store.close()
    engine = create_engine(parsed, dialect)
    with engine.connect() as conn:
        assert "timers" not in sa.inspect(conn).get_table_names()
    engine.dispose()


# -- the caller's clock ---------------------------------------------------------------


def test_a_release_after_a_signal_makes_the_work_due_at_the_callers_now(store: Store) -> None:
    start(store, "x")
    assert store.claim_execution("exec-x-{}", "w", lease_seconds=60, now=T0)
    store.request_stop("exec-x-{}", error=None, cause=None, now=at(1))
    assert store.claim_execution("exec-x-{}", "w", lease_seconds=60, now=at(2))
    store.request_stop("exec-x-{}", error=None, cause=None, now=at(3))
    store.release("exec-x-{}", "w", due_at=at(500), now=at(7))
    # The stop arrived while the lease was held: due at the caller's now, not at 500 s.
    assert store.work_due_at("exec-x-{}") == (True, at(7))


class FixedClock:
    """A clock standing still at one instant (the caller's time, far from the wall clock)."""

    def __init__(self, when: datetime) -> None:
        self.when = when

    def now(self) -> datetime:
        return self.when

    async def sleep_until(self, when: datetime) -> None:
        raise AssertionError("not used")


def test_an_activity_pick_up_is_recorded_at_the_callers_time(store: Store) -> None:
    start(store, "act")
    execution_id = "exec-act-{}"
    assert store.claim_execution(execution_id, "w", lease_seconds=60, now=T0)
    token = TokenRecord("tok", execution_id, "Work#0:cb", "Work", created_at=at(1))
    assert store.commit(
        [Checkpoint(execution_id, tokens=[token], release=True, release_due_at=None)],
        worker_id="w",
        now=at(1),
    ) == [CommitResult.OK]
    for _ in range(2):  # queued once: a repeat does nothing
        ensure_activity_task(
            store,
            token="tok",
            activity="arn:aws:states:local:000000000000:activity:work",
            execution_id=execution_id,
            key="Work#0",
            input='{"n": 1}',
            now=at(2),
        )
    task = get_activity_task_sync(
        store, "work", worker_name="w1", timeout=0, clock=FixedClock(at(9))
    )
    assert task is not None and task.taskToken == "tok" and task.input == '{"n": 1}'
    assert get_activity_task_sync(store, "work", timeout=0) is None  # handed out once
    polled = msgspec.json.decode(store.load(execution_id).journal["Work#0:polled"])
    assert polled["v"] == {"worker": "w1", "t": at(9).isoformat()}
    assert store.get_token("tok").heartbeat_at == at(9)
    assert store.work_due_at(execution_id) == (True, at(9))
