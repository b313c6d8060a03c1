"""PostgreSQL's group commit on the event loop: the one-round-trip commit without a thread hop.

Every other store call runs on a worker thread (`Engine._run_db`), and so
did each group commit: two thread switches per commit, which on a busy
machine cost more than the commit's own round trip. Here the committer's
task sends the same statements (`fastcommit.plan_commit`: the in-database
lease check, the writes, COMMIT, one pipeline sync) over one psycopg
`AsyncConnection` of its own, awaiting the answer on the event loop. It
decides nothing the thread path would not: a lease not held or a row
already recorded rolls the group back and hands it to the store's careful
path (`Store.commit`, on a thread), which reports LEASE_LOST or CONFLICT per
checkpoint. Only asyncio is served (psycopg has no trio support); under
trio, or before the connection exists, callers take the thread path. A
failed connection is dropped and opened afresh on the next commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
import sniffio

from engine.store.codec import PayloadCodec
from engine.store.fastcommit import DEFERRED, RELEASE_SQL, plan_commit
from engine.store.records import Checkpoint, CommitResult

__all__ = ["LoopCommitter"]


class LoopCommitter:
    """One AsyncConnection, bound to the event loop that opened it, for group commits."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        if self._connection is not None and (self._connection.closed or self._loop is not loop):
            self.close()
        if self._connection is None:
            self._connection = await psycopg.AsyncConnection.connect(self._conninfo)
            self._loop = loop
        return self._connection

    async def commit(
        self,
        checkpoints: Sequence[Checkpoint],
        worker_id: str,
        now: datetime,
        codec: PayloadCodec,
    ) -> tuple[list[CommitResult], bool] | None:
        """Commit the group in one round trip on this loop; None: take the thread path.

        Raises psycopg.OperationalError when the database fails (the store's
        boundary maps it); the connection is dropped then.
        """
        if sniffio.current_async_library() != "asyncio":
            return None
        plan = plan_commit(checkpoints, worker_id, now, codec)
        if plan is None:
            return None
        try:
            connection = await self._connect()
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self.close()
            raise
        try:
            async with connection.pipeline():
                writes = connection.cursor()
                for sql, params, many in plan.statements:
                    if many:
                        await writes.executemany(sql, params)
                    else:
                        await writes.execute(sql, params)
                released = []
                for params in plan.releases:
                    cursor = connection.cursor()
                    await cursor.execute(RELEASE_SQL, params)
                    released.append(cursor)
                await connection.commit()
            wake = False
            for cursor in released:
                wake = wake or (await cursor.fetchone()) is not None
        except DEFERRED:
            await connection.rollback()
            return None
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self.close()
            raise
        except BaseException:
            self.close()  # its state is unknown: never reuse it
            raise
        return [CommitResult.OK] * len(checkpoints), wake

    def close(self) -> None:
        """Drop the connection (from any thread: the socket is closed, nothing awaited)."""
        connection, self._connection, self._loop = self._connection, None, None
        if connection is not None and not connection.closed:
            connection.pgconn.finish()
