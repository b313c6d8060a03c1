"""The handler threads answer their loop through an eventfd (`LoopAnswers`), and lose no answer.

Every answer is queued, then written to the eventfd the loop watches; the
loop's reader reads once and settles all that is queued. These tests run
real threads against a real asyncio loop: many threads answering at once
all arrive, an answer queued as the channel closes is still settled, an
answer after the close goes through ``call_soon_threadsafe``, and the
eventfd lives exactly as long as the run's handler threads; a pool that
outlives its loop does not keep that loop alive.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path

import anyio
import pytest

from activities.handler_threads import LoopAnswers, LoopThreads, run_in_thread

NAME = "stepwise handler (answerstest)"

pytestmark = pytest.mark.skipif(not hasattr(os, "eventfd"), reason="eventfd is Linux's")


def _eventfds() -> set[int]:
    found = set()
    for entry in Path("/proc/self/fd").iterdir():
        try:
            if os.readlink(entry) == "anon_inode:[eventfd]":
                found.add(int(entry.name))
        except OSError:
            continue  # closed while listed
    return found


def test_many_threads_answering_at_once_lose_no_answer() -> None:
    pool = LoopThreads(8, name=NAME, what="test threads")

    async def main() -> list[int]:
        pool.use_answers(asyncio.get_running_loop())
        results: list[int] = []
        for _ in range(20):  # bursts: threads answer while the loop drains
            calls = [pool.submit(lambda n=n: n * 2) for n in range(200)]
            results.extend([await call.future for call in calls])
        return results

    try:
        assert anyio.run(main) == [n * 2 for n in range(200)] * 20
    finally:
        pool.close()


def test_an_answer_queued_when_the_channel_closes_is_still_settled() -> None:
    async def main() -> tuple[object, bool]:
        loop = asyncio.get_running_loop()
        channel = LoopAnswers.open(loop)
        assert channel is not None
        future: asyncio.Future[object] = loop.create_future()
        answering = threading.Thread(target=channel.answer, args=(future, True, "answer"))
        answering.start()
        answering.join()  # queued and written; the loop has not read it yet
        channel.close()
        settled = future.result() if future.done() else None
        late = loop.create_future()
        return settled, channel.answer(late, True, "late")

    assert anyio.run(main) == ("answer", False)  # after the close the pool falls back


def test_a_call_running_across_the_close_is_answered_all_the_same() -> None:
    pool = LoopThreads(2, name=NAME, what="test threads")
    release = threading.Event()
    started = threading.Event()

    def blocked() -> str:
        started.set()
        release.wait(30)
        return "done"

    async def main() -> str:
        pool.use_answers(asyncio.get_running_loop())
        call = pool.submit(blocked)
        await anyio.to_thread.run_sync(started.wait)
        pool.close()  # closes the channel: the answer takes call_soon_threadsafe
        release.set()
        with anyio.fail_after(30):
            return str(await call.future)

    assert anyio.run(main) == "done"


def test_the_runs_eventfd_is_closed_with_its_handler_threads() -> None:
    before = _eventfds()

    async def main() -> set[int]:
        await run_in_thread(lambda: None)
        return _eventfds() - before

    opened = anyio.run(main)
    assert len(opened) == 1  # the run's handler threads answered through one eventfd
    assert not (_eventfds() - before) & opened


def test_an_answered_loop_leaves_the_eventfd_empty_and_sleeps() -> None:
    """The reader reads its wake: an idle loop after an answer burns no CPU (no ready reader)."""
    pool = LoopThreads(2, name="stepwise handler (spin test)", what="test threads")

    async def main() -> float:
        pool.use_answers(asyncio.get_running_loop())
        assert await pool.submit(lambda: 1).future == 1
        await anyio.sleep(0.01)
        channel = pool._answers
        assert channel is not None
        with pytest.raises(BlockingIOError):
            os.eventfd_read(channel._fd)
        began = time.process_time()
        await anyio.sleep(0.5)
        return time.process_time() - began

    try:
        assert anyio.run(main) < 0.1
    finally:
        pool.close()


def test_out_of_descriptors_the_first_call_still_runs_and_no_thread_outlives_the_run() -> None:
    """No eventfd to be had: the threads answer the old way; the pool still closes with its run."""
    script = textwrap.dedent(
        """
        import os, resource, threading, time, anyio
        from activities.handler_threads import run_in_thread, _POOLS

        async def main():
            held = []
            try:
                while True:
                    held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                pass
            try:
                first = await run_in_thread(lambda: "ran")
            finally:
                for fd in held:
                    os.close(fd)
            return first, await run_in_thread(lambda: "again")

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        print(anyio.run(main))
        deadline = time.monotonic() + 10
        alive = lambda: [t for t in threading.enumerate() if t.name.startswith("stepwise handler")]
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        print(len(_POOLS), len(alive()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["('ran', 'again')", "0 0"], result.stdout


def test_a_pool_outliving_its_loop_does_not_keep_the_loop_alive() -> None:
    """The channel holds its loop weakly: a closed loop (all it holds) is freed, the fd closed."""
    pool = LoopThreads(2, name=NAME, what="test threads")
    before = _eventfds()

    async def main() -> int:
        pool.use_answers(asyncio.get_running_loop())
        return int(await pool.submit(lambda: 7).future)

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == 7
    finally:
        loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    try:
        assert gone() is None
        assert len(_eventfds() - before) == 1  # the pool's channel, still open
    finally:
        pool.close()  # its loop gone: the channel closes its eventfd at once
    assert not _eventfds() - before
