"""Callback task tokens and activity tasks: the store's side of answers from other processes.

A `.waitForTaskToken` or activity Task suspends its execution on a token
(registered by the walk's checkpoint). `complete_token` closes it, records
its answer under the token's journal key and makes the execution due, in one
transaction; `heartbeat_token` refreshes it. Activity tasks are queued once
per token and handed to exactly one polling worker (`claim_activity_task`,
SKIP LOCKED on PostgreSQL), which also journals that the task was picked up.
The journal values themselves are the caller's: the store writes the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from engine.store.base import StoreBase
from engine.store.checkpoints import CLOSED_TOKEN, journal_row, open_token, signal
from engine.store.codec import escape_clear
from engine.store.errors import InvalidToken, TaskTimedOut
from engine.store.records import ActivityTaskRecord, TokenRecord, TokenStatus
from engine.store.rows import token_record
from engine.store.schema import activity_tasks, journal, task_tokens, work_queue

__all__ = ["TokenStore"]


class TokenStore(StoreBase):
    """The store's calls for task tokens and activity tasks (a part of `Store`)."""

    def complete_token(
        self, token: str, *, journal_key: str, value: str, status: str, now: datetime
    ) -> None:
        """Close an OPEN task token with `status`, journal its answer and wake its execution.

        One transaction: the token goes OPEN → status, `value` is recorded
        under (execution, `journal_key`) and the work becomes due now. Raises
        InvalidToken for an unknown token, TaskTimedOut when it is already
        closed or its execution ended, TaskDoesNotExist when the execution is
        gone, ValueError for a status that is not a closing one.
        """
        closing = TokenStatus(status)
        if closing == TokenStatus.OPEN:
            raise ValueError("a token is completed with SUCCEEDED, FAILED or TIMED_OUT")
        try:
            with self._write() as conn:
                execution_id = open_token(conn, token, lock=False).execution_id
                # Work row first, then the token: the order commit takes them in.
                conn.execute(
                    sa.select(work_queue.c.execution_id)
                    .where(work_queue.c.execution_id == execution_id)
                    .with_for_update()
                ).first()
                open_token(conn, token, lock=True)
                conn.execute(
                    sa.update(task_tokens)
                    .where(task_tokens.c.token == token)
                    .values(status=closing.value, heartbeat_at=now)
                )
                conn.execute(
                    sa.insert(journal).values(
                        journal_row(execution_id, journal_key, value, now, self._codec)
                    )
                )
                signal(conn, execution_id, now)
                self._backend.notify_in(conn)
        except sa_exc.IntegrityError:
            # The walk already recorded an outcome for this step (a timeout).
            raise TaskTimedOut(CLOSED_TOKEN) from None
        self._waker.wake_local()

    def heartbeat_token(self, token: str, *, now: datetime) -> None:
        """Record a heartbeat for an OPEN token.

        Raises InvalidToken, TaskTimedOut or TaskDoesNotExist as complete_token does.
        """
        with self._write() as conn:
            open_token(conn, token, lock=True)
            conn.execute(
                sa.update(task_tokens).where(task_tokens.c.token == token).values(heartbeat_at=now)
            )

    def get_token(self, token: str) -> TokenRecord:
        """Return a task token's record. Raises InvalidToken when it was never issued."""
        with self._read() as conn:
            row = conn.execute(sa.select(task_tokens).where(task_tokens.c.token == token)).first()
        if row is None:
            raise InvalidToken("Invalid Token: 'Invalid token'")
        return token_record(row)

    # -- activity tasks ---------------------------------------------------

    def queue_activity_task(self, task: ActivityTaskRecord, *, now: datetime) -> None:
        """Queue `task` for the workers polling its activity, once: a repeat does nothing."""
        with self._write() as conn:
            conn.execute(
                self._backend.insert_ignoring_duplicates(
                    activity_tasks,
                    {
                        "token": task.token,
                        "activity": task.activity,
                        "execution_id": task.execution_id,
                        "key": task.key,
                        "input": self._codec.seal(task.input),
                        "created_at": now,
                        "worker_name": None,
                        "started_at": None,
                    },
                    key=["token"],
                )
            )

    def claim_activity_task(
        self,
        activity: str,
        worker_name: str,
        *,
        journal_key: Callable[[str], str],
        journal_value: str,
        now: datetime,
    ) -> ActivityTaskRecord | None:
        """Hand the oldest unstarted task of `activity` whose token is open to `worker_name`.

        In the same transaction the task is marked started, `journal_value`
        is recorded under ``journal_key(task.key)`` (the walk turns it into
        ActivityStarted), the token's heartbeat is reset and the execution is
        woken. Returns None when no such task is queued. Each task is handed
        out once (row lock; SKIP LOCKED on PostgreSQL).
        """
        open_tokens = sa.select(task_tokens.c.token).where(task_tokens.c.status == TokenStatus.OPEN)
        query = (
            sa.select(activity_tasks)
            .where(
                activity_tasks.c.activity == activity,
                activity_tasks.c.started_at.is_(None),
                activity_tasks.c.token.in_(open_tokens),
            )
            .order_by(activity_tasks.c.created_at, activity_tasks.c.token)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            conn.execute(
                sa.update(activity_tasks)
                .where(activity_tasks.c.token == row.token)
                .values(worker_name=escape_clear(worker_name), started_at=now)
            )
            conn.execute(
                sa.insert(journal).values(
                    journal_row(
                        row.execution_id, journal_key(row.key), journal_value, now, self._codec
                    )
                )
            )
            conn.execute(
                sa.update(task_tokens)
                .where(task_tokens.c.token == row.token)
                .values(heartbeat_at=now)
            )
            signal(conn, row.execution_id, now)
            self._backend.notify_in(conn)
        self._waker.wake_local()
        return ActivityTaskRecord(
            token=row.token,
            activity=row.activity,
            execution_id=row.execution_id,
            key=row.key,
            input=self._codec.open(row.input),
        )
