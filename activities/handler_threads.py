"""The long-lived threads blocking calls run in, so a call does not pay anyio's thread hop.

`LoopThreads` is the one pool core: a bounded set of threads that outlive
each call (asked for on demand under a lock and started by a spawner
thread, so the loop never waits for a thread's start-up but the
spawner's — which starts one only while a call waits in the backlog, and
which an owner about to submit calls may start ahead with `prestart`).
A call goes to the **most recently idle** thread (a stack of idle threads,
each waiting on its own inbox), or, with none idle, to a first come first
served backlog that a thread finishing its call takes from: under light
load (one call at a time) one thread stays hot — its caches warm — and the
others' stacks and malloc arenas stay untouched, while a burst still uses
every thread. Each call runs in a copy of the caller's contextvars and is
answered with one ``call_soon_threadsafe`` — or, for a pool given its
loop's `LoopAnswers` channel (`use_answers`; the handler threads are), one
eventfd write that the loop reads once — less than anyio's per-call
cancel scope, limiter and worker hand-off. A
call whose waiter was cancelled before a thread took it never runs (the
thread decides under the lock and marks the call `started`, so a waiter
can tell whether its call ran). Its two users differ only in what a
cancelled waiter does: `HandlerThreads` (sync handlers, and the HTTP and
shell built-ins, through `run_in_thread`) abandons a running call and
drops its answer; `engine.storethreads.StoreThreads` checks for
cancellation before the call and waits for a started call to return.

`run_in_thread(fn, *args)` runs a blocking callable off the event loop and
awaits its result. On asyncio it hands the call to this loop's
`HandlerThreads` (`MAX_THREADS`, as many as anyio's default limiter allowed
before); off asyncio (trio, as the tests also run) it falls back to
``anyio.to_thread.run_sync``. The pool's threads stop when the run's root
task ends (when the event loop that an Engine runs on finishes, as anyio's
own worker threads do), or at `close()`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import anyio.lowlevel
import anyio.to_thread

from activities import cancelcheck

__all__ = [
    "MAX_THREADS",
    "THREAD_NAME",
    "HandlerThreads",
    "LoopThreads",
    "ThreadCall",
    "prestart_threads",
    "run_in_thread",
]

T = TypeVar("T")

# anyio's default thread limiter held 40 tokens: sync handlers keep that bound.
MAX_THREADS = 40
# Each thread's name starts with this (a stopping worker looks for them by name).
THREAD_NAME = "stepwise handler"
# How long a call may wait in the backlog on a finished call's credit before
# the spawner gives it a thread of its own (`LoopThreads._watch`).
PATIENCE = 0.02


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """On the loop: hand the thread's answer to the waiter, unless it stopped waiting."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    elif isinstance(value, StopIteration):
        # A future refuses StopIteration (TypeError): the waiter would never
        # be answered. Raised as a coroutine's would be, as a RuntimeError.
        future.set_exception(_stop_iteration_error(value))
    else:
        future.set_exception(value)


def _stop_iteration_error(stop: StopIteration) -> RuntimeError:
    """What a call's StopIteration is raised as, on asyncio and trio alike."""
    error = RuntimeError(f"the call raised StopIteration: {stop!r}")
    error.__cause__ = stop
    return error


def _without_stop_iteration(fn: Callable[[], T]) -> T:
    """`fn()`, its StopIteration raised as `_stop_iteration_error` (trio's text would differ)."""
    try:
        return fn()
    except StopIteration as stop:
        raise _stop_iteration_error(stop) from stop


