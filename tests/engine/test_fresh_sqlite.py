"""A fresh SQLite database gets, in one pass, exactly the schema its migrations make.

`engine/store/fresh_sqlite.py` replays the ``CREATE`` statements the
migrations leave in ``sqlite_master``. These tests build one database each
way, through the real `Store`, and compare everything SQLite knows of them:
``sqlite_master`` (tables, indexes, SQLite's automatic indexes), every
table's columns, foreign keys and indexes, the recorded versions and the
rows. They also pin that the stored statements are what the current
migrations produce (regenerate with ``python -m engine.store.migrations``).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.api import Engine
from engine.store import Store, fresh_sqlite, schema

REPO = Path(__file__).resolve().parents[2]
SUCCEED = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}


def _describe(path: Path) -> dict[str, Any]:
    """Everything SQLite says about a database's schema and rows (not where pages are)."""
    with sqlite3.connect(path) as db:
        master = sorted(
            db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(),
            key=repr,
        )
        tables = [name for kind, name, _, _ in master if kind == "table"]
        described: dict[str, Any] = {
            "master": master,
            "user_version": db.execute("PRAGMA user_version").fetchall(),
            "versions": db.execute("SELECT version FROM schema_migrations").fetchall(),
        }
        for table in tables:
            indexes = db.execute(f'PRAGMA index_list("{table}")').fetchall()
            described[table] = {
                "columns": db.execute(f'PRAGMA table_xinfo("{table}")').fetchall(),
                "foreign_keys": db.execute(f'PRAGMA foreign_key_list("{table}")').fetchall(),
                "indexes": sorted(
                    (row[1:], db.execute(f'PRAGMA index_xinfo("{row[1]}")').fetchall())
                    for row in indexes
                ),
                "rows": (
                    None
                    if table == "schema_migrations"
                    else db.execute(f'SELECT * FROM "{table}"').fetchall()
                ),
            }
    return described


def _migrated_step_by_step(path: Path, patched: pytest.MonkeyPatch) -> None:
    with patched.context() as step_by_step:
        step_by_step.setattr(fresh_sqlite, "FRESH_VERSION", 0)  # stale: the migrations run
        Store(f"sqlite:///{path}").close()


def test_a_fresh_database_has_the_schema_the_migrations_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replayed, migrated = tmp_path / "replayed.db", tmp_path / "migrated.db"
    Store(f"sqlite:///{replayed}").close()
    _migrated_step_by_step(migrated, monkeypatch)
    one_pass, step_by_step = _describe(replayed), _describe(migrated)
    assert one_pass == step_by_step
    assert len(one_pass["master"]) > 50  # every table and index, SQLite's own among them
    assert one_pass["versions"] == [(v,) for v in range(1, schema.SCHEMA_VERSION + 1)]


def test_the_stored_statements_are_what_the_current_migrations_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrated = tmp_path / "migrated.db"
    _migrated_step_by_step(migrated, monkeypatch)
    engine = sa.create_engine(f"sqlite:///{migrated}")
    try:
        with engine.connect() as conn:
            statements = fresh_sqlite.migrated_statements(conn)
    finally:
        engine.dispose()
    assert fresh_sqlite.FRESH_VERSION == schema.SCHEMA_VERSION, (
        "a migration was added: run `python -m engine.store.migrations`"
    )
    assert statements == fresh_sqlite.STATEMENTS, "run `python -m engine.store.migrations`"


def _loads_the_migrations(url: str) -> bool:
    """Whether a fresh process opening a store on `url` imports the migrations' module."""
    probe = (
        "import sys\n"
        "seen = []\n"
        "sys.addaudithook(lambda event, args: event == 'import' and seen.append(args[0]))\n"
        "from engine.store import Store\n"
        f"Store({url!r}).close()\n"
        "print('engine.store.migrations' in seen)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    return result.stdout.split() == ["True"]


def test_a_fresh_sqlite_store_never_loads_the_migrations(tmp_path: Path) -> None:
    assert not _loads_the_migrations(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_a_file_holding_other_tables_goes_through_the_migrations(tmp_path: Path) -> None:
    shared, fresh = tmp_path / "shared.db", tmp_path / "fresh.db"
    with sqlite3.connect(shared) as db:
        db.execute("CREATE TABLE app_notes (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("INSERT INTO app_notes (body) VALUES ('kept')")
    db.close()
    assert _loads_the_migrations(f"sqlite:///{shared}")
    Store(f"sqlite:///{fresh}").close()
    described = _describe(shared)
    assert described.pop("app_notes")["rows"] == [(1, "kept")]
    described["master"] = [row for row in described["master"] if row[2] != "app_notes"]
    assert described == _describe(fresh)


def test_a_shorter_list_of_migrations_still_builds_the_older_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:17])
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        assert store.schema_version() == 17
    finally:
        store.close()
    assert "history_blocks" not in _describe(tmp_path / "old.db")


def test_a_replayed_database_runs_and_upgrades_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with Engine(url, poll_seconds=0.1) as engine:
        engine.create_state_machine_sync("m", SUCCEED)
        engine.start_sync("m", {"n": 1}, name="one")
        assert engine.wait_sync("one", timeout=120).status == "SUCCEEDED"
    store = Store(url)
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION
    finally:
        store.close()
