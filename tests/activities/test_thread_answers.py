"""The threads' answers reach their waiters in batches, and none is ever left behind.

A thread finishing a call gives its answer to its loop's `Answers`; the loop
is woken (``call_soon_threadsafe``) only when no drain is already due, and a
drain settles every answer given until it runs. These tests force the
interleavings with threading Events (no sleeps): answers given while the
loop is blocked, an answer given while a drain runs, a waiter that stopped
waiting, and a call that raises StopIteration (which a future refuses).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from activities.handler_threads import Answers, HandlerThreads, run_in_thread


def _counting_wakeups(loop: asyncio.AbstractEventLoop) -> list[int]:
    """Count the loop's ``call_soon_threadsafe`` calls (its wake-ups from other threads)."""
    count = [0]
    wake = loop.call_soon_threadsafe

    def counted(*args: Any, **kwargs: Any) -> asyncio.Handle:
        count[0] += 1
        return wake(*args, **kwargs)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    return count


def test_answers_given_while_the_loop_is_blocked_are_all_settled_by_one_drain() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wakeups = _counting_wakeups(loop)
        answers = Answers(loop)
        futures = [loop.create_future() for _ in range(50)]
        futures[7].cancel()  # a waiter that stopped waiting: its answer is dropped
        failure = ValueError("the call's own error")

        def finish_all() -> None:
            for index, future in enumerate(futures):
                if index == 3:
                    answers.give(future, False, failure)
                else:
                    answers.give(future, True, index)

        # The loop thread is blocked in join() while every answer is given.
        giver = threading.Thread(target=finish_all)
        giver.start()
        giver.join()
        assert wakeups[0] == 1
        assert not any(f.done() for i, f in enumerate(futures) if i != 7)
        settled = await asyncio.gather(*futures, return_exceptions=True)
        assert [s for i, s in enumerate(settled) if i not in (3, 7)] == [
            i for i in range(50) if i not in (3, 7)
        ]
        assert settled[3] is failure
        assert isinstance(settled[7], asyncio.CancelledError)
        assert wakeups[0] == 1

    asyncio.run(main())


class _PausingFuture(asyncio.Future[Any]):
    """A future whose first `done()` — asked by the drain, after it took its batch — blocks
    the loop thread until another answer has been given."""

    def __init__(self, loop: asyncio.AbstractEventLoop, draining: threading.Event) -> None:
        super().__init__(loop=loop)
        self.draining = draining
        self.given = threading.Event()

    def done(self) -> bool:
        if not self.draining.is_set():
            self.draining.set()
            assert self.given.wait(30)
        return super().done()


def test_an_answer_given_while_a_drain_runs_is_settled_by_a_drain_of_its_own() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wakeups = _counting_wakeups(loop)
        answers = Answers(loop)
        draining = threading.Event()
        first = _PausingFuture(loop, draining)
        second: asyncio.Future[Any] = loop.create_future()

        def give_second_during_the_drain() -> None:
            assert draining.wait(30)
            answers.give(second, True, "second")
            first.given.set()

        late = threading.Thread(target=give_second_during_the_drain)
        late.start()
        answers.give(first, True, "first")
        assert await first == "first"
        late.join()
        # Nothing else wakes this loop: the second answer's own drain must be due.
        for _ in range(3):
            await asyncio.sleep(0)
        assert second.done(), "the answer given during the drain was left behind"
        assert second.result() == "second"
        assert wakeups[0] == 2

    asyncio.run(main())


def test_many_calls_finishing_while_the_loop_is_blocked_are_all_answered() -> None:
    pool = HandlerThreads(max_threads=4)
    finished = threading.Semaphore(0)
    calls = 40

    def work(index: int) -> int:
        finished.release()
        return index * 2

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        handed = [pool.submit(lambda index=index: work(index), loop) for index in range(calls)]  # type: ignore[misc]
        # Block the loop until every call has run: their answers pile up.
        for _ in range(calls):
            assert finished.acquire(timeout=30)
        return [await call.future for call in handed]

    try:
        assert asyncio.run(main()) == [index * 2 for index in range(calls)]
    finally:
        pool.close()


def test_a_call_raising_stop_iteration_answers_its_waiter_with_a_runtime_error() -> None:
    def stops() -> None:
        raise StopIteration("done early")

    async def main() -> BaseException:
        with pytest.raises(RuntimeError) as raised:
            # (wait_for: the guard against a waiter never answered, which would hang)
            await asyncio.wait_for(run_in_thread(stops), 60)
        # The pool goes on answering.
        assert await run_in_thread(lambda: "next") == "next"
        return raised.value

    error = asyncio.run(main())
    assert "StopIteration" in str(error)
    assert isinstance(error.__cause__, StopIteration)
