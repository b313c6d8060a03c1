"""SQLite: a start batch and a commit group that wait together, written in one transaction.

Each SQLite write transaction pays its BEGIN IMMEDIATE and its COMMIT (the
WAL frames, the shm locks): about 75-90 µs of SQLite's own work, more than
the rows themselves (`benchmarks/PROFILE_STORE.md`, s18a). When a start
batch and a commit group are both waiting for the store's one thread (W3's
lone caller: an execution's end and the next start are handed over
together nearly every time, s19a), `start_and_commit` writes both in one
BEGIN IMMEDIATE … COMMIT, each part inside a SAVEPOINT of its own: a part
its fast path does not decide alone — a lost lease, a collision, a name
already taken, data the database refuses, a qualifier — is rolled back to
its savepoint, the other part still commits, and the part left undecided is
answered by its usual call afterwards (`Store.start_executions`,
`Store.commit_reading`), exactly as when it comes alone. Every check stays
inside the transaction; a part is answered only once COMMIT has returned.
A failure of the transaction itself (BEGIN, COMMIT, an error that ends the
transaction) is both parts' failure, raised as the store raises it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from engine.store.boundary import mapped_errors
from engine.store.records import Checkpoint, CommitResult, ExecutionRecord
from engine.store.sqlitecommit import HeldSqlite, commit_within, raw_commits, records_of
from engine.store.starts import StartRequest, StartResult

if TYPE_CHECKING:
    from engine.store.startplan import Planned
    from engine.store.store import Store

__all__ = ["joint_held", "start_and_commit"]


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
    requests: Sequence[StartRequest],
    checkpoints: Sequence[Checkpoint],
    read_back: Collection[str],
    *,
    worker_id: str,
    now: datetime,
) -> tuple[list[StartResult] | None, tuple[list[CommitResult], dict[str, ExecutionRecord]] | None]:
    """Both parts in one write transaction: each answer, or None where its usual call decides.

    The start part's answer is `Store.start_executions`'s; the commit
    part's is (one OK per checkpoint, the records of `read_back`'s ending
    executions read inside the transaction). Raises StoreUnavailable (or
    what the store's boundary makes of the failure) when the transaction
    itself fails: nothing of either part is written.
    """
    held = joint_held(store)
    if held is None or not requests or not checkpoints or not raw_commits(checkpoints):
        return None, None
    results = [StartResult() for _ in requests]
    codec = store._codec
    blocks = store._backend.block_writes
    created: list[Planned] | None = None
    written: tuple[bool, dict[str, Any]] | None = None
    with mapped_errors(store._display), held.connection() as driver:
        try:
            driver.execute("BEGIN IMMEDIATE")
            try:
                ok, written = _part(
                    driver,
                    "joint_commit",
                    lambda: commit_within(
                        driver, held, checkpoints, read_back, worker_id, now, codec, blocks=blocks
                    ),
                )
                if ok:
                    ok, created = _part(
                        driver,
                        "joint_start",
                        lambda: store.start_within(driver, held, requests, results),
                    )
                if not ok:
                    # The transaction ended with a part's error: nothing is
                    # written, each part goes its usual way.
                    created = written = None
                if driver.in_transaction:
                    driver.execute("COMMIT")
            except BaseException:
                if driver.in_transaction:
                    driver.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise sa_exc.DBAPIError.instance(
                "joint start and commit", None, error, sqlite3.Error
            ) from error
    start_answer = None if created is None else store.answered(created, results)
    if written is None:
        return start_answer, None
    wake, rows = written
    if wake:
        store._waker.wake_local()
    return start_answer, ([CommitResult.OK] * len(checkpoints), records_of(held, rows, codec))


def _part(driver: sqlite3.Connection, name: str, write: Any) -> tuple[bool, Any]:
    """Run `write` inside SAVEPOINT `name`: (True, its answer, None when it wrote nothing).

    Any error of the part (its refusal, the database's, ours) rolls back to
    the savepoint and answers None: the part's usual call meets it again
    and answers it as it does alone. (False, None) when the error ended the
    whole transaction (SQLite rolls back on some I/O and memory errors).
    """
    driver.execute(f"SAVEPOINT {name}")
    try:
        answer = write()
    except Exception:
        if not driver.in_transaction:
            return False, None
        answer = None
    if answer is None:
        driver.execute(f"ROLLBACK TO {name}")
    driver.execute(f"RELEASE {name}")
    return True, answer
