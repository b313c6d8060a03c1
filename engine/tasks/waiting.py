"""Tasks that wait for an answer from outside: callback tokens and activity workers.

A ``.waitForTaskToken`` Task registers its token, runs its handler (which
is given the token), records TaskSubmitted, then waits durably; an activity
Task (``arn:aws:states:…:activity:NAME``) draws its own token, queues the
task for pollers, and records ActivityStarted once a poller took it. Both
then wait the same way: the token is in the store and the execution
suspends (`Suspend`) until `engine.callbacks` journals an answer or the
timeout / heartbeat deadline passes, when the token is closed as timed out
(unless an answer got there first).
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

from engine import keys
from engine.callbacks import ensure_activity_task
from engine.journal import MISSING, Events, Suspend
from engine.store import Checkpoint, TokenRecord, TokenStatus
from engine.tasks.call import Call
from engine.tasks.dispatch import run_in_process
from engine.tasks.outcome import Failed, Outcome, Succeeded, encode_result
from statemachine.errors import States

__all__ = ["wait_for_activity", "wait_for_callback"]


class _NotSubmitted(Exception):  # control flow: the handler failed, nothing to record
    def __init__(self, outcome: Outcome) -> None:
        super().__init__()
        self.outcome = outcome


async def wait_for_callback(call: Call) -> Outcome:
    """A `.waitForTaskToken` attempt: register, run the handler, record TaskSubmitted, wait."""
    token = call.frame.task_token
    assert token is not None

    async def submit() -> tuple[None, Events]:
        await _register_token(call, token)
        sent = await call.limited(lambda context: run_in_process(call, context))
        if not isinstance(sent, Succeeded):
            await _close(call, token)
            raise _NotSubmitted(sent)
        return None, call.events.submitted(call.walk.payload(sent.value))

    try:
        await call.frame.record_once_async(
            keys.task_submitted(call.key), submit, thread=call.frame.thread
        )
    except _NotSubmitted as failed:
        return failed.outcome
    return await _wait(call, token)


async def wait_for_activity(call: Call) -> Outcome:
    """An activity attempt: queue it for pollers once, record ActivityStarted when polled, wait."""
    frame = call.frame
    # Drawn here, not with frame.uuid(), so the frame's own random draws keep their keys.
    token = str(frame.record_once(keys.task_token(call.key), lambda: (str(uuid.uuid4()), ())))

    async def register() -> tuple[bool, Events]:
        await _register_token(call, token)
        services = call.walk.services
        await services.run_db(
            ensure_activity_task,
            services.store,
            token=token,
            activity=call.base,
            execution_id=call.walk.execution_id,
            key=call.key,
            input=call.walk.payload(call.effective),
        )
        return True, ()

    await frame.record_once_async(keys.activity_registered(call.key), register)
    polled = frame.replay(keys.activity_polled(call.key))
    if polled is not MISSING:
        worker = polled.get("worker", "")
        frame.record_once(
            keys.activity_started(call.key),
            lambda: (None, [("ActivityStarted", {"workerName": worker})]),
            thread=frame.thread,
        )
    return await _wait(call, token)


def _token_record(
    call: Call,
    token: str,
    *,
    status: str = TokenStatus.OPEN,
    heartbeat_at: datetime | None = None,
    created_at: datetime | None = None,
) -> TokenRecord:
    return TokenRecord(
        token=token,
        execution_id=call.walk.execution_id,
        key=keys.callback_answer(call.key),
        state_name=call.state.name,
        status=status,
        heartbeat_at=heartbeat_at,
        created_at=created_at,
    )


async def _register_token(call: Call, token: str) -> None:
    record = _token_record(
        call, token, heartbeat_at=call.started_at, created_at=call.walk.clock.now()
    )
    await call.walk.services.commit(
        Checkpoint(execution_id=call.walk.execution_id, tokens=[record]),
        f"execution {call.walk.execution_id}: registering a token",
    )


async def _close(call: Call, token: str) -> bool:
    """Close the token as timed out; False when an answer got there first."""
    services = call.walk.services
    record = _token_record(call, token, status=TokenStatus.TIMED_OUT)
    await services.commit(
        Checkpoint(execution_id=call.walk.execution_id, tokens=[record]),
        f"execution {call.walk.execution_id}: closing a token",
    )
    current = await services.run_db(services.store.get_token, token)
    return bool(current.status == TokenStatus.TIMED_OUT)


async def _wait(call: Call, token: str) -> Outcome:
    answer = call.frame.replay(keys.callback_answer(call.key))
    if answer is not MISSING:
        if "ok" in answer:
            return encode_result(answer["ok"], call.limit_name)
        return Failed(answer.get("error") or "", answer.get("cause"))
    now = call.walk.clock.now()
    dues: list[datetime] = []
    deadline = call.deadline
    if deadline is not None:
        if now >= deadline:
            return await _timed_out(call, token, heartbeat=False)
        dues.append(deadline)
    if call.heartbeat < math.inf:
        services = call.walk.services
        record = await services.run_db(services.store.get_token, token)
        last = record.heartbeat_at or call.started_at
        beat_due = last + timedelta(seconds=call.heartbeat)
        if now >= beat_due:
            return await _timed_out(call, token, heartbeat=True)
        dues.append(beat_due)
    raise Suspend(min(dues) if dues else None)


async def _timed_out(call: Call, token: str, *, heartbeat: bool) -> Outcome:
    if not await _close(call, token):
        # An answer was journaled meanwhile: wake again at once and read it.
        raise Suspend(call.walk.clock.now())
    return Failed(States.TIMEOUT, None, heartbeat=heartbeat)