class LoopAnswers:
    """One event loop's answer channel: threads queue answers and bump an eventfd; the loop settles.

    asyncio's own way, ``call_soon_threadsafe``, writes a byte to the loop's
    self-pipe; the woken loop reads it back with two ``recv`` calls (the
    second one to hit EAGAIN, raising and catching BlockingIOError) and only
    then, in the next turn of the loop, resumes the waiter: measured in a
    serial W1 step, ~20 µs between the answer's settling and its waiter's
    resumption (PROFILE.md, s19b). Here the answer goes on a queue and the
    thread adds 1 to an eventfd the loop watches; the loop's reader reads it
    once (one read empties the counter) and settles every queued answer
    itself. Each answer writes after it is queued, so a drain that reads
    and then empties the queue leaves none behind (one queued after the
    read was also written after it: the loop wakes again). An answer never
    lost to a failed write either: it then goes through
    ``call_soon_threadsafe`` too, and settling a settled future does nothing.
    """

    __slots__ = ("_answers", "_fd", "_guard", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        # By weak reference: a pool that outlives its run (never closed, or
        # closed late) must not keep the run's loop, closed, alive with all
        # it holds. While the loop runs, its reader holds this channel.
        self._loop = weakref.ref(loop)
        self._fd = fd
        self._answers: deque[tuple[asyncio.Future[Any], bool, Any]] = deque()
        # Held while writing and while closing: a thread never writes to a
        # closed descriptor's number (which a new file may have taken).
        self._guard = threading.Lock()

    @classmethod
    def open(cls, loop: asyncio.AbstractEventLoop) -> LoopAnswers | None:
        """A channel for `loop` (on its thread); None without eventfd or a loop to watch one.

        None too when the process is out of descriptors (or the loop refuses
        this one): its threads then answer by ``call_soon_threadsafe``, as
        before, and no call fails for want of the channel.
        """
        eventfd = getattr(os, "eventfd", None)
        if eventfd is None:
            return None
        try:
            fd = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:  # EMFILE, ENFILE, ENOMEM
            return None
        channel = cls(loop, fd)
        try:
            loop.add_reader(fd, channel._drain)
        except (NotImplementedError, OSError, ValueError):  # cannot watch this descriptor
            os.close(fd)
            return None
        return channel

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop this channel answers, None once it is gone."""
        return self._loop()

    def answer(self, future: asyncio.Future[Any], ok: bool, value: Any) -> bool:
        """From a thread: queue the answer and wake the loop. False: closed, or the wake failed."""
        with self._guard:
            if self._fd < 0:
                return False
            loop = self._loop()
            if loop is None or loop.is_closed():  # queued, it would keep the closed loop alive
                return False
            self._answers.append((future, ok, value))
            try:
                os.eventfd_write(self._fd, 1)
            except OSError:
                return False
        return True

    def _drain(self) -> None:
        """On the loop: settle every queued answer."""
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:  # an earlier drain took this wake's answers
            pass
        self._settle_queued()

    def _settle_queued(self) -> None:
        """On the loop (running, so alive): settle every queued answer."""
        answers = self._answers
        while answers:
            future, ok, value = answers.popleft()
            try:
                _settle(future, ok, value)
            except Exception as error:  # one waiter's trouble must not strand the others
                future.get_loop().call_exception_handler(
                    {"message": "settling a thread's answer failed", "exception": error}
                )

    def close_soon(self) -> None:
        """Close on the loop's thread: now if this is it, else soon (now if closed or gone)."""
        loop = self._loop()
        if loop is None or asyncio._get_running_loop() is loop:
            self.close()
            return
        try:
            loop.call_soon_threadsafe(self.close)
        except RuntimeError:  # the loop is closed: nothing watches the descriptor, nobody waits
            self.close()

    def close(self) -> None:
        """Stop watching and close the eventfd; answers still queued are settled (if the loop runs).

        Later answers go through ``call_soon_threadsafe`` (`answer` says False).
        """
        with self._guard:
            if self._fd < 0:
                return
            fd, self._fd = self._fd, -1
        loop = self._loop()
        if loop is None or loop.is_closed():
            # Nothing watches the descriptor, nobody waits for these answers.
            os.close(fd)
            self._answers.clear()
            return
        loop.remove_reader(fd)
        os.close(fd)
        self._settle_queued()


class ThreadCall:
    """One call handed to the threads: its answer's future, and whether a thread started it."""

    __slots__ = ("answers", "context", "fn", "future", "loop", "queued_at", "started")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        fn: Callable[[], Any],
        answers: LoopAnswers | None = None,
    ) -> None:
        self.loop = loop
        self.answers = answers
        self.future = future
        self.context = contextvars.copy_context()
        self.fn = fn
        self.started = False
        self.queued_at = time.monotonic()


