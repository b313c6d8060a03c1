"""The long-lived threads sync handlers run in, so a Task does not pay anyio's thread hop.

`run_in_thread(fn, *args)` runs a blocking callable off the event loop and
awaits its result, the one way sync handlers (and the HTTP and shell
built-ins) leave the loop. On asyncio it hands the call to this loop's
`HandlerThreads`: a bounded set of threads (`MAX_THREADS`, as many as
anyio's default limiter allowed before) that outlive each call, fed through
one queue, each call answered with one ``call_soon_threadsafe`` — less than
anyio's per-call cancel scope, limiter and worker hand-off. Off asyncio
(trio, as the tests also run) it falls back to
``anyio.to_thread.run_sync``. Either way the callable runs in a copy of the
caller's contextvars (a handler sees the telemetry context it ran under),
and cancelling the caller stops it waiting: a call not yet started never
runs, one already running finishes on its own and its answer is dropped.
The pool's threads stop when the run's root task ends (when the event loop
that an Engine runs on finishes, as anyio's own worker threads do), or at
`close()`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import anyio.to_thread

__all__ = ["MAX_THREADS", "THREAD_NAME", "HandlerThreads", "run_in_thread"]

T = TypeVar("T")

# anyio's default thread limiter held 40 tokens: sync handlers keep that bound.
MAX_THREADS = 40
# Each thread's name starts with this (a stopping worker looks for them by name).
THREAD_NAME = "stepwise handler"

_Job = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[[], Any]
]


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """On the loop: hand the thread's answer to the waiter, unless it stopped waiting."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class HandlerThreads:
    """A bounded set of long-lived threads that run blocking calls for one event loop."""

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        self.max_threads = max_threads
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    @property
    def threads(self) -> int:
        """How many threads are alive (for tests and telemetry)."""
        return sum(1 for thread in self._threads if thread.is_alive())

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` in one of the threads, in a copy of the caller's context; await its answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = (loop, future, contextvars.copy_context(), fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler threads are closed")
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self.max_threads:
                thread = threading.Thread(
                    target=self._serve, name=f"{THREAD_NAME} {len(self._threads)}"
                )
                self._threads.append(thread)
                thread.start()
            self._jobs.put(job)
        return await future

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, context, fn = job
            answer: tuple[bool, Any] | None = None
            # A waiter cancelled before its call started: the call never runs.
            if not future.cancelled():
                try:
                    answer = (True, context.run(fn))
                except BaseException as failure:  # handed to the waiter, never lost here
                    answer = (False, failure)
                try:
                    loop.call_soon_threadsafe(_settle, future, *answer)
                except RuntimeError:
                    pass  # the loop closed while the call ran: nobody waits for it
            # Hold nothing of a finished call (its loop, its answer) while idle.
            del job, loop, future, context, fn, answer
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        """Stop the threads: idle ones at once, busy ones when their call returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)


_POOLS: WeakKeyDictionary[asyncio.AbstractEventLoop, HandlerThreads] = WeakKeyDictionary()


def _pool(loop: asyncio.AbstractEventLoop) -> HandlerThreads:
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = HandlerThreads()
        # Closed with the run, as anyio closes its own worker threads.
        from anyio._backends._asyncio import find_root_task

        find_root_task().add_done_callback(lambda _task: _close(loop, pool))
    return pool


def _close(loop: asyncio.AbstractEventLoop, pool: HandlerThreads) -> None:
    pool.close()
    if _POOLS.get(loop) is pool:
        del _POOLS[loop]


async def run_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread; whatever it raises propagates.

    Cancellation stops the wait, not the call (a call not yet started never runs).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        return await anyio.to_thread.run_sync(
            functools.partial(fn, *args) if args else fn, abandon_on_cancel=True
        )
    return await _pool(loop).run(functools.partial(fn, *args) if args else fn)
