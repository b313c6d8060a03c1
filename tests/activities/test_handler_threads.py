"""Sync handlers run in long-lived threads, off the loop, in their caller's context.

A sync handler still sees its ActivityContext and the contextvars it was
called under, still runs off the event loop (a handler blocked for as long
as another execution's Wait lasts does not hold that Wait up), and a Task
whose attempt is cancelled (TimeoutSeconds) stops waiting while the thread
finishes on its own. The threads are bounded, reused, and gone when the
run that used them ends. On trio (the MockClock tests) calls fall back to
anyio's own threads with the same promises.
"""

from __future__ import annotations

import contextvars
import json
import threading
from typing import Any

import anyio
import pytest

from activities.handler_threads import HandlerThreads, run_in_thread
from activities.lambda_ import lambda_function
from activities.registry import ActivityContext, Registry
from engine import Engine

LOOKED_UP: contextvars.ContextVar[str] = contextvars.ContextVar("looked_up", default="unset")

ONE_TASK = {
    "StartAt": "Work",
    "States": {"Work": {"Type": "Task", "Resource": "work", "End": True}},
}

PAUSE = {
    "StartAt": "Pause",
    "States": {
        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "woke", "End": True},
    },
}


def _handler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("stepwise handler")]


def test_a_sync_handler_sees_its_context_in_a_thread_off_the_loop(sqlite_url: str) -> None:
    seen: dict[str, Any] = {}

    def work(value: Any, context: ActivityContext) -> dict[str, Any]:
        seen["thread"] = threading.current_thread().name
        return {
            "execution": context.execution_id,
            "state": context.state_name,
            "attempt": context.attempt,
            "key": context.idempotency_key,
        }

    registry = Registry()
    registry.register("work", work)

    async def main() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            await engine.create_state_machine("one", ONE_TASK)
            done = await engine.wait(await engine.start("one", {"v": 1}))
            assert done.status == "SUCCEEDED", done.cause
            output = json.loads(done.output or "null")
            assert output["execution"] == done.execution_id
            assert output["state"] == "Work"
            assert output["attempt"] == 0
            assert output["key"]
        seen["loop"] = threading.current_thread().name

    anyio.run(main)
    assert seen["thread"].startswith("stepwise handler")
    assert seen["thread"] != seen["loop"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_call_runs_in_a_copy_of_the_callers_contextvars(backend: str) -> None:
    def read() -> tuple[str, str]:
        return LOOKED_UP.get(), threading.current_thread().name

    async def main() -> tuple[str, str]:
        LOOKED_UP.set("from the caller")
        return await run_in_thread(read)

    value, thread = anyio.run(main, backend=backend)
    assert value == "from the caller"
    assert thread != threading.current_thread().name


def test_a_blocked_handler_does_not_hold_up_another_executions_wait(db_url: str) -> None:
    release = threading.Event()
    observed: dict[str, Any] = {}

    def work(value: Any) -> str:
        # Blocks until the other execution's Wait has fired and it ended.
        observed["released"] = release.wait(timeout=60)
        return "unblocked"

    registry = Registry()
    registry.register("work", work)

    async def main() -> None:
        async with Engine(db_url, registry=registry) as engine:
            await engine.create_state_machine("one", ONE_TASK)
            await engine.create_state_machine("pause", PAUSE)
            blocked = await engine.start("one", {})
            pause = await engine.start("pause", {})
            woke = await engine.wait(pause)
            # The handler is still blocked in its thread while the Wait finished.
            observed["blocked_when_wait_ended"] = (await engine.describe(blocked)).status
            release.set()
            finished = await engine.wait(blocked)
            assert woke.status == "SUCCEEDED" and woke.output == '"woke"'
            assert finished.status == "SUCCEEDED" and finished.output == '"unblocked"'

    anyio.run(main)
    assert observed == {"blocked_when_wait_ended": "RUNNING", "released": True}


def test_a_timed_out_attempt_stops_waiting_and_the_thread_finishes_on_its_own(
    sqlite_url: str,
) -> None:
    release = threading.Event()
    finished = threading.Event()

    def work(value: Any) -> str:
        release.wait(timeout=60)
        finished.set()
        return "too late"

    registry = Registry()
    registry.register("work", work)
    machine = {
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": "work", "TimeoutSeconds": 1, "End": True}},
    }

    async def main() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            await engine.create_state_machine("slow", machine)
            done = await engine.wait(await engine.start("slow", {}))
            assert done.status == "FAILED" and done.error == "States.Timeout"
            # The execution ended while its handler still ran.
            assert not finished.is_set()
            release.set()
            await anyio.to_thread.run_sync(finished.wait, 60)

    anyio.run(main)
    assert finished.is_set()


def test_a_call_cancelled_before_it_started_never_runs() -> None:
    pool = HandlerThreads(max_threads=1)
    release = threading.Event()
    ran: list[str] = []

    def first() -> str:
        release.wait(timeout=60)
        ran.append("first")
        return "first"

    def second() -> str:
        ran.append("second")
        return "second"

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(pool.run, first)
            await anyio.sleep(0.01)
            with anyio.move_on_after(0.05) as scope:
                await pool.run(second)  # queued behind `first` on the one thread
            assert scope.cancelled_caught
            release.set()
        # One more call goes through the same thread: `second` was skipped before it.
        assert await pool.run(lambda: "third") == "third"

    try:
        anyio.run(main)
    finally:
        pool.close()
    assert ran == ["first"]


def test_threads_are_bounded_and_reused() -> None:
    pool = HandlerThreads(max_threads=2)
    gate = threading.Barrier(2, timeout=30)
    release = threading.Event()

    def blocked(index: int) -> int:
        if index < 2:
            gate.wait()  # both threads are busy at once
        release.wait(timeout=60)
        return index

    async def main() -> list[int]:
        results: list[int] = []

        async def one(index: int) -> None:
            results.append(await pool.run(lambda: blocked(index)))

        async with anyio.create_task_group() as group:
            for index in range(5):
                group.start_soon(one, index)
            await anyio.sleep(0.05)
            assert pool.threads == 2
            release.set()
        for _ in range(20):
            assert await pool.run(lambda: 1) == 1
        assert pool.threads == 2
        return sorted(results)

    try:
        assert anyio.run(main) == [0, 1, 2, 3, 4]
    finally:
        pool.close()


def test_the_threads_stop_when_the_run_ends(sqlite_url: str) -> None:
    registry = Registry()
    registry.register("work", lambda value: value)

    async def main() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            await engine.create_state_machine("one", ONE_TASK)
            done = await engine.wait(await engine.start("one", {"v": 1}))
            assert done.status == "SUCCEEDED"
            assert _handler_threads()

    anyio.run(main)
    for thread in _handler_threads():
        thread.join(timeout=10)
    assert _handler_threads() == []


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_sync_handler_raising_stop_iteration_fails_its_task_as_any_exception_would(
    sqlite_url: str, backend: str
) -> None:
    # StopIteration cannot cross a future (asyncio refuses it: the answer was
    # lost and the Task hung) nor a coroutine (PEP 479's RuntimeError, whose
    # text differed between the backends). It fails the Task as any other
    # exception of a handler does, with its class name and its message, on
    # either backend, and a Lambda function's the same way Lambda names it.
    def work(_value: Any) -> Any:
        raise StopIteration("out of items")

    function = "arn:aws:lambda:us-east-1:123456789012:function:drain"
    registry = Registry()
    registry.register("work", work)
    lambda_function(function, registry=registry)(work)
    on_lambda = {
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": function, "End": True}},
    }

    async def main() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            await engine.create_state_machine("one", ONE_TASK)
            await engine.create_state_machine("on-lambda", on_lambda)
            # (fail_after: the guard against the hang this test is about)
            with anyio.fail_after(60):
                done = await engine.wait(await engine.start("one", {"v": 1}))
                by_lambda = await engine.wait(await engine.start("on-lambda", {"v": 1}))
            assert (done.status, done.error, done.cause) == (
                "FAILED",
                "StopIteration",
                "out of items",
            )
            assert (by_lambda.status, by_lambda.error) == ("FAILED", "StopIteration")
            cause = json.loads(by_lambda.cause or "{}")
            assert (cause["errorType"], cause["errorMessage"]) == ("StopIteration", "out of items")
            assert any("in work" in frame for frame in cause["stackTrace"]), cause
            # The threads go on answering.
            assert await run_in_thread(lambda: "next") == "next"

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_in_thread_raises_a_calls_stop_iteration_alike_on_both_backends(backend: str) -> None:
    def drained() -> None:
        raise StopIteration("out of items")

    async def main() -> BaseException:
        with pytest.raises(RuntimeError) as raised:
            await run_in_thread(drained)
        return raised.value

    error = anyio.run(main, backend=backend)
    assert str(error) == "the call raised StopIteration: StopIteration('out of items')"
    assert isinstance(error.__cause__, StopIteration)
