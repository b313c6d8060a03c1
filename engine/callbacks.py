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

This module checks arguments and shapes answers; every row it reads or
writes goes through a public `Store` method (`engine/store/tokens.py`,
`engine/store/effects.py`). The time it records comes from the caller (an
Engine passes its clock); external callers that give none get the wall clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from engine import keys
from engine.clock import Clock
from engine.journal import encode_row
from engine.store import ActivityTaskRecord, Store, TokenStatus
from engine.store.effects import Statement
from engine.store.errors import InvalidOutput
from statemachine.jsontext import JsonTextError, loads_checked
from statemachine.quotas import MAX_PAYLOAD_BYTES

__all__ = [
    "MAX_OUTPUT_BYTES",
    "ActivityTask",
    "InvalidOutput",
    "Statement",
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

MAX_OUTPUT_BYTES = MAX_PAYLOAD_BYTES


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


def _now(clock: Clock | None = None) -> datetime:
    """The time to record: the caller's clock, else the wall clock.

    A clock driven by an event loop (`LoopClock`) cannot be read from a
    thread outside that loop; there the wall clock is the only time there is.
    """
    if clock is not None:
        try:
            return clock.now()
        except RuntimeError:
            pass
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
    try:
        size = len(output.encode())
    except UnicodeEncodeError:
        raise InvalidOutput("Invalid Output: 'not valid JSON: a lone surrogate'") from None
    if size > MAX_OUTPUT_BYTES:
        raise InvalidOutput("Invalid Output: 'the output is larger than 262144 bytes'")
    try:
        value = loads_checked(output)
    except JsonTextError as error:
        why = "" if error.syntax else f" ({error})"
        raise InvalidOutput(f"Invalid Output: 'not valid JSON{why}: {output[:80]}'") from None
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
    store: Store,
    *,
    token: str,
    activity: str,
    execution_id: str,
    key: str,
    input: str,
    now: datetime | None = None,
) -> None:
    """Queue a task of `activity` (name or ARN) for workers, once (a repeat does nothing)."""
    store.queue_activity_task(
        ActivityTaskRecord(
            token=token,
            activity=_activity_name(activity),
            execution_id=execution_id,
            key=key,
            input=input,
        ),
        now=now or _now(),
    )


def _claim_activity_task(
    store: Store, activity: str, worker_name: str, now: datetime
) -> ActivityTask | None:
    claimed = store.claim_activity_task(
        activity,
        worker_name,
        # The walk turns this record into ActivityStarted when it wakes.
        journal_key=keys.activity_polled,
        journal_value=answer_value({"worker": worker_name, "t": now.isoformat()}),
        now=now,
    )
    if claimed is None:
        return None
    return ActivityTask(taskToken=claimed.token, input=claimed.input)


def get_activity_task_sync(
    store: Store,
    activity: str,
    *,
    worker_name: str = "worker",
    timeout: float = 60.0,
    poll_interval: float = 0.2,
    clock: Clock | None = None,
) -> ActivityTask | None:
    """Long-poll for a queued task of `activity` (name or ARN); None when none came in `timeout`.

    Each task is handed to exactly one poller (row lock, SKIP LOCKED on
    PostgreSQL). The pick-up is recorded at `clock`'s time (wall clock when None).
    """
    # Matched by name: the local engine has one region and account.
    name = _activity_name(activity)
    deadline = time.monotonic() + timeout
    while True:
        task = _claim_activity_task(store, name, worker_name, _now(clock))
        if task is not None or time.monotonic() >= deadline:
            return task
        time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))


async def get_activity_task(
    store: Store,
    activity: str,
    *,
    worker_name: str = "worker",
    timeout: float = 60.0,
    clock: Clock | None = None,
) -> ActivityTask | None:
    """Async `get_activity_task_sync` (polls in a worker thread)."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(
        lambda: get_activity_task_sync(
            store, activity, worker_name=worker_name, timeout=timeout, clock=clock
        ),
        abandon_on_cancel=True,
    )


# -- SQL effects ----------------------------------------------------------------


def run_sql_effect(
    store: Store,
    *,
    execution_id: str,
    key: str,
    worker_id: str,
    statements: Sequence[Statement],
    now: datetime,
    role: str | None = None,
) -> dict[str, Any]:
    """Run `statements` once for step `key`, recording their result in the same transaction.

    `role`: on PostgreSQL, the role the statements run as (``SET LOCAL ROLE``).

    Returns the outcome ``{"ok": {"Results": [...]}}`` or, when the database
    rejects a statement, ``{"error": "Stepwise.SqlError", "cause": …}`` with
    nothing of the statements kept. A step already run returns its recorded
    result without running anything. Raises LeaseLost when `worker_id` no
    longer holds the execution's lease.
    """
    return store.run_sql_effect(
        execution_id=execution_id,
        key=key,
        worker_id=worker_id,
        statements=statements,
        now=now,
        role=role,
    )


# -- the API an Engine exposes ------------------------------------------------------


class TaskCallbacks:
    """Mixin for `Engine`: the SendTask* and GetActivityTask calls (needs `.store`, `.clock`).

    ``engine.send_task_success(token, output)`` etc.; `output` is any JSON value.
    Times are recorded by the Engine's clock, the one its walks read
    heartbeats and timeouts by.
    """

    clock: Clock

    @property
    def store(self) -> Store:
        raise NotImplementedError  # the Engine's own store

    def send_task_success(self, token: str, output: Any) -> None:
        """Complete a waiting task with `output` (any JSON value). Raises as send_task_success."""
        send_task_success(self.store, token, json.dumps(output), now=_now(self.clock))

    def send_task_failure(
        self, token: str, error: str | None = None, cause: str | None = None
    ) -> None:
        """Fail a waiting task. Raises InvalidToken / TaskTimedOut."""
        send_task_failure(self.store, token, error=error, cause=cause, now=_now(self.clock))

    def send_task_heartbeat(self, token: str) -> None:
        """Heartbeat a waiting task. Raises InvalidToken / TaskTimedOut."""
        send_task_heartbeat(self.store, token, now=_now(self.clock))

    def get_activity_task(
        self, activity: str, worker_name: str = "worker", timeout: float = 60.0
    ) -> ActivityTask | None:
        """Long-poll one task of `activity` (blocking; call from a thread in async code)."""
        return get_activity_task_sync(
            self.store, activity, worker_name=worker_name, timeout=timeout, clock=self.clock
        )
