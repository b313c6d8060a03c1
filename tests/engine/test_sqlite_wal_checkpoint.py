"""SQLite's WAL is checkpointed on a thread of its own, not by the commit crossing its threshold.

`HeldSqlite` counts the write transactions of the commit path and, every
few of them, wakes a `WalCheckpointer` that runs a PASSIVE checkpoint on a
pooled connection: what was committed is copied into the database file
itself (a copy of the file without its `-wal` shows it), an engine's
workflows run to the same end with it, disposing of the engine ends the
thread, and an in-memory database (one connection, no WAL) has none.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa

from engine.api import Engine
from engine.store.connect import create_sqlite_engine
from engine.store.sqlitecommit import HeldSqlite, WalCheckpointer

_PASS_CHAIN = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($.v, 1)"}, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($.v, 1)"}, "End": True},
    },
}


def _wait_for_checkpoints(checkpointer: WalCheckpointer, count: int) -> None:
    """Wait (a generous deadline, not a timing assertion) until `count` checkpoints ran."""
    deadline = time.monotonic() + 60
    while checkpointer.checkpoints < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpointer.checkpoints >= count


def _rows_in_file_alone(path: Path, copy: Path) -> int:
    """The rows of table t that a copy of the database file without its -wal holds."""
    shutil.copyfile(path, copy)
    with sqlite3.connect(copy) as reader:
        (count,) = reader.execute("SELECT count(*) FROM t").fetchone()
    return int(count)


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "stepwise sqlite checkpoint"]


def _write_until_a_thread_starts(
    held: HeldSqlite, before: set[threading.Thread]
) -> threading.Thread:
    """Empty write transactions until a checkpoint thread not in `before` runs; that thread."""
    for _ in range(2_000):  # far more than the longest interval between signals
        with held.connection() as driver:
            driver.execute("BEGIN IMMEDIATE")
            driver.execute("COMMIT")
        started = [t for t in _checkpoint_threads() if t not in before]
        if started:
            assert len(started) == 1
            return started[0]
    raise AssertionError("no checkpoint thread started")


def test_committed_rows_reach_the_database_file_without_the_committer_checkpointing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wal.db"
    engine = create_sqlite_engine(sa.make_url(f"sqlite:///{path}"))
    held = HeldSqlite(engine)
    checkpointer = held.checkpointer
    assert checkpointer is not None
    try:
        with held.connection() as driver:
            # The committing connection never checkpoints by itself here, so
            # only the background thread can move the rows into the file.
            driver.execute("PRAGMA wal_autocheckpoint=0")
            driver.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        for n in range(100):
            with held.connection() as driver:
                driver.execute("BEGIN IMMEDIATE")
                driver.execute("INSERT INTO t (n, v) VALUES (?, ?)", (n, "x" * 200))
                driver.execute("COMMIT")
        # Signals that come while a checkpoint runs fold into the next one.
        _wait_for_checkpoints(checkpointer, 1)
        # End the thread (after the checkpoint under way): a copy of the file
        # taken while a checkpoint writes into it can be torn ("malformed").
        checkpointer.stop()
        # At least the rows of the transactions before the first signal are in the file.
        assert _rows_in_file_alone(path, tmp_path / "copy1.db") >= 31
        # A checkpoint now (as the thread's next one would) brings in the rest.
        checkpointer.checkpoint()
        assert _rows_in_file_alone(path, tmp_path / "copy2.db") == 100
    finally:
        engine.dispose()


def test_disposing_of_the_engine_ends_the_checkpoint_thread(tmp_path: Path) -> None:
    engine = create_sqlite_engine(sa.make_url(f"sqlite:///{tmp_path / 'wal.db'}"))
    held = HeldSqlite(engine)
    assert held.checkpointer is not None
    before = set(_checkpoint_threads())
    started = _write_until_a_thread_starts(held, before)
    engine.dispose()
    assert not started.is_alive()
    # The engine may be used after a dispose (an outage's reset): a new thread starts.
    restarted = _write_until_a_thread_starts(held, before | {started})
    engine.dispose()
    assert not restarted.is_alive()


def test_an_in_memory_database_has_no_checkpointer() -> None:
    engine = create_sqlite_engine(sa.make_url("sqlite://"))
    try:
        assert HeldSqlite(engine).checkpointer is None
    finally:
        engine.dispose()


def test_executions_end_the_same_with_checkpoints_running_beside_them(sqlite_url: str) -> None:
    async def main() -> list[Any]:
        async with Engine(sqlite_url) as engine:
            await engine.create_state_machine("chain", _PASS_CHAIN)
            records = [await engine.start("chain", {"v": n}) for n in range(80)]
            ended = [await engine.wait(record, timeout=60) for record in records]
        return [json.loads(record.output or "null") for record in ended]

    assert anyio.run(main) == [{"v": n + 2} for n in range(80)]
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as reader:
        assert reader.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert reader.execute(
            "SELECT count(*) FROM executions WHERE status = 'SUCCEEDED'"
        ).fetchone() == (80,)
