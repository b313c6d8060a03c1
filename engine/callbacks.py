"""Callbacks from outside a walk: task tokens, activity workers, and SQL effects.

A `.waitForTaskToken` Task or an activity Task (``arn:aws:states:…:activity:NAME``)
waits durably: its token is in the store's task_tokens table and the
execution is suspended. `send_task_success` / `send_task_failure` /
`send_task_heartbeat` (and the `TaskCallbacks` methods on an Engine) close
or refresh the token from any process: the answer is journaled under the
token's key in the same transaction that makes the execution due, and the
walk records the outcome when it replays. Activity workers long-poll
`get_activity_task`, which hands out each queued activity task once.

`run_sql_effect` runs a SQL activity's statements in one transaction with a
record of their result (the `sql_effects` row, keyed by the step), under the
execution's lease: a crash can never leave the effect without that record
or the record without the effect, and a replay reads the record instead of
running the statements again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from engine import keys
from engine.journal import encode_row
from engine.store import InvalidToken, LeaseLost, Store, TokenStatus
from engine.store.checkpoints import signal
from engine.store.schema import activity_tasks, journal, sql_effects, task_tokens, work_queue

__all__ = [
    "MAX_OUTPUT_BYTES",
    "ActivityTask",
    "InvalidOutput",
    "TaskCallbacks",
    "activity_arn",
    "answer_value",
    "ensure_activity_task",
    "get_activity_task",
    "get_activity_task_sync",
    "run_sql_effect",
    "send_task_failure",
    "send_task_heartbeat",
    "send_task_success",
]

MAX_OUTPUT_BYTES = 262_144


class InvalidOutput(InvalidToken):
    """SendTaskSuccess's output is not JSON (AWS: InvalidOutput)."""


class ActivityTask(msgspec.Struct, frozen=True):
    """What GetActivityTask hands a worker: the token to answer with and the input (JSON text)."""

    taskToken: str
    input: str


def activity_arn(name: str) -> str:
    """The ARN of an activity given its name or ARN."""
    if name.startswith("arn:"):
        return name
    return f"arn:aws:states:local:000000000000:activity:{name}"


def _activity_name(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def answer_value(answer: dict[str, Any]) -> str:
    """An answer as the journal row text the walk replays (no events of its own)."""
    return encode_row(answer)


def _now() -> datetime:
    return datetime.now(UTC)


# -- the calls other processes make -------------------------------------------


def send_task_success(
    store: Store, token: str, output: str, *, now: datetime | None = None
) -> None:
    """Complete the token's task with `output` (JSON text).

    Raises InvalidOutput when `output` is not JSON or is over 256 KiB,
    InvalidToken for an unknown token, TaskTimedOut when it is already
    closed (answered, timed out, or its execution ended), TaskDoesNotExist
    when its execution is gone.
    """
    if len(output.encode()) > MAX_OUTPUT_BYTES:
        raise InvalidOutput("Invalid Output: 'the output is larger than 262144 bytes'")
    try:
        value = json.loads(output)
    except ValueError:
        raise InvalidOutput(f"Invalid Output: 'not valid JSON: {output[:80]}'") from None
    record = store.get_token(token)
    store.complete_token(
        token,
        journal_key=record.key,
        value=answer_value({"ok": value}),
        status=TokenStatus.SUCCEEDED,
        now=now or _now(),
    )


def send_task_failure(
    store: Store,
    token: str,
    *,
    error: str | None = None,
    cause: str | None = None,
    now: datetime | None = None,
) -> None:
    """Fail the token's task with `error` / `cause`. Raises as `send_task_success` does."""
    record = store.get_token(token)
    store.complete_token(
        token,
        journal_key=record.key,
        value=answer_value({"error": error, "cause": cause}),
        status=TokenStatus.FAILED,
        now=now or _now(),
    )


def send_task_heartbeat(store: Store, token: str, *, now: datetime | None = None) -> None:
    """Record that the token's worker is alive (resets HeartbeatSeconds). Raises as above."""
    store.heartbeat_token(token, now=now or _now())


def ensure_activity_task(
    store: Store, *, token: str, activity: str, execution_id: str, key: str, input: str
) -> None:
    """Queue a task of `activity` (name or ARN) for workers, once (a repeat does nothing)."""
    with store._write() as conn:
        exists = conn.execute(
            sa.select(activity_tasks.c.token).where(activity_tasks.c.token == token)
        ).first()
        if exists is None:
            conn.execute(
                sa.insert(activity_tasks).values(
                    token=token,
                    activity=_activity_name(activity),
                    execution_id=execution_id,
                    key=key,
                    input=input,
                    created_at=_now(),
                    worker_name=None,
                    started_at=None,
                )
            )


def _claim_activity_task(store: Store, activity: str, worker_name: str) -> ActivityTask | None:
    now = _now()
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
    with store._write() as conn:
        row = conn.execute(query).first()
        if row is None:
            return None
        conn.execute(
            sa.update(activity_tasks)
            .where(activity_tasks.c.token == row.token)
            .values(worker_name=worker_name, started_at=now)
        )
        # The walk turns this record into ActivityStarted when it wakes.
        conn.execute(
            sa.insert(journal).values(
                execution_id=row.execution_id,
                key=keys.activity_polled(row.key),
                value=answer_value({"worker": worker_name, "t": now.isoformat()}),
                recorded_at=now,
            )
        )
        conn.execute(
            sa.update(task_tokens).where(task_tokens.c.token == row.token).values(heartbeat_at=now)
        )
        signal(conn, row.execution_id, now)
    store.notify()
    return ActivityTask(taskToken=row.token, input=row.input)


def get_activity_task_sync(
    store: Store,
    activity: str,
    *,
    worker_name: str = "worker",
    timeout: float = 60.0,
    poll_interval: float = 0.2,
) -> ActivityTask | None:
    """Long-poll for a queued task of `activity` (name or ARN); None when none came in `timeout`.

    Each task is handed to exactly one poller (row lock, SKIP LOCKED on PostgreSQL).
    """
    # Matched by name: the local engine has one region and account.
    name = _activity_name(activity)
    deadline = time.monotonic() + timeout
    while True:
        task = _claim_activity_task(store, name, worker_name)
        if task is not None or time.monotonic() >= deadline:
            return task
        time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))


