"""The one thread-pool core: blocking calls get as many threads as the bound allows, then none.

`LoopThreads` backs both the sync handlers' threads and the store's. The
loop starts only the first thread itself; a spawner thread starts the
others, so the calls a burst queues still run side by side up to the
bound (a handler that blocks does not hold up the next one), and closing
the pool leaves no thread of it behind, spawner included.
"""

from __future__ import annotations

import threading

import anyio
import pytest

from activities.handler_threads import LoopThreads

NAME = "stepwise handler (pooltest)"


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(NAME) and t.is_alive()]


def test_a_burst_of_blocking_calls_runs_side_by_side_up_to_the_bound() -> None:
    pool = LoopThreads(5, name=NAME, what="test threads")
    # Each call returns only once all five run at the same time.
    together = threading.Barrier(5, timeout=30)

    def blocked(index: int) -> int:
        together.wait()
        return index

    async def main() -> list[int]:
        calls = [pool.submit(lambda index=index: blocked(index)) for index in range(5)]  # type: ignore[misc]
        return [await call.future for call in calls]

    try:
        assert anyio.run(main) == [0, 1, 2, 3, 4]
        assert pool.threads == 5
    finally:
        pool.close()
    for thread in _pool_threads():
        thread.join(timeout=10)
    assert _pool_threads() == []


def test_threads_are_reused_and_never_exceed_the_bound() -> None:
    pool = LoopThreads(3, name=NAME, what="test threads")

    async def main() -> list[int]:
        results: list[int] = []
        for _ in range(10):
            calls = [pool.submit(lambda index=index: index) for index in range(20)]  # type: ignore[misc]
            results.extend([await call.future for call in calls])
        return results

    try:
        assert anyio.run(main) == list(range(20)) * 10
        assert 1 <= pool.threads <= 3
    finally:
        pool.close()
    for thread in _pool_threads():
        thread.join(timeout=10)
    assert _pool_threads() == []


def test_bursts_of_short_calls_behind_a_blocked_one_are_all_answered_in_order() -> None:
    # The spawner starts a thread only while a call waits in the queue (a
    # burst the running threads keep up with gets no thread per call); the
    # requests it skips must never strand a call: the first blocks until the
    # whole burst is queued, the rest return at once, and a second burst
    # finds the threads idle.
    pool = LoopThreads(40, name=NAME, what="test threads")
    release = threading.Event()

    def first() -> int:
        release.wait(timeout=30)
        return -1

    async def main() -> list[int]:
        calls = [pool.submit(first)]
        calls += [pool.submit(lambda index=index: index) for index in range(99)]  # type: ignore[misc]
        release.set()
        answers = [await call.future for call in calls]
        # A second burst finds threads idle: still no thread per call.
        again = [pool.submit(lambda index=index: index) for index in range(99)]  # type: ignore[misc]
        return answers + [await call.future for call in again]

    try:
        assert anyio.run(main) == [-1, *range(99), *range(99)]
        assert 1 <= pool.threads <= 40
    finally:
        pool.close()
    for thread in _pool_threads():
        thread.join(timeout=10)
    assert _pool_threads() == []


def test_one_call_at_a_time_is_served_by_one_thread_while_the_others_stay_idle() -> None:
    # A call goes to the most recently idle thread: under light load one
    # thread stays hot, and the threads a burst started stay untouched.
    pool = LoopThreads(4, name=NAME, what="test threads")
    together = threading.Barrier(4, timeout=30)

    def blocked() -> int:
        together.wait()
        return threading.get_ident()

    async def main() -> tuple[set[int], list[int]]:
        burst = [pool.submit(blocked) for _ in range(4)]
        burst_threads = {await call.future for call in burst}
        one_at_a_time = []
        for _ in range(30):
            while pool.idle_threads < 4:  # the last call's thread is idle again
                await anyio.sleep(0.001)
            one_at_a_time.append(await pool.submit(threading.get_ident).future)
        return burst_threads, one_at_a_time

    try:
        burst_threads, one_at_a_time = anyio.run(main)
        assert len(burst_threads) == 4  # the burst ran on every thread, side by side
        assert len(set(one_at_a_time)) == 1  # then one thread served every single call
        assert set(one_at_a_time) <= burst_threads
    finally:
        pool.close()
    for thread in _pool_threads():
        thread.join(timeout=10)
    assert _pool_threads() == []


def test_calls_handed_over_before_close_still_run_and_none_after() -> None:
    pool = LoopThreads(1, name=NAME, what="test threads")
    release = threading.Event()
    ran: list[int] = []

    def first() -> int:
        release.wait(timeout=30)
        ran.append(0)
        return 0

    async def main() -> list[int]:
        calls = [pool.submit(first)]
        calls += [pool.submit(lambda index=index: ran.append(index) or index) for index in (1, 2)]  # type: ignore[func-returns-value]
        pool.close()
        with pytest.raises(RuntimeError, match="closed"):
            pool.submit(lambda: 3)
        release.set()
        return [await call.future for call in calls]

    assert anyio.run(main) == [0, 1, 2]
    assert ran == [0, 1, 2]
    for thread in _pool_threads():
        thread.join(timeout=10)
    assert _pool_threads() == []


def test_a_call_behind_long_running_ones_gets_a_free_slot_after_a_burst() -> None:
    # A burst of short calls that one thread keeps up with leaves finished
    # calls' credit behind; once every running thread is in a long call (a
    # handler that runs for minutes), the next call queued on that credit is
    # watched and gets a thread of its own — it does not wait in the backlog
    # for a long call to end while slots are free.
    pool = LoopThreads(40, name=NAME, what="test threads")
    release = threading.Event()

    async def main() -> str:
        # Fewer calls than the bound: whatever threads the burst starts, a slot stays free.
        burst = [pool.submit(lambda: sum(range(2000))) for _ in range(30)]
        for call in burst:
            await call.future
        while pool.idle_threads < pool.threads:  # the burst's threads all idle again
            await anyio.sleep(0.001)
        await anyio.sleep(0.2)  # the spawner done with the burst's requests too
        longs = [pool.submit(lambda: release.wait(60)) for _ in range(pool.threads)]
        while pool.idle_threads:  # every thread in a long call
            await anyio.sleep(0.001)
        try:
            with anyio.fail_after(30):  # a bound on starvation, not a speed figure
                quick: str = await pool.submit(lambda: "quick").future
            assert not release.is_set()  # answered while every long call still runs
        finally:
            release.set()
        for call in longs:
            await call.future
        return quick

    try:
        assert anyio.run(main) == "quick"
    finally:
        release.set()
        pool.close()
    for thread in _pool_threads():
        thread.join(timeout=10)
    assert _pool_threads() == []
