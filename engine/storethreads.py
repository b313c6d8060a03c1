"""The threads an Engine's store calls run in, on asyncio: one queue put and one answer per call.

Every store call leaves the event loop for a thread (`Engine._run_db`);
SQLite's store has one slot (its calls take turns, in order), PostgreSQL's
eight. anyio's hop pays per call for a cancel scope, a capacity limiter, a
`queue.Queue` hand-off and a task check — about twice the CPU of the call's
own hand-off on a short store call (`benchmarks/PROFILE.md`). `StoreThreads`
keeps as many long-lived threads as the store has slots, fed first come
first served from one `SimpleQueue`, each answer handed back with one
``call_soon_threadsafe``. The call runs in a copy of the caller's
contextvars, as with anyio.

Cancellation keeps anyio's rules. A caller already cancelled never starts
its call (a Task's SQL effect must not run in an activation being torn
down). A `cancellable` call is abandoned
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
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from activities.handler_threads import THREAD_NAME

__all__ = ["StoreThreads"]

T = TypeVar("T")


class _Call:
    """One store call: its answer's future, and whether a thread has started it."""

    __slots__ = ("context", "fn", "future", "loop", "started")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Callable[[], Any]
    ) -> None:
        self.loop = loop
        self.future = future
        self.context = contextvars.copy_context()
        self.fn = fn
        self.started = False


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """On the loop: hand the thread's answer to the waiter, unless it stopped waiting."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class StoreThreads:
    """As many long-lived threads as the store has slots, running its calls in order."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # Guards the thread count and each call's started/cancelled decision.
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    @classmethod
    def for_this_run(cls, slots: int) -> StoreThreads:
        """New threads that also close when this event loop's run ends (as anyio's do).

        Their owner closes them first; this is the safety net for an owner
        that never got that far (its threads would keep the process alive).
        """
        from anyio._backends._asyncio import find_root_task

        threads = cls(slots)
        find_root_task().add_done_callback(lambda _task: threads.close())
        return threads

    async def call(self, fn: Callable[[], T], *, cancellable: bool = False) -> T:
        """Run `fn` in one of the threads and return (or raise) what it did."""
        # As anyio's: a caller already cancelled never starts the call (a
        # thread could take it at once, before the first await below notices).
        await anyio.lowlevel.checkpoint_if_cancelled()
        loop = asyncio.get_running_loop()
        call = _Call(loop, loop.create_future(), fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("the store threads are closed")
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self.slots:
                thread = threading.Thread(
                    target=self._serve, name=f"{THREAD_NAME} (store) {len(self._threads)}"
                )
                self._threads.append(thread)
                thread.start()
            self._calls.put(call)
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

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            with self._lock:
                run = not call.future.cancelled()
                call.started = run
            if run:
                try:
                    answer: tuple[bool, Any] = (True, call.context.run(call.fn))
                except BaseException as failure:  # handed to the waiter, never lost here
                    answer = (False, failure)
                try:
                    call.loop.call_soon_threadsafe(_settle, call.future, *answer)
                except RuntimeError:
                    pass  # the loop closed while the call ran: nobody waits for it
                del answer
            # Hold nothing of a finished call while idle.
            del call
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Stop the threads: idle ones at once, busy ones when their call returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._calls.put(None)
