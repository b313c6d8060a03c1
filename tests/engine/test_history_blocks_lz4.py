"""History blocks compressed with lz4 on PostgreSQL (migration 21).

A commit's block is one large text, compressed by TOAST inside the commit;
migration 21 makes PostgreSQL compress new blocks with lz4 rather than pglz
(a third of the server's time for W2's blocks, `benchmarks/PROFILE.md`,
s22b). What a user relies on: every block reads back as written, those
stored before the migration (pglz) as well as those after.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engine.store import Event, Store, schema
from engine.store.blocks import block_row
from engine.store.codec import PayloadCodec
from engine.store.schema import history_blocks
from tests.engine.test_history_blocks import _started

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _events(first: int, last: int) -> list[Event]:
    """Events `first`..`last`, ~1 kB of compressible details each (TOAST compresses past ~2 kB)."""
    return [
        Event(
            i, i - 1, "PassStateExited", T0 + timedelta(seconds=i), {"output": "abc" * 300 + str(i)}
        )
        for i in range(first, last + 1)
    ]


def _compressions(store: Store) -> list[str | None]:
    with store._engine.begin() as conn:
        rows = conn.exec_driver_sql(
            "SELECT pg_column_compression(events) FROM history_blocks ORDER BY first_event_id"
        )
        return [row[0] for row in rows]


def _has_lz4(store: Store) -> bool:
    with store._engine.begin() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                "WHERE name = 'default_toast_compression'"
            ).scalar()
        )


def test_blocks_from_before_the_migration_and_after_read_back_alike(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:20])
        patched.setattr(schema, "SCHEMA_VERSION", 20)
        old = Store(postgres_url)
        try:
            _started(old)
            with old._engine.begin() as conn:
                conn.execute(
                    sa.insert(history_blocks), block_row("e1", _events(2, 9), PayloadCodec())
                )
        finally:
            old.close()
    upgraded = Store(postgres_url)  # opening it migrates
    try:
        if not _has_lz4(upgraded):
            pytest.skip("this PostgreSQL has no lz4: migration 21 leaves pglz")
        with upgraded._engine.begin() as conn:
            conn.execute(
                sa.insert(history_blocks), block_row("e1", _events(10, 17), PayloadCodec())
            )
        assert _compressions(upgraded) == ["pglz", "lz4"]
        assert upgraded.schema_version() == schema.SCHEMA_VERSION == 21
        history = upgraded.history("e1")
        assert history[1:] == _events(2, 17)
    finally:
        upgraded.close()
