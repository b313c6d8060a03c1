"""The threads an Engine's store calls run in, on asyncio: one queue put and one answer per call.

Every store call leaves the event loop for a thread (`Engine._run_db`);
SQLite's store has one slot (its calls take turns, in order), PostgreSQL's
eight. anyio's hop pays per call for a cancel scope, a capacity limiter, a
`queue.Queue` hand-off and a task check — about twice the CPU of the call's
own hand-off on a short store call (`benchmarks/PROFILE.md`). `StoreThreads`
keeps as many long-lived threads as the store has slots, each call handed
to the most recently idle one (or, none idle, queued first come first
served), each answer handed back through the loop's eventfd channel
(`LoopAnswers`, as the sync handlers' threads answer; ``call_soon_threadsafe``
where there is none): one call at a time (W1) keeps one thread hot instead
of waking them in turn.
The call runs in a copy of the caller's contextvars, as with anyio. The
pool itself is `activities.handler_threads.LoopThreads`, shared with the
sync handlers' threads; this module adds the store's cancellation rules.

Cancellation keeps anyio's rules. A caller already cancelled never starts
its call (a Task's SQL effect must not run in an activation being torn
down; `activities.cancelcheck` answers the common case, anyio's own check
every other). A `cancellable` call is abandoned
by a cancelled caller: never run if not yet started, its answer dropped if
running. Any other call, once started, is waited for whatever happens (its
outcome must be known: a commit's, a claim's), and the cancellation is
raised when it has returned; a call cancelled before a thread took it never
runs. The threads stop at `close()` (idle ones at once, a busy one when its
call returns), at the latest when the event loop's run ends. They are named
like the sync handlers' threads, so a stopping `stepwise worker` treats a
store call stuck in one as it treats a handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.lowlevel

from activities import cancelcheck
from activities.handler_threads import THREAD_NAME, LoopThreads

__all__ = ["StoreThreads"]

T = TypeVar("T")


class StoreThreads(LoopThreads):
    """As many long-lived threads as the store has slots, running its calls in order."""

    def __init__(self, slots: int) -> None:
        super().__init__(slots, name=f"{THREAD_NAME} (store)", what="store threads")
        self.slots = slots

    @classmethod
    def for_this_run(cls, slots: int) -> StoreThreads:
        """New threads for the running event loop that close when its run ends (as anyio's do).

        They answer the loop through its eventfd channel.

        Their owner closes them first; this is the safety net for an owner
        that never got that far (its threads would keep the process alive).
        """
        from anyio._backends._asyncio import find_root_task

        threads = cls(slots)
        find_root_task().add_done_callback(lambda _task: threads.close())
        threads.use_answers(asyncio.get_running_loop())
        return threads

    async def call(self, fn: Callable[[], T], *, cancellable: bool = False) -> T:
        """Run `fn` in one of the threads and return (or raise) what it did."""
        # As anyio's: a caller already cancelled never starts the call (a
        # thread could take it at once, before the first await below notices).
        if not cancelcheck.surely_not_cancelled():
            await anyio.lowlevel.checkpoint_if_cancelled()
        call = self.submit(fn)
        if cancellable:
            # A cancelled caller cancels the future: not run if not started, else dropped.
            result: T = await call.future
            return result
        try:
            shielded: T = await asyncio.shield(call.future)
            return shielded
        except asyncio.CancelledError:
            with self._lock:
                if not call.started:
                    call.future.cancel()  # a thread will skip it
                    raise
            # Started: its outcome must be known before the cancellation goes on.
            with anyio.CancelScope(shield=True):
                await asyncio.wait([call.future])
            if not call.future.cancelled():
                call.future.exception()  # retrieved: its caller is gone
            raise
