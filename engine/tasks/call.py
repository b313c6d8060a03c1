"""One live attempt of one Task: what it is, its context, and its time limits.

`Call` gathers what every part of an attempt reads (the frame, the Task,
its effective input, the attempt's journal key, TimeoutSeconds and
HeartbeatSeconds, the recorded start). `Call.limited` runs a body under
TimeoutSeconds counted from the recorded start — a rerun after a crash
gets only what is left — and under HeartbeatSeconds, failing the attempt
with States.Timeout flagged as a missed heartbeat when no beat comes.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import anyio

from activities.registry import ActivityContext
from engine import keys
from engine.resources import base_resource, resource_parts
from engine.tasks.events import TaskEvents
from engine.tasks.outcome import Failed, Outcome
from engine.telemetry.ids import task_span_id, traceparent_for
from engine.walk import Frame, Walk
from statemachine.errors import States
from statemachine.model import TaskState
from statemachine.quotas import MAX_SECONDS

__all__ = ["Call"]


@functools.lru_cache(maxsize=1024)
def _resource_facts(resource: str) -> tuple[str, str, TaskEvents]:
    """A Resource's base, its resourceType and its event builder: the same for every attempt.

    The TaskEvents is shared, so it must stay read-only (it copies what it hands out).
    """
    base = base_resource(resource)
    resource_type, _ = resource_parts(base)
    return base, resource_type, TaskEvents(resource)


class Call:
    """One live attempt of one Task."""

    def __init__(
        self,
        frame: Frame,
        state: TaskState,
        effective: Any,
        attempt: int,
        *,
        timeout: float,
        heartbeat: float,
    ) -> None:
        self.frame = frame
        self.walk: Walk = frame.walk
        self.state = state
        self.effective = effective
        self.attempt = attempt
        self.key = keys.attempt(frame.key, attempt)
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.resource = state.resource
        self.base, self.resource_type, self.events = _resource_facts(state.resource)
        self.callback = state.resource.endswith(".waitForTaskToken")
        self.started_at = datetime.min
        # When the handler last beat (`beat`), from when the attempt's work began.
        self.last_beat = time.monotonic()

    @property
    def limit_name(self) -> str:
        """What AWS names in a too-large result's cause: the state, the service, or the
        Lambda function ARN a legacy Resource gives."""
        if self.resource_type == "stepwise":
            return self.state.name
        return self.base if self.base.startswith("arn:aws:lambda:") else self.resource_type

    @property
    def unlimited(self) -> bool:
        """Whether `limited` would only await its body: no heartbeat, no timeout worth a timer."""
        return self.heartbeat == math.inf and self.timeout >= MAX_SECONDS

    @property
    def deadline(self) -> datetime | None:
        """When TimeoutSeconds runs out (None: the Task has no timeout worth waking for)."""
        if self.timeout < MAX_SECONDS:
            return self.started_at + timedelta(seconds=self.timeout)
        return None

    def context(self, beat: Callable[[], None] | None = None) -> ActivityContext:
        """What the handler is given."""
        return ActivityContext(
            execution_id=self.walk.execution_id,
            state_name=self.state.name,
            attempt=self.attempt,
            idempotency_key=keys.idempotency_key(
                self.walk.execution_id, self.frame.key, self.attempt
            ),
            resource=self.resource,
            deadline=self.deadline,
            task_token=self.frame.task_token,
            state_path=self.frame.key,
            traceparent=self._traceparent(),
            _heartbeat=beat,
        )

    def _traceparent(self) -> str | None:
        """W3C trace context naming this attempt's span, so a handler's spans nest under it."""
        trace_id = self.walk.services.trace_id
        last = self.walk.journal.event_id(keys.task_started(self.key))
        if not trace_id or not last:
            return None
        # The :s record holds ...Scheduled (+ ...Started except for activities).
        scheduled = last if self.events.family == "activity" else last - 1
        return traceparent_for(trace_id, task_span_id(trace_id, scheduled))

    def _remaining(self) -> float:
        """Seconds of TimeoutSeconds left, counted from the recorded start."""
        elapsed = (self.walk.clock.now() - self.started_at).total_seconds()
        return max(0.0, self.timeout - elapsed)

    def beat(self) -> None:
        """The handler's heartbeat (monotonic time, not the loop's: sync handlers beat from
        their worker thread)."""
        self.last_beat = time.monotonic()

    def overran(self) -> Failed | None:
        """The timeout of work that ran on the event loop, which no timer could interrupt.

        States.Timeout (flagged as a missed heartbeat) when no beat came within
        HeartbeatSeconds, else when TimeoutSeconds ran out; None when neither.
        """
        if self.heartbeat != math.inf and time.monotonic() - self.last_beat >= self.heartbeat:
            return Failed(States.TIMEOUT, None, heartbeat=True)
        deadline = self.deadline
        if deadline is not None and self.walk.clock.now() >= deadline:
            return Failed(States.TIMEOUT, None, heartbeat=False)
        return None

    async def limited(
        self, body: Callable[[Callable[[], ActivityContext]], Awaitable[Outcome]]
    ) -> Outcome:
        """Run `body` under TimeoutSeconds (from the recorded start) and HeartbeatSeconds.

        `body` is given how to build the handler's context (`context`), so
        work that takes none (most registered handlers) never builds it.
        """
        result: Outcome | None = None
        if self.heartbeat == math.inf:
            # No heartbeat to watch: no task group to open and cancel per attempt,
            # and no timer at all under the default timeout (over three years);
            # a beat is not looked at, so the context carries none.
            if self.deadline is None:
                return await body(self.context)
            with anyio.move_on_after(self._remaining()) as timeout_scope:
                result = await body(self.context)
            if timeout_scope.cancelled_caught or result is None:
                return Failed(States.TIMEOUT, None)
            return result

        def context() -> ActivityContext:
            return self.context(self.beat)

        missed_heartbeat = False
        self.last_beat = time.monotonic()
        with anyio.move_on_after(self._remaining()) as timeout_scope:
            async with anyio.create_task_group() as group:
                heartbeat = self.heartbeat

                async def watch() -> None:
                    nonlocal missed_heartbeat
                    while True:
                        due = self.last_beat + heartbeat
                        now = time.monotonic()
                        if now >= due:
                            missed_heartbeat = True
                            group.cancel_scope.cancel()
                            return
                        await anyio.sleep(due - now)

                group.start_soon(watch)
                result = await body(context)
                group.cancel_scope.cancel()
        if timeout_scope.cancelled_caught or missed_heartbeat or result is None:
            return Failed(States.TIMEOUT, None, heartbeat=missed_heartbeat)
        return result
