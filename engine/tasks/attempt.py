"""One Task attempt, recorded once: scheduling committed before the work, the outcome after.

`invoke` is the one place where work leaves the process. It journals the
attempt's scheduling events and commits them before anything runs, then
journals the outcome; a recorded outcome is never produced again, and an
attempt scheduled but without an outcome (the process died mid-call) runs
again with the same idempotency key. What runs: a mocked state's canned
response (mock mode), an activity worker's answer, a callback's answer, or
the work itself in this process (`engine.tasks.dispatch`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine import keys
from engine.journal import MISSING, row_time
from engine.tasks.call import Call
from engine.tasks.dispatch import run_in_process
from engine.tasks.outcome import (
    Failed,
    Outcome,
    Succeeded,
    TaskFailure,
    from_record,
    to_record,
)
from engine.tasks.waiting import wait_for_activity, wait_for_callback
from engine.walk import Frame
from statemachine.model import TaskState

__all__ = ["invoke"]


async def invoke(
    frame: Frame,
    state: TaskState,
    effective: Any,
    attempt: int,
    *,
    timeout: float,
    heartbeat: float,
) -> Any:
    """The attempt's result (recorded or live); raises TaskFailure on failure.

    May raise Suspend while a callback or activity task waits for its answer.
    """
    call = Call(frame, state, effective, attempt, timeout=timeout, heartbeat=heartbeat)
    # `Journal.record_once_async` spelled out, as every attempt runs it: no
    # closure and no two coroutine frames between the walk and the work.
    journal = frame.walk.journal
    key = keys.task_result(call.key)
    name = state.name
    record = journal.replay(key, frame.thread, state=name)
    if record is MISSING:
        outcome = await _run(call)
        if isinstance(outcome, Succeeded):
            value = outcome.value
            # The result's text, kept for the state's exit (`exit_state`).
            text = frame.walk.payload(value)
            frame.result_text = (value, text)
            journal.record(
                key,
                {"ok": value},
                thread=frame.thread,
                events=call.events.succeeded(text),
                state=name,
            )
            return value
        record = journal.record(
            key,
            to_record(outcome),
            thread=frame.thread,
            events=call.events.outcome(outcome, frame.walk.payload),
            state=name,
        )
    if "ok" in record:  # a success, read as `from_record` reads it, without the object
        return record["ok"]
    failed = from_record(record)
    if isinstance(failed, Succeeded):
        return failed.value
    raise TaskFailure(failed.error, failed.cause, heartbeat=bool(failed.heartbeat))


async def _run(call: Call) -> Outcome:
    walk, frame = call.walk, call.frame
    key = keys.task_started(call.key)
    started = frame.replay(key, frame.thread)
    if started is MISSING:
        # One clock read for the record and its events. The input's text is the
        # entered event's when the first attempt passes its input on unchanged
        # (a later attempt's handler may have changed the object in place).
        now = walk.clock.now()
        text = frame.input_text
        if text is None or call.attempt or call.effective is not frame.input:
            text = walk.payload(call.effective)
        walk.journal.record(
            key,
            row_time(now),  # `isoformat`'s text
            thread=frame.thread,
            events=call.events.scheduled(text, call.timeout, call.heartbeat),
            timestamp=now,
            state=frame.state.name,
        )
        call.started_at = now
    else:
        call.started_at = datetime.fromisoformat(str(started))
    # The record of the start commits before the effect leaves the process.
    await walk.durable()
    mocked = _mocked(call)
    if mocked is not None:
        return mocked
    if call.events.family == "activity":
        return await wait_for_activity(call)
    if call.callback:
        return await wait_for_callback(call)
    if call.unlimited:  # no timer and no heartbeat to watch: the work is awaited here
        return await run_in_process(call, call.context)
    return await call.limited(lambda context: run_in_process(call, context))


def _mocked(call: Call) -> Outcome | None:
    """The state's next canned response in mock mode (each use journaled, so replays agree)."""
    registry = call.walk.registry
    if registry.mocks is None or registry.mock_test_case is None:
        return None
    journal = call.walk.journal
    index = 0
    while keys.mock_use(call.state.name, index) in journal:
        index += 1
    answer = registry.mocks.response(
        call.walk.machine_name, registry.mock_test_case, call.state.name, index
    )
    if answer is None:
        return None
    call.frame.record(keys.mock_use(call.state.name, index), call.key)
    if answer.failed:
        return Failed(answer.error, answer.cause)
    return Succeeded(answer.value)
