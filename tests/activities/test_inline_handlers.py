"""Sync handlers registered `inline=True` run on the event loop, and keep a Task's promises.

The opt-in skips the handler thread's hop: the handler runs on the loop's
own thread (no `stepwise handler` thread), in a copy of the caller's
contextvars, and never when its caller is already cancelled. No timer can
interrupt it there, so TimeoutSeconds and HeartbeatSeconds are checked
when it returns: an attempt that ran past either fails with States.Timeout
(Retry and Catch see it as they would a thread's), a beating handler
succeeds. Asking it of an async handler is refused at registration.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest

from activities.registry import ActivityContext, Registry, activity, call_handler
from engine import Engine
from engine.clock import SystemClock

CALLER_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("caller_var", default="unset")


def _one_task(**fields: Any) -> dict[str, Any]:
    return {
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": "work", "End": True, **fields}},
    }


class SkippingClock(SystemClock):
    """Wall time plus whatever a handler skipped ahead (a deterministic overrun)."""

    def __init__(self) -> None:
        self.skipped = timedelta()

    def now(self) -> datetime:
        return super().now() + self.skipped


def test_an_inline_handler_runs_on_the_loop_thread_with_its_context(db_url: str) -> None:
    seen: dict[str, Any] = {}

    def work(value: Any, context: ActivityContext) -> dict[str, Any]:
        seen["thread"] = threading.current_thread()
        return {"v": value["v"] + 1, "attempt": context.attempt, "key": context.idempotency_key}

    registry = Registry()
    registry.register("work", work, inline=True)

    async def main() -> None:
        seen["loop"] = threading.current_thread()
        async with Engine(db_url, registry=registry) as engine:
            await engine.create_state_machine("one", _one_task())
            done = await engine.wait(await engine.start("one", {"v": 1}))
            assert done.status == "SUCCEEDED", done.cause
            output = json.loads(done.output or "null")
            assert output["v"] == 2 and output["attempt"] == 0 and output["key"]
            events = [event.type for event in await engine.history(done.execution_id)]
            assert events.count("TaskScheduled") == 1 and events.count("TaskSucceeded") == 1

    anyio.run(main)
    assert seen["thread"] is seen["loop"]


def test_an_inline_handler_runs_in_a_copy_of_the_callers_contextvars() -> None:
    registry = Registry()

    def work(value: Any) -> str:
        seen = CALLER_VAR.get()
        CALLER_VAR.set("set by the handler")
        return seen

    registry.register("work", work, inline=True)
    registration = registry.resolve("work")
    assert registration is not None and registration.inline

    async def main() -> tuple[str, str]:
        CALLER_VAR.set("from the caller")
        seen = await call_handler(registration, {}, None)
        return seen, CALLER_VAR.get()

    assert anyio.run(main) == ("from the caller", "from the caller")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_inline_handler_is_not_called_by_a_cancelled_caller(backend: str) -> None:
    ran: list[str] = []
    registry = Registry()
    registry.register("work", lambda value: ran.append("ran"), inline=True)
    registration = registry.resolve("work")
    assert registration is not None

    async def main() -> None:
        with anyio.CancelScope() as scope:
            with anyio.CancelScope():  # the cancel is found on a scope further out
                scope.cancel()
                await call_handler(registration, {}, None)
        assert scope.cancelled_caught

    anyio.run(main, backend=backend)
    assert ran == []


def test_an_inline_handler_that_ran_past_timeout_seconds_times_out(db_url: str) -> None:
    clock = SkippingClock()

    def work(value: Any) -> str:
        clock.skipped += timedelta(seconds=5)  # the handler "took" 5 s of a 2 s budget
        return "too late"

    registry = Registry()
    registry.register("work", work, inline=True)
    machine = _one_task(
        TimeoutSeconds=2,
        Catch=[{"ErrorEquals": ["States.Timeout"], "Next": "Caught"}],
    )
    machine["States"]["Caught"] = {"Type": "Pass", "End": True}

    async def main() -> None:
        async with Engine(db_url, registry=registry, clock=clock) as engine:
            await engine.create_state_machine("slow", machine)
            done = await engine.wait(await engine.start("slow", {}))
            assert done.status == "SUCCEEDED", done.cause
            assert json.loads(done.output or "null") == {
                "Error": "States.Timeout",
                "Cause": "",
            }
            events = [event.type for event in await engine.history(done.execution_id)]
            assert "TaskTimedOut" in events and "TaskSucceeded" not in events

    anyio.run(main)


def test_an_inline_handler_within_its_timeout_succeeds(sqlite_url: str) -> None:
    registry = Registry()
    registry.register("work", lambda value: "in time", inline=True)

    async def main() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            await engine.create_state_machine("quick", _one_task(TimeoutSeconds=60))
            done = await engine.wait(await engine.start("quick", {}))
            assert done.status == "SUCCEEDED" and done.output == '"in time"', done.cause

    anyio.run(main)


def test_an_inline_handler_that_missed_its_heartbeat_times_out(sqlite_url: str) -> None:
    def silent(value: Any) -> str:
        time.sleep(1.2)  # HeartbeatSeconds 1 and no beat
        return "unheard"

    def beating(value: Any, context: ActivityContext) -> str:
        for _ in range(6):
            time.sleep(0.2)
            context.heartbeat()
        return "heard"

    registry = Registry()
    registry.register("silent", silent, inline=True)
    registry.register("beating", beating, inline=True)

    def machine(resource: str) -> dict[str, Any]:
        task = {"Type": "Task", "Resource": resource, "HeartbeatSeconds": 1, "End": True}
        return {"StartAt": "Work", "States": {"Work": task}}

    async def main() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            await engine.create_state_machine("silent", machine("silent"))
            await engine.create_state_machine("beating", machine("beating"))
            missed = await engine.wait(await engine.start("silent", {}))
            assert missed.status == "FAILED" and missed.error == "States.Timeout"
            heard = await engine.wait(await engine.start("beating", {}))
            assert heard.status == "SUCCEEDED" and heard.output == '"heard"', heard.cause

    anyio.run(main)


def test_an_inline_handlers_exception_fails_its_task_as_a_threads_would(sqlite_url: str) -> None:
    def work(value: Any) -> None:
        raise KeyError("missing")

    registry = Registry()
    registry.register("work", work, inline=True)

    async def main() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            await engine.create_state_machine("fails", _one_task())
            done = await engine.wait(await engine.start("fails", {}))
            assert done.status == "FAILED" and done.error == "KeyError", done.cause

    anyio.run(main)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_inline_handlers_stop_iteration_fails_its_task_as_a_threads_would(
    sqlite_url: str, backend: str
) -> None:
    # On the loop, a bare StopIteration would become PEP 479's RuntimeError
    # inside the coroutine; it fails the Task with its own name and message.
    def work(value: Any) -> None:
        raise StopIteration("out of items")

    registry = Registry()
    registry.register("work", work, inline=True)

    async def main() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            await engine.create_state_machine("drains", _one_task())
            with anyio.fail_after(60):
                done = await engine.wait(await engine.start("drains", {}))
            assert (done.status, done.error, done.cause) == (
                "FAILED",
                "StopIteration",
                "out of items",
            )

    anyio.run(main, backend=backend)


def test_inline_is_refused_for_an_async_handler() -> None:
    async def work(value: Any) -> Any:
        return value

    registry = Registry()
    with pytest.raises(ValueError, match="inline=True is for sync handlers"):
        registry.register("work", work, inline=True)
    with pytest.raises(ValueError, match="inline=True is for sync handlers"):
        activity("work", registry=registry, inline=True)(work)
    assert registry.resolve("work") is None


def test_the_activity_decorator_registers_inline() -> None:
    registry = Registry()

    @activity("work", registry=registry, inline=True)
    def work(value: Any) -> Any:
        return value

    registration = registry.resolve("work")
    assert registration is not None and registration.inline
    assert not registry.resolve("work").is_async  # type: ignore[union-attr]
