"""An answer arriving after its loop closed, the pool still open."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

from activities.handler_threads import LoopThreads
from tests.activities.test_loop_answers import NAME, _eventfds


def test_a_late_answer_does_not_keep_the_closed_loop_alive() -> None:
    pool = LoopThreads(2, name=NAME, what="test threads")
    before = _eventfds()
    release = threading.Event()
    done = threading.Event()

    def slow() -> int:
        release.wait(30)
        done.set()
        return 7

    async def main() -> None:
        pool.use_answers(asyncio.get_running_loop())
        call = pool.submit(slow)
        # The run ends with the call still running (its waiter gone, as a
        # cancelled handler's).
        del call

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    release.set()
    done.wait(30)
    for _ in range(100):  # the thread is back idle once it counted the call finished
        if pool.idle_threads:
            break
        threading.Event().wait(0.01)
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    try:
        assert gone() is None, "the closed loop is kept alive by the answer queued for it"
    finally:
        pool.close()
    gc.collect()
    assert gone() is None
    assert not _eventfds() - before