async def get_activity_task(
    store: Store, activity: str, *, worker_name: str = "worker", timeout: float = 60.0
) -> ActivityTask | None:
    """Async `get_activity_task_sync` (polls in a worker thread)."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(
        lambda: get_activity_task_sync(store, activity, worker_name=worker_name, timeout=timeout),
        abandon_on_cancel=True,
    )


# -- SQL effects ----------------------------------------------------------------


class Statement(Protocol):
    sql: str
    parameters: dict[str, Any]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def run_sql_effect(
    store: Store,
    *,
    execution_id: str,
    key: str,
    worker_id: str,
    statements: Sequence[Statement],
    now: datetime,
) -> dict[str, Any]:
    """Run `statements` once for step `key`, recording their result in the same transaction.

    Returns the outcome ``{"ok": {"Results": [...]}}`` or, when the database
    rejects a statement, ``{"error": "Stepwise.SqlError", "cause": …}`` with
    nothing of the statements kept. A step already run returns its recorded
    result without running anything. Raises LeaseLost when `worker_id` no
    longer holds the execution's lease.
    """
    with store._write() as conn:
        work = conn.execute(
            sa.select(work_queue.c.lease_owner, work_queue.c.lease_expires_at)
            .where(work_queue.c.execution_id == execution_id)
            .with_for_update()
        ).first()
        if (
            work is None
            or work.lease_owner != worker_id
            or work.lease_expires_at is None
            or work.lease_expires_at <= now
        ):
            raise LeaseLost(f"execution {execution_id}: lease lost before a SQL activity")
        done = conn.execute(
            sa.select(sql_effects.c.result).where(
                sql_effects.c.execution_id == execution_id, sql_effects.c.key == key
            )
        ).first()
        if done is not None:
            return {"ok": json.loads(done.result)}
        results: list[dict[str, Any]] = []
        savepoint = conn.begin_nested()
        try:
            for statement in statements:
                cursor = conn.execute(sa.text(statement.sql), statement.parameters)
                if cursor.returns_rows:
                    columns = list(cursor.keys())
                    rows = [
                        {c: _jsonable(v) for c, v in zip(columns, row, strict=True)}
                        for row in cursor
                    ]
                    results.append({"Rows": rows, "RowCount": len(rows)})
                else:
                    results.append({"Rows": [], "RowCount": max(cursor.rowcount, 0)})
        except sa_exc.DBAPIError as failure:
            savepoint.rollback()
            message = str(failure.orig).strip().splitlines()[0] if failure.orig else str(failure)
            return {"error": "Stepwise.SqlError", "cause": message}
        except sa_exc.StatementError as failure:
            savepoint.rollback()
            return {"error": "Stepwise.SqlError", "cause": str(failure).splitlines()[0]}
        savepoint.commit()
        result = {"Results": results}
        conn.execute(
            sa.insert(sql_effects).values(
                execution_id=execution_id,
                key=key,
                result=json.dumps(result),
                recorded_at=now,
            )
        )
    return {"ok": result}


# -- the API an Engine exposes ------------------------------------------------------


class TaskCallbacks:
    """Mixin for `Engine`: the SendTask* and GetActivityTask calls (needs `.store`).

    ``engine.send_task_success(token, output)`` etc.; `output` is any JSON value.
    """

    @property
    def store(self) -> Store:
        raise NotImplementedError  # the Engine's own store

    def send_task_success(self, token: str, output: Any) -> None:
        """Complete a waiting task with `output` (any JSON value). Raises as send_task_success."""
        send_task_success(self.store, token, json.dumps(output))

    def send_task_failure(
        self, token: str, error: str | None = None, cause: str | None = None
    ) -> None:
        """Fail a waiting task. Raises InvalidToken / TaskTimedOut."""
        send_task_failure(self.store, token, error=error, cause=cause)

    def send_task_heartbeat(self, token: str) -> None:
        """Heartbeat a waiting task. Raises InvalidToken / TaskTimedOut."""
        send_task_heartbeat(self.store, token)

    def get_activity_task(
        self, activity: str, worker_name: str = "worker", timeout: float = 60.0
    ) -> ActivityTask | None:
        """Long-poll one task of `activity` (blocking; call from a thread in async code)."""
        return get_activity_task_sync(
            self.store, activity, worker_name=worker_name, timeout=timeout
        )
