"""Key rotation: re-sealing every stored payload under the newest encryption key, while workers run.

`PAYLOAD_COLUMNS` is the one list of the columns the codec (`codec.py`)
seals. `RotationStore.rotate_keys` walks each table in primary-key order in
small batches, each its own short transaction, and rewrites every value not
yet sealed under the newest key (plaintext rows from before encryption was
turned on included). Each rewrite is a compare-and-set on the value it read,
so a worker that changes a row in between (an execution finishing) always
wins and nothing it wrote is lost; the next run picks up anything left. Run
again, it finds nothing to do: rotation is idempotent. History blocks
(`blocks.py`: a commit's events as one row, each event's details sealed on
its own) are rewritten whole, every event's details re-sealed, by the same
compare-and-set on the block's text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import sqlalchemy as sa

from engine.store.base import StoreBase
from engine.store.codec import KEYS_ENV, EncryptionKeyError
from engine.store.schema import (
    activity_tasks,
    executions,
    history_blocks,
    history_events,
    journal,
    map_run_children,
    sql_effects,
)

__all__ = ["PAYLOAD_COLUMNS", "RotationStore"]

# table → (primary key columns, payload columns sealed by the codec)
PAYLOAD_COLUMNS: dict[sa.Table, tuple[tuple[str, ...], tuple[str, ...]]] = {
    executions: (("execution_id",), ("input", "output", "cause", "stop_requested_cause")),
    history_events: (("execution_id", "event_id"), ("details",)),
    journal: (("execution_id", "key"), ("value",)),
    activity_tasks: (("token",), ("input",)),
    sql_effects: (("execution_id", "key"), ("result",)),
    map_run_children: (("map_run_id", "item_index"), ("input",)),
}


class RotationStore(StoreBase):
    """The store's key rotation (a part of `Store`)."""

    @property
    def encryption_key_ids(self) -> list[str]:
        """The ids of the configured encryption keys, newest first (empty: payloads in clear)."""
        return self._codec.key_ids

    def rotate_keys(
        self, *, batch_size: int = 200, progress: Callable[[str, int], None] | None = None
    ) -> dict[str, int]:
        """Re-seal every payload not under the newest configured key; return counts per table.

        Each batch of `batch_size` rows is one short transaction, so workers
        keep running. `progress(table, rewritten_so_far)` is called after
        each batch. Raises EncryptionKeyError when no key is configured or a
        stored value was sealed under a key that is not configured.
        """
        prefix = self._codec.newest_prefix
        if prefix is None:
            raise EncryptionKeyError(
                f"no encryption key is configured: set {KEYS_ENV} (newest key first) to rotate"
            )
        counts: dict[str, int] = {}
        for table, (key_names, column_names) in PAYLOAD_COLUMNS.items():
            counts[table.name] = self._rotate_table(
                table, key_names, column_names, prefix, batch_size, progress
            )
        if self._history_blocks:  # else a database opened unmigrated, older than blocks
            counts[history_blocks.name] = self._rotate_blocks(batch_size, progress)
        return counts

    def _rotate_blocks(self, batch_size: int, progress: Callable[[str, int], None] | None) -> int:
        """Re-seal the details of every block event not under the newest key; events re-sealed.

        A block's events are inside its JSON text, out of reach of a prefix
        test in SQL: every block is read, in key order, `batch_size` a
        transaction, and one holding a stale event is rewritten whole.
        """
        keys = (history_blocks.c.execution_id, history_blocks.c.first_event_id)
        text = history_blocks.c.events
        codec = self._codec
        rewritten = 0
        after: tuple[Any, ...] | None = None
        while True:
            query = sa.select(*keys, text)
            if after is not None:
                query = query.where(sa.tuple_(*keys) > sa.tuple_(*after))
            query = query.order_by(*keys).limit(batch_size)
            with self._write() as conn:
                rows = conn.execute(query).all()
                for execution_id, first_event_id, old in rows:
                    events = msgspec.json.decode(old)
                    stale = [event for event in events if not codec.is_current(event[4])]
                    if not stale:
                        continue
                    for event in stale:
                        event[4] = codec.seal(codec.open(event[4]))
                    new = msgspec.json.encode(events).decode()
                    # Compare-and-set: a writer that changed the block since wins.
                    updated = conn.execute(
                        sa.update(history_blocks)
                        .where(keys[0] == execution_id, keys[1] == first_event_id, text == old)
                        .values(events=new)
                    ).rowcount
                    rewritten += updated * len(stale)
            if progress is not None:
                progress(history_blocks.name, rewritten)
            if len(rows) < batch_size:
                return rewritten
            after = tuple(rows[-1][:2])

    def _rotate_table(
        self,
        table: sa.Table,
        key_names: tuple[str, ...],
        column_names: tuple[str, ...],
        prefix: str,
        batch_size: int,
        progress: Callable[[str, int], None] | None,
    ) -> int:
        keys = [table.c[name] for name in key_names]
        columns = [table.c[name] for name in column_names]
        stale = sa.or_(
            *(
                sa.and_(c.is_not(None), sa.not_(c.startswith(prefix, autoescape=True)))
                for c in columns
            )
        )
        rewritten = 0
        after: tuple[Any, ...] | None = None
        while True:
            query = sa.select(*keys, *columns).where(stale)
            if after is not None:
                query = query.where(sa.tuple_(*keys) > sa.tuple_(*after))
            query = query.order_by(*keys).limit(batch_size)
            with self._write() as conn:
                rows = conn.execute(query).all()
                for row in rows:
                    where = [k == row[i] for i, k in enumerate(keys)]
                    for offset, column in enumerate(columns):
                        old = row[len(keys) + offset]
                        if self._codec.is_current(old):
                            continue
                        new = self._codec.seal(self._codec.open(old))
                        # Compare-and-set: a writer that changed the value since wins.
                        updated = conn.execute(
                            sa.update(table).where(*where, column == old).values({column.name: new})
                        ).rowcount
                        rewritten += updated
            if progress is not None:
                progress(table.name, rewritten)
            if len(rows) < batch_size:
                return rewritten
            after = tuple(rows[-1][: len(keys)])