class LoopThreads:
    """A bounded set of long-lived threads running blocking calls for an event loop.

    `name` starts each thread's name (numbered after it); `what` names the
    pool in the error a call to a closed pool raises.
    """

    def __init__(self, max_threads: int, *, name: str, what: str) -> None:
        self.max_threads = max_threads
        self._name = name
        self._what = what
        # Calls no idle thread could take at once, first come first served.
        self._backlog: deque[ThreadCall] = deque()
        # The idle threads' inboxes, the most recently idle last (taken first).
        self._idle: list[queue.SimpleQueue[ThreadCall | None]] = []
        # Calls finished and not yet matched by a new call: while positive, a
        # thread is (or is about to be) free, so a new call asks for no new
        # thread — a burst of short calls that the running threads keep up
        # with (the GIL runs them one at a time anyway) gets no thread per
        # call. A guess, not a count: left over from a burst, it may promise
        # a thread that is in a long call, so such a call is also watched
        # (`_watch`): still waiting after `PATIENCE`, it gets a thread.
        self._watching = False
        self._finished = 0
        # Guards the backlog, the idle stack, the thread count and each
        # call's started/cancelled decision.
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Threads asked for (started or not yet), at most `max_threads`.
        self._spawned = 0
        # True: start one more thread; None: watch the backlog (`_watch`);
        # False: stop. Read by the spawner thread.
        self._spawns: queue.SimpleQueue[bool | None] = queue.SimpleQueue()
        self._spawner: threading.Thread | None = None
        self._closed = False
        # The answer channel of the loop this pool serves (`use_answers`).
        self._answers: LoopAnswers | None = None

    def use_answers(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer calls from `loop` through a `LoopAnswers` channel (on the loop's thread).

        Closed with the pool. Calls from any other loop, or with no channel
        to be had, are answered with ``call_soon_threadsafe``.
        """
        if self._answers is None and not self._closed:
            self._answers = LoopAnswers.open(loop)

    @property
    def threads(self) -> int:
        """How many threads are alive (for tests and telemetry)."""
        return sum(1 for thread in self._threads if thread.is_alive())

    @property
    def idle_threads(self) -> int:
        """How many threads wait for a call (for tests and telemetry)."""
        with self._lock:
            return len(self._idle)

    def submit(
        self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop | None = None
    ) -> ThreadCall:
        """Hand `fn` to a thread (on `loop`, else the running loop); its answer settles it."""
        if loop is None:
            loop = asyncio.get_running_loop()
        answers = self._answers
        if answers is None or answers.loop is not loop:
            answers = None
        call = ThreadCall(loop, loop.create_future(), fn, answers)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self._what} are closed")
            free = self._finished > 0
            if free:
                self._finished -= 1
            if self._idle:
                # The most recently idle thread: the warmest (LIFO).
                self._idle.pop().put(call)
                return call
            self._backlog.append(call)
            if free:
                # A thread that just finished a call takes it from the
                # backlog — unless the credit was stale: watched meanwhile.
                if not self._watching and self._has_spawner():
                    self._watching = True
                    self._spawns.put(None)
                return call
            if self._spawned == 0:
                # The first thread is started here, so a call never waits for
                # the spawner (`Thread.start` blocks until the thread runs).
                thread = self._start_thread()
                try:
                    thread.start()
                except BaseException:
                    self._threads.remove(thread)
                    self._backlog.pop()
                    raise
                self._spawned = 1
            elif self._spawned < self.max_threads and self._has_spawner():
                self._spawned += 1  # counted only once asked of a spawner
                self._spawns.put(True)
        return call

    def _has_spawner(self) -> bool:
        """Whether the spawner runs, started now if not (under the lock).

        The only other thread start the loop waits for: the spawner starts
        the rest while the loop goes on.
        """
        if self._spawner is None:
            spawner = threading.Thread(target=self._spawn_threads, name=f"{self._name} spawner")
            try:
                spawner.start()
            except RuntimeError:  # no thread to be had now: the running ones serve
                return False
            self._spawner = spawner
        return True

    def prestart(self) -> None:
        """Have the first thread started now, off the loop (for an owner about to submit calls).

        Starts the spawner, which starts the first thread, so neither start
        lands in the first `submit` (`Thread.start` blocks the loop until the
        new thread runs: 2-4 ms in a cold W2 run on the busy machine). A no-op
        once a thread was asked for, or after `close`.
        """
        with self._lock:
            if self._closed or self._spawned or self._spawner is not None:
                return
            spawner = threading.Thread(target=self._spawn_threads, name=f"{self._name} spawner")
            try:
                spawner.start()
            except RuntimeError:  # no thread to be had now: the first submit starts one
                return
            self._spawner = spawner
            self._spawned = 1
            self._spawns.put(True)

    def _start_thread(self) -> threading.Thread:
        """Add one serving thread (under the lock); the caller starts it."""
        thread = threading.Thread(target=self._serve, name=f"{self._name} {len(self._threads)}")
        self._threads.append(thread)
        return thread

    def _spawn_threads(self) -> None:
        """Start the threads `submit` asked for, off the loop, until `close`."""
        while True:
            ask = self._spawns.get()
            if ask is None:
                self._watch()
                continue
            if not ask:
                return
            with self._lock:
                if self._closed:
                    return
                if self._threads and not self._backlog:
                    # Every call so far was taken: the running threads keep
                    # up (a burst of short calls, which the GIL runs one at a
                    # time anyway). The next call that finds none idle asks again.
                    self._spawned -= 1
                    continue
                thread = self._start_thread()
            self._launched(thread)

    def _launched(self, thread: threading.Thread) -> bool:
        """Start `thread` (added under the lock); False, its slot given back, if none can be had."""
        try:
            thread.start()
        except RuntimeError:  # no thread to be had now: the running ones serve
            with self._lock:
                self._threads.remove(thread)
                self._spawned -= 1
            return False
        return True

    def _watch(self) -> None:
        """Start threads for calls left in the backlog longer than `PATIENCE` (the spawner's).

        A call queued on a finished call's credit waits for that thread to
        come back; when the credit was left over from a burst and every
        thread is in a long call, nothing would come back soon while slots
        are free. Checked every `PATIENCE` while calls wait, never otherwise.
        """
        while True:
            time.sleep(PATIENCE)
            with self._lock:
                if self._closed or not self._backlog or self._spawned >= self.max_threads:
                    self._watching = False
                    return
                if time.monotonic() - self._backlog[0].queued_at < PATIENCE:
                    continue
                self._spawned += 1
                thread = self._start_thread()
            if not self._launched(thread):
                with self._lock:
                    self._watching = False
                return

    def _next_call(self, inbox: queue.SimpleQueue[ThreadCall | None]) -> ThreadCall | None:
        """The backlog's oldest call, else (idle, on top of the stack) the next one handed over.

        None: the pool is closed and nothing waits in the backlog.
        """
        with self._lock:
            if self._backlog:
                return self._backlog.popleft()
            if self._closed:
                return None
            self._idle.append(inbox)
        return inbox.get()

    def _serve(self) -> None:
        inbox: queue.SimpleQueue[ThreadCall | None] = queue.SimpleQueue()
        while True:
            call = self._next_call(inbox)
            if call is None:
                return
            # A waiter cancelled before its call started: the call never runs.
            with self._lock:
                run = not call.future.cancelled()
                call.started = run
            if run:
                try:
                    answer: tuple[bool, Any] = (True, call.context.run(call.fn))
                except BaseException as failure:  # handed to the waiter, never lost here
                    answer = (False, failure)
                answers = call.answers
                if answers is None or not answers.answer(call.future, *answer):
                    try:
                        call.loop.call_soon_threadsafe(_settle, call.future, *answer)
                    except RuntimeError:
                        pass  # the loop closed while the call ran: nobody waits for it
                del answer, answers
            # Hold nothing of a finished call (its loop, its answer) while idle.
            del call
            with self._lock:
                self._finished += 1

    def close(self) -> None:
        """Stop the threads: idle ones at once, busy ones when the backlog is done.

        Calls already handed over still run (as before: they were queued
        ahead of the stop); no call is accepted after this.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for inbox in self._idle:
                inbox.put(None)
            self._idle.clear()
            self._spawns.put(False)
            spawner = self._spawner
        answers, self._answers = self._answers, None
        if answers is not None:
            answers.close_soon()
        # A thread the spawner is starting now finds the pool closed when it
        # runs; once the spawner is done, every thread of the pool has
        # started (a caller joining them finds them all).
        if spawner is not None and spawner is not threading.current_thread():
            spawner.join()


class HandlerThreads(LoopThreads):
    """The threads sync handlers run in; a cancelled waiter abandons its call."""

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        super().__init__(max_threads, name=THREAD_NAME, what="handler threads")

    async def run(self, fn: Callable[[], T], loop: asyncio.AbstractEventLoop | None = None) -> T:
        """Run `fn` in one of the threads, in a copy of the caller's context; await its answer.

        A caller already cancelled (a stop, a deadline or a lost lease that
        arrived while a shielded checkpoint committed) never starts `fn`.
        `loop` is the running loop, when the caller has it at hand.
        """
        if not cancelcheck.surely_not_cancelled():
            await anyio.lowlevel.checkpoint_if_cancelled()
        result: T = await self.submit(fn, loop).future
        return result


_POOLS: WeakKeyDictionary[asyncio.AbstractEventLoop, HandlerThreads] = WeakKeyDictionary()
# The last loop asked for (by weak reference) and its pool: one Engine's loop
# asks for every call, and a WeakKeyDictionary look-up builds a weak
# reference each time.
_LAST: tuple[weakref.ref[asyncio.AbstractEventLoop], HandlerThreads] | None = None


def _pool(loop: asyncio.AbstractEventLoop) -> HandlerThreads:
    global _LAST
    last = _LAST
    if last is not None and last[0]() is loop:
        return last[1]
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = HandlerThreads()
        # Closed with the run, as anyio closes its own worker threads: set up
        # before anything else can fail, so the pool never outlives its run.
        from anyio._backends._asyncio import find_root_task

        find_root_task().add_done_callback(lambda _task: _close(loop, pool))
        pool.use_answers(loop)
    _LAST = (weakref.ref(loop), pool)
    return pool


def _close(loop: asyncio.AbstractEventLoop, pool: HandlerThreads) -> None:
    global _LAST
    pool.close()
    if _LAST is not None and _LAST[1] is pool:
        _LAST = None
    if _POOLS.get(loop) is pool:
        del _POOLS[loop]


def prestart_threads() -> None:
    """Start this event loop's handler threads' first thread, off the loop (see `prestart`).

    An Engine whose worker runs here calls it at start. Off asyncio (trio)
    `run_in_thread` uses anyio's threads: nothing to do.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    _pool(loop).prestart()


async def run_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread; whatever it raises propagates.

    Cancellation stops the wait, not the call (a call not yet started never runs).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        call = functools.partial(fn, *args) if args else fn
        return await anyio.to_thread.run_sync(
            functools.partial(_without_stop_iteration, call), abandon_on_cancel=True
        )
    return await _pool(loop).run(functools.partial(fn, *args) if args else fn, loop)
