"""SQLite: a start batch and a commit group that wait together, written in one transaction.

Each SQLite write transaction pays its BEGIN IMMEDIATE and its COMMIT (the
WAL frames, the shm locks; `benchmarks/PROFILE_STORE.md`, s18a). When a
start batch and a commit group are both waiting for the store's one thread
(W3's lone caller hands over an execution's end and the next start
together nearly every time, s19a), `start_and_commit` writes both in one
BEGIN IMMEDIATE … COMMIT: the commit group's lease check and writes first,
then the starts' resolution, name check and rows, every check inside the
transaction, and both answered only once COMMIT has returned. A part its
fast path does not decide alone — a lease not held, a collision, a name
already taken, data the database refuses, a qualifier, any error of its
statements — rolls the whole transaction back (nothing of either part is
written) and both parts go their usual way (`Store.commit_reading`,
`Store.start_executions`), which answers each exactly as when it comes
alone: the refused part by its careful path, the other by its own
transaction. Not a SAVEPOINT a part: measured in W3, a savepoint's
sub-journal (the pages the first part dirtied, copied again before the
second part may change them) and its three statements cost what the
shared BEGIN and COMMIT save (s19a); a refusal is rare and pays one
transaction more. So does a failure of the transaction itself (BEGIN past
the busy timeout, a COMMIT refused): after it nothing of either part is
written, and each part's usual call meets the database alone, as it would
have without a partner (a start's raw path, for one, then tries its
careful path).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import exc as sa_exc

from engine.store.boundary import mapped_errors
from engine.store.records import Checkpoint, CommitResult, ExecutionRecord
from engine.store.sqlitecommit import HeldSqlite, commit_within, raw_commits, records_of
from engine.store.starts import StartRequest, StartResult

if TYPE_CHECKING:
    from engine.store.startplan import Planned
    from engine.store.store import Store

__all__ = ["joint_held", "start_and_commit"]

T = TypeVar("T")

_log = logging.getLogger(__name__)


def joint_held(store: Store) -> HeldSqlite | None:
    """The kept connection a start and a commit may share a transaction on; None: they may not."""
    from engine.store.sqlite import SqliteBackend

    backend = store._backend
    if not (store.raw_start_writes and store.raw_commit_writes):
        return None
    if not isinstance(backend, SqliteBackend):
        return None
    return backend.held_for(store._engine)


def start_and_commit(
    store: Store,
    held: HeldSqlite,
    requests: Sequence[StartRequest],
    checkpoints: Sequence[Checkpoint],
    read_back: Collection[str],
    *,
    worker_id: str,
    now: datetime,
) -> tuple[list[StartResult] | None, tuple[list[CommitResult], dict[str, ExecutionRecord]] | None]:
    """Both parts in one write transaction: each answer, or None where its usual call decides.

    `held` is `joint_held(store)`.
    The start part's answer is `Store.start_executions`'s; the commit
    part's is (one OK per checkpoint, the records of `read_back`'s ending
    executions read inside the transaction). Both None when the
    transaction itself fails (BEGIN, COMMIT): rolled back, nothing of either
    part written, each answered by its usual call.
    """
    if not (store.raw_start_writes and store.raw_commit_writes):
        return None, None  # the careful paths (tests compare them)
    if not requests or not checkpoints or not raw_commits(checkpoints):
        return None, None
    results = [StartResult() for _ in requests]
    codec = store._codec
    blocks = store._backend.block_writes
    created: list[Planned] | None = None
    written: tuple[bool, dict[str, Any]] | None = None
    with mapped_errors(store._display), held.connection() as driver:
        try:
            try:
                driver.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                return None, None  # each part waits for the write lock on its own
            try:
                written = _part(
                    lambda: commit_within(
                        driver, held, checkpoints, read_back, worker_id, now, codec, blocks=blocks
                    )
                )
                if written is not None:
                    created = _part(lambda: store.start_within(driver, held, requests, results))
                if written is None or created is None:
                    # A part its fast path does not decide: nothing is written,
                    # each part goes its usual way.
                    if driver.in_transaction:
                        driver.execute("ROLLBACK")
                    return None, None
                try:
                    driver.execute("COMMIT")
                except sqlite3.Error:
                    # Not committed (SQLite's COMMIT either commits or reports
                    # that it did not): nothing written, each part goes alone.
                    if driver.in_transaction:
                        driver.execute("ROLLBACK")
                    return None, None
            except BaseException:
                if driver.in_transaction:
                    driver.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise sa_exc.DBAPIError.instance(
                "joint start and commit", None, error, sqlite3.Error
            ) from error
    start_answer = store.answered(created, results)
    wake, rows = written
    if wake:
        store._waker.wake_local()
    return start_answer, ([CommitResult.OK] * len(checkpoints), records_of(held, rows, codec))


def _part(write: Callable[[], T | None]) -> T | None:
    """`write()`'s answer; None for any error of the part (its refusal, the database's, ours).

    The part's usual call meets that error again and answers it as it does alone.
    """
    try:
        return write()
    except Exception as error:
        # Expected for refusals; a bug here would only show as no pairing.
        _log.debug("a joint write's part goes its usual way: %s", type(error).__name__)
        return None
