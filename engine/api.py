"""`Engine`: the embedding API, and the one object the CLI drives too.

Async: ``async with Engine(url) as engine: …``. Plain code: ``with
Engine(url) as engine: engine.start_sync(…)`` — every coroutine method has
a ``_sync`` twin that runs it on the engine's own event-loop thread.

By default an Engine also runs a worker in-process (the embedded model:
start and wait just work); pass ``worker=False`` for a client that only
starts, inspects and stops executions that separate `stepwise worker`
processes run. Starting, stopping, describing and listing executions are
the lifecycle's (`engine.lifecycle`); the Engine wires it to its store and
clock, and owns what needs a runtime: waiting, and running one execution
here (`run`, `resume`, and carrying out `stop`) through the worker's claim
path. Schedules (`create_schedule` and its kin) are `engine.scheduling`'s and
alerts (`engine.alerts`) are `Engine.alerts`; the in-process worker runs
the scheduler and alert-delivery loops beside the claim loop. An
Engine starts executions on, and its worker claims from, one queue
(``default`` unless `queue` names another); `run` uses a private queue so
that no other worker takes its execution. State machines, versions and
aliases are `MachineApi`'s, Map Runs `MapRunApi`'s, schedules, alerts and
triggers `ScheduleApi`'s: mixins the Engine supplies a store, clock and
lifecycle to; TestState is `TestStateApi`'s.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, ExitStack, nullcontext
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import msgspec

from activities.handler_threads import prestart_threads
from activities.registry import Handler, Registry, default_registry
from engine import telemetry
from engine.alerts import TIMEOUT_SECONDS, AlertDeliverer, Alerts
from engine.callbacks import TaskCallbacks
from engine.clock import Clock, SystemClock
from engine.committer import Committer
from engine.journal import history_event_limit
from engine.lifecycle import NO_INPUT, Lifecycle
from engine.machine_api import MachineApi, stored_value
from engine.map_run_api import PENDING_REDRIVE, MapRunApi
from engine.mixins import entered
from engine.names import check_name
from engine.runner import FinishWatch, Runtime
from engine.sandbox import Sandbox
from engine.schedule_api import ScheduleApi
from engine.scheduling.scheduler import Scheduler
from engine.store import (
    DEFAULT_QUEUE,
    REDRIVE_WINDOW,
    CommitConflict,
    Event,
    ExecutionRecord,
    ExecutionStatus,
    LeaseLost,
    Store,
    default_database_url,
)
from engine.storethreads import StoreThreads
from engine.teststate_api import TestStateApi
from engine.triggers import FolderWatcher, Triggers
from engine.worker import (
    LeaseKeeper,
    Retention,
    StopWatcher,
    Worker,
    retention_setting,
)
from statemachine.build import load, parse_definition

if TYPE_CHECKING:  # loaded on first use (`_open_schedules`)
    from engine.scheduling.service import Schedules

__all__ = ["Engine"]

T = TypeVar("T")
P = ParamSpec("P")

# What `wait` waits through: running, or a Map Run child its redriven run will reopen.
_NOT_ENDED = frozenset({ExecutionStatus.RUNNING.value, PENDING_REDRIVE})


def _sync_twin(
    method: Callable[Concatenate[Engine, P], Awaitable[T]],
) -> Callable[Concatenate[Engine, P], T]:
    """The plain-code twin of an async Engine method: same parameters, run on the engine's loop."""

    def twin(self: Engine, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._call(method, self, *args, **kwargs)

    twin.__name__ = twin.__qualname__ = f"{method.__name__}_sync"
    twin.__doc__ = f"`{method.__name__}` for plain code, inside ``with Engine(...)``."
    return twin


def _on_asyncio() -> bool:
    """Whether this runs on asyncio (trio, which the tests also use, keeps anyio's threads)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# Whether `_freeze_started_heap` has frozen this process's heap.
_heap_frozen = False


def _freeze_started_heap() -> None:
    """Once per process, when the first Engine has started: `gc.freeze` what is alive.

    What is loaded and built by then (modules, SQLAlchemy, the store, the
    engine's machinery) lives as long as the process and holds next to no
    cyclic garbage, yet every full collection walked all of it: a Map's
    iterations or many executions at once promote enough objects to set one
    off every few runs (W2 on PostgreSQL: ~4 ms of a ~30 ms run's CPU, see
    benchmarks/PROFILE_STORE.md). Frozen objects are still freed by their
    reference counts; the CLI's start-up (`engine.cli.core.end_startup`)
    freezes what it loaded the same way. `STEPWISE_GC_FREEZE=0` turns it off.
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        # An application that wants every cycle collected opts out.
        if os.environ.get("STEPWISE_GC_FREEZE", "1") != "0":
            gc.freeze()


class Engine(TaskCallbacks, MachineApi, MapRunApi, ScheduleApi, TestStateApi):
    """A Stepwise engine bound to one database."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        registry: Registry | None = None,
        clock: Clock | None = None,
        worker: bool = True,
        concurrency: int = 16,
        lease_seconds: float = 30.0,
        hold_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        worker_id: str | None = None,
        inline_store: bool = False,
        queue: str = DEFAULT_QUEUE,
        max_history_events: int | None = None,
        retention_days: float | None = None,
        redrive_window: timedelta = REDRIVE_WINDOW,
    ) -> None:
        """Bind to `database_url` (None: $STEPWISE_DATABASE_URL or ./stepwise.db).

        `redrive_window` is how long after it closed an execution may be
        redriven (AWS's 14 days by default).

        `queue` is where `start` puts executions unless told otherwise and
        the one queue the in-process worker claims from (``default``).
        Raises InvalidName for a queue name that breaks AWS's name rules.

        `inline_store` runs store calls on the event-loop thread instead of a
        worker thread: slower, but a mocked loop clock (trio's MockClock with
        autojump) then only jumps when the engine really waits, which makes
        time-dependent tests exact. Leave it off in production.
        `max_history_events` (None: $STEPWISE_MAX_HISTORY_EVENTS, else AWS's
        25,000) fails an execution that reaches it, as AWS does.
        `retention_days` (None: $STEPWISE_RETENTION_DAYS, else keep
        everything) makes the in-process worker purge closed executions
        older than that, in small batches (`engine.worker.Retention`).
        """
        self.database_url = database_url or default_database_url()
        self.registry = Registry().merged(default_registry).merged(registry or Registry())
        self.clock = clock or SystemClock()
        self.run_worker_in_process = worker
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.hold_seconds = hold_seconds
        self.poll_seconds = poll_seconds
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self.inline_store = inline_store
        check_name(queue, what="queue")
        self.queue = queue
        self.max_history_events = history_event_limit(max_history_events)
        self.retention_days = retention_setting(retention_days)
        self.redrive_window = redrive_window
        self._store: Store | None = None
        self._runtime: Runtime | None = None
        self._stack: AsyncExitStack | None = None
        self._sync_stack: ExitStack | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._db_limiter: anyio.CapacityLimiter | None = None
        # The threads store calls run in, on asyncio (`_run_db`); None: anyio's.
        self._db_threads: StoreThreads | None = None
        self._lifecycle: Lifecycle | None = None
        self.worker: Worker | None = None
        self.scheduler: Scheduler | None = None
        self.alert_deliverer: AlertDeliverer | None = None
        self._alerts: Alerts | None = None
        self._triggers: Triggers | None = None
        self.folder_watcher: FolderWatcher | None = None
        self._schedules: Schedules | None = None
        # While `__aenter__` waits for the background loops' first store
        # calls (`_first_rounds`): one event per call made meanwhile, set when
        # it returns. None otherwise (a store call then pays nothing for it).
        self._first_calls: list[anyio.Event] | None = None

    # -- lifecycle -----------------------------------------------------------
    async def __aenter__(self) -> Engine:
        slots = 1 if self.database_url.startswith("sqlite") else 8
        self._db_limiter = anyio.CapacityLimiter(slots)
        if not self.inline_store and _on_asyncio():
            self._db_threads = StoreThreads.for_this_run(slots)
        try:
            self._store = await self._run_db(Store, self.database_url)
        except BaseException:
            self._close_threads()  # unreachable database: nothing else to close
            raise
        stack = AsyncExitStack()
        await stack.__aenter__()
        self._stack = stack
        stack.push_async_callback(self._close_store)
        committer = Committer(
            self._store, worker_id=self.worker_id, clock=self.clock, run_db=self._run_db
        )
        if self._db_threads is not None:  # PostgreSQL: step commits sent from this loop
            stack.push_async_callback(committer.send_from_loop())
        self._runtime = Runtime(
            store=self._store,
            clock=self.clock,
            registry=self.registry,
            committer=committer,
            worker_id=self.worker_id,
            run_db=self._run_db,
            lease_seconds=self.lease_seconds,
            hold_seconds=self.hold_seconds,
            max_history_events=self.max_history_events,
        )
        sandbox = Sandbox()
        stack.callback(sandbox.close)
        self._runtime.sandbox = sandbox
        self._lifecycle = Lifecycle(
            store=self._store,
            clock=self.clock,
            run_db=self._run_db,
            redrive_window=self.redrive_window,
        )
        if self._db_threads is not None:  # PostgreSQL: starts sent from this loop
            stack.push_async_callback(self._lifecycle.send_starts_from_loop())
        if self.run_worker_in_process:
            self.scheduler = Scheduler(
                store=self._store,
                lifecycle=self._lifecycle,
                clock=self.clock,
                run_db=self._run_db,
                worker_id=self.worker_id,
                lease_seconds=self.lease_seconds,
            )
        self._alerts = Alerts(store=self._store, clock=self.clock, run_db=self._run_db)
        self._triggers = Triggers(
            store=self._store, lifecycle=self._lifecycle, clock=self.clock, run_db=self._run_db
        )
        if self.run_worker_in_process:
            self.alert_deliverer = AlertDeliverer(
                store=self._store,
                lifecycle=self._lifecycle,
                clock=self.clock,
                run_db=self._run_db,
                worker_id=self.worker_id,
                # Held for one attempt: the lease outlives the webhook's timeout.
                lease_seconds=self.lease_seconds + 2 * TIMEOUT_SECONDS,
            )
        self._schedules = None  # built on first use (`_open_schedules`)
        self._keeper = LeaseKeeper(self._runtime)
        keeper = self._keeper
        telemetry.watch_leases(lambda: len(keeper.held))
        group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(group.cancel_scope.cancel)
        settle = self.run_worker_in_process and self._db_threads is not None
        # Only where the first calls open the pool's connections (PostgreSQL's
        # eight slots): SQLite's one connection is open already, and its
        # first calls would only queue one after another in its one slot.
        if settle and slots > 1:
            self._first_calls = []
        group.start_soon(committer.run)
        group.start_soon(self._keeper.run)
        group.start_soon(StopWatcher(self._runtime).run)
        if self.run_worker_in_process:
            self.worker = Worker(
                self._runtime,
                self._keeper,
                concurrency=self.concurrency,
                poll_seconds=self.poll_seconds,
                queue=self.queue,
            )
            group.start_soon(self.worker.run)
            # Starts on its queue go straight to it while it has room (engine/handoff.py).
            self._lifecycle.hand_starts_to(self.worker)
            if self.retention_days is not None:
                group.start_soon(Retention(self._runtime, days=self.retention_days).run)
        if self.scheduler is not None:
            group.start_soon(self.scheduler.run)
        if self.alert_deliverer is not None:
            group.start_soon(self.alert_deliverer.run)
            self.folder_watcher = FolderWatcher(
                store=self._store, lifecycle=self._lifecycle, clock=self.clock, run_db=self._run_db
            )
            group.start_soon(self.folder_watcher.run)
        if settle:
            # The start path's and the sync handlers' one-time set-up, beside
            # the loops' first calls (an engine that runs work needs both).
            prestart_threads()
            group.start_soon(self._run_db, self._store.prepare_starts)
            # PostgreSQL: the loop's commit and start connections, beside them.
            async with anyio.create_task_group() as connecting:
                connecting.start_soon(committer.connect)
                connecting.start_soon(self._lifecycle.connect_starts)
            if self._first_calls is not None:
                await self._first_rounds()
        _freeze_started_heap()
        return self

    def _open_schedules(self) -> Schedules:
        from engine.scheduling.service import Schedules

        poke = self.scheduler.poke if self.scheduler else None
        return Schedules(self.store, self.lifecycle, self.clock, self._run_db, poke=poke)

    # How many times `_first_rounds` waits for the calls made meanwhile.
    _FIRST_ROUNDS = 2

    async def _first_rounds(self) -> None:
        """Wait for the first store calls of the loops just started (worker, scheduler, alerts).

        On PostgreSQL, with a worker in this process. Each loop's first
        pass (a claim, the due-time reads of schedules and alerts, the
        watched folders)
        opens the pool's connections and runs each statement for the first
        time: an engine that runs work pays for it
        at once, as a pool opening its minimum connections does. Paid here,
        it does not land in the engine's first execution, where it ran
        beside that execution's start and first commits. Two rounds (a
        pass's follow-up call, such as the claim of a due schedule, is the
        second); only the calls made while this waits are waited for, so a
        backlog of due work never holds the start up. A failed call (the
        store away) ends its wait as any answer does: its loop retries as
        always.
        """
        try:
            for _ in range(self._FIRST_ROUNDS):
                await anyio.lowlevel.checkpoint()  # each loop makes its next call
                calls = self._first_calls or []
                if not calls:
                    return
                self._first_calls = []
                for answered in calls:
                    await answered.wait()
        finally:
            self._first_calls = None

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(None, None, None)

    async def _close_store(self) -> None:
        try:
            if self._store is not None:
                await self._run_db(self._store.close)
                self._store = None
        finally:
            self._close_threads()

    def _close_threads(self) -> None:
        threads, self._db_threads = self._db_threads, None
        if threads is not None:
            threads.close()

    def __enter__(self) -> Engine:
        self._sync_stack = ExitStack()
        self._portal = self._sync_stack.enter_context(anyio.from_thread.start_blocking_portal())
        # The engine's task group must be entered and left by one task: a
        # long-lived portal task holds it while the _sync calls come and go.
        self._held, _ = self._portal.start_task(self._hold_open)
        return self

    async def _hold_open(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with self:
            self._closing = anyio.Event()
            task_status.started()
            await self._closing.wait()

    def __exit__(self, *exc: object) -> None:
        try:
            if self._portal is not None:
                self._portal.call(self._closing.set)
                self._held.result()
        finally:
            if self._sync_stack is not None:
                self._sync_stack.close()
            self._portal = None

    async def _run_db(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        cancellable: bool = False,
        idle: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run a blocking store call on a worker thread (or inline, see `inline_store`).

        `idle=True` marks the worker's wait for new work (`Store.wait_for_work`,
        its first argument the timeout): it must never hold a database slot —
        on SQLite the limiter has one, and every commit would queue behind the
        poll — and with `inline_store` it is a plain sleep.
        """
        if self.inline_store:
            if idle:
                await anyio.sleep(float(args[0]) if args else self.poll_seconds)
                return None  # type: ignore[return-value]
            return fn(*args, **kwargs)
        if idle:
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args, **kwargs), abandon_on_cancel=True
            )
        first_calls = self._first_calls
        if first_calls is not None:
            answered = anyio.Event()
            first_calls.append(answered)
            try:
                return await self._run_db_now(fn, args, kwargs, cancellable)
            finally:
                answered.set()
        return await self._run_db_now(fn, args, kwargs, cancellable)

    async def _run_db_now(
        self, fn: Callable[..., T], args: Any, kwargs: Any, cancellable: bool
    ) -> T:
        """`_run_db` for a store call that is not the worker's idle wait."""
        threads = self._db_threads
        if threads is not None:
            # The store's own threads, as many as its slots, first come first
            # served like the limiter, cancellation as anyio's (engine/storethreads.py).
            return await threads.call(
                functools.partial(fn, *args, **kwargs), cancellable=cancellable
            )
        return await anyio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs),
            limiter=self._db_limiter,
            abandon_on_cancel=cancellable,
        )

    @property
    def store(self) -> Store:
        return entered(self._store)

    @property
    def lifecycle(self) -> Lifecycle:
        """The executions' lifecycle (start, stop, describe, list) on this engine's store."""
        return entered(self._lifecycle)

    @property
    def runtime(self) -> Runtime:
        return entered(self._runtime)

    # -- activities ----------------------------------------------------------
    def register_activity(self, resource: str, handler: Handler) -> None:
        """Bind a Task Resource (name, ARN or `*` pattern) to a handler for this engine."""
        self.registry.register(resource, handler)

    def _test_engine(self, url: str, registry: Registry) -> Engine:
        """TestState's engine (`TestStateApi`): on `url`, with `registry`, without a worker."""
        return Engine(url, registry=registry, worker=False)

    # -- executions ----------------------------------------------------------
    async def start(
        self,
        machine: str,
        input: Any = NO_INPUT,
        *,
        name: str | None = None,
        queue: str | None = None,
    ) -> ExecutionRecord:
        """Start an execution of the latest version of `machine` on `queue` (None: the engine's).

        Only a worker on that queue runs it. Without `input` the input is
        ``{}``; None is JSON null. The same `name` with the same input
        returns the existing execution; with a different input it raises
        ExecutionAlreadyExists.
        """
        # A process that starts executions may wait on them after they end.
        self.runtime.kept_ends.enabled = True
        return await self.lifecycle.start(machine, input, name=name, queue=queue or self.queue)

    async def describe(self, execution: str | ExecutionRecord) -> ExecutionRecord:
        """The execution by its executionArn or (when unambiguous) its name.

        A Map Run child waiting for its redriven run is ``PENDING_REDRIVE``.
        """
        (record,) = await self.with_pending_redrive([await self.lifecycle.describe(execution)])
        return record

    async def history(self, execution: str | ExecutionRecord) -> list[Event]:
        return await self.lifecycle.history(execution)

    async def list_executions(
        self,
        *,
        machine: str | None = None,
        status: str | None = None,
        redrive_filter: str | None = None,
    ) -> list[ExecutionRecord]:
        """Up to 1000 executions, newest first (`list_executions_page` pages through all).

        `redrive_filter` REDRIVEN or NOT_REDRIVEN keeps executions redriven at least once, or never.
        """
        items, _ = await self.lifecycle.list_executions(
            machine=machine, status=status, max_results=1000, redrive_filter=redrive_filter
        )
        return items

    async def list_executions_page(
        self,
        *,
        machine: str | None = None,
        status: str | None = None,
        max_results: int = 100,
        next_token: str | None = None,
        redrive_filter: str | None = None,
    ) -> tuple[list[ExecutionRecord], str | None]:
        """One page of executions, newest first, and the next page's token (None at the end).

        See `Lifecycle.list_executions`: `max_results` is 1 to 1000, and a
        token from another listing raises InvalidToken.
        """
        return await self.lifecycle.list_executions(
            machine=machine,
            status=status,
            max_results=max_results,
            next_token=next_token,
            redrive_filter=redrive_filter,
        )

    async def redrive(
        self, execution: str | ExecutionRecord, *, client_token: str | None = None
    ) -> ExecutionRecord:
        """Redrive a FAILED, TIMED_OUT or ABORTED execution from the step that did not succeed.

        Returns its record, RUNNING again; this engine's worker (or any
        worker on its queue) runs it on. What succeeded is not run again.
        Raises ExecutionNotRedrivable with AWS's reason (see `Lifecycle.redrive`).
        """
        return await self.lifecycle.redrive(execution, client_token=client_token)

    async def redrive_status(self, execution: str | ExecutionRecord) -> tuple[str, str | None]:
        """AWS's (redriveStatus, redriveStatusReason) of the execution now."""
        return await self.lifecycle.redrive_status(await self.describe(execution))

    async def stop(
        self,
        execution: str | ExecutionRecord,
        *,
        error: str | None = None,
        cause: str | None = None,
    ) -> ExecutionRecord:
        """Abort a running execution (a running task is cancelled); returns its final record.

        When no worker holds it, the stop is carried out here and now.
        """
        record = await self.lifecycle.stop(execution, error=error, cause=cause)
        return await self._drive(record.execution_id, hold_seconds=0.0, until_stable=True)

    async def wait(
        self, execution: str | ExecutionRecord, *, timeout: float | None = None
    ) -> ExecutionRecord:
        """Wait until the execution has ended; returns its final record.

        Without an in-process worker this only watches; some worker must run it.
        Given the record `start` returned, an execution that SUCCEEDED here in
        the last minute is answered from its end's own commit (a SUCCEEDED
        execution never changes; if another process purged it since, that
        final record is still what this returns).
        """
        runtime = self.runtime
        finished = runtime.finished
        ref = execution.execution_id if isinstance(execution, ExecutionRecord) else execution
        watch: FinishWatch | None = None
        if isinstance(execution, ExecutionRecord):
            kept = runtime.kept_ends.take(execution)
            if kept is not None:
                return kept  # it ended here (SUCCEEDED) before this wait: no describe
        try:
            with anyio.fail_after(timeout) if timeout is not None else nullcontext():
                record: ExecutionRecord | None = None
                if not self._running_here(ref):
                    record = await self.describe(execution)
                    ref = record.execution_id
                while record is None or record.status in _NOT_ENDED:
                    # Answered at once when this process finishes it (with the record
                    # its finishing commit read back); polled when another process
                    # (a remote worker) does.
                    if watch is None:
                        watch = finished.setdefault(ref, FinishWatch())
                        watch.waiters += 1
                    with anyio.move_on_after(0.25):
                        await watch.event.wait()
                    if watch.event.is_set():
                        # The finishing checkpoint took it out of `finished`: a
                        # later wait (after a redrive) gets a fresh one.
                        done, watch = watch, None
                        done.waiters -= 1
                        if done.record is not None:
                            record = done.record
                            continue
                    record = await self.describe(ref)
        finally:
            # A wait that ends any other way (a timeout, a cancellation, a
            # describe that found the end) leaves no watch nobody waits on.
            if watch is not None:
                watch.waiters -= 1
                if watch.waiters == 0 and finished.get(ref) is watch:
                    del finished[ref]
        return record

    def _running_here(self, execution_id: str) -> bool:
        """Whether this process runs `execution_id` now and has not committed its end yet.

        Its finishing checkpoint will then answer a `FinishWatch` registered
        now (no await between this check and the registration), so a wait
        needs no describe first. Anything else (a name, a run elsewhere, an
        end already committed) describes as before.
        """
        keeper = getattr(self, "_keeper", None)
        return (
            keeper is not None
            and execution_id in keeper.held
            and execution_id not in self.runtime.ended
        )

    async def run(
        self,
        definition: str | Mapping[str, Any],
        input: Any = NO_INPUT,
        *,
        name: str | None = None,
        machine_name: str | None = None,
    ) -> ExecutionRecord:
        """Validate `definition`, start one execution and run it to its end in this process.

        The execution goes on a private queue (``run-<hex>``, shown by
        `describe`), so no worker — not this engine's, not another
        process's lacking its handlers — ever claims it. Should this
        process die, `resume` (``stepwise run --resume``), or a worker on
        that queue, finishes it.
        """
        raw = parse_definition(definition)
        load(raw)
        text = msgspec.json.encode(raw).decode()
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        machine = machine_name or f"run-{digest}"
        await self._put_machine(machine, text, "STANDARD", stored_value(raw, text))
        record = await self.lifecycle.start(
            machine, input, name=name, queue=f"run-{uuid.uuid4().hex}"
        )
        return await self._drive(record.execution_id, hold_seconds=float("inf"))

    async def resume(self, execution: str | ExecutionRecord) -> ExecutionRecord:
        """Run an existing execution to its end here, whatever its queue; return its final record.

        For an execution whose `run` process died: it is taken over as soon
        as its lease is free (at once after a clean exit, at the latest when
        the dead process's lease expires) and replayed from its journal, so
        no recorded step runs again. A closed execution's record is returned
        as it is. Raises ExecutionDoesNotExist and AmbiguousExecution.
        """
        record = await self.describe(execution)
        return await self._drive(record.execution_id, hold_seconds=float("inf"))

    async def _drive(
        self, execution_id: str, *, hold_seconds: float, until_stable: bool = False
    ) -> ExecutionRecord:
        """Run one execution here whenever its lease is free, until it ends.

        It goes through the same claim path as the in-process worker
        (`LeaseKeeper.reserve` and `run_one`): the worker shares our worker
        id, so the keeper's local table is what keeps us from both running it.
        """
        while True:
            record = await self.describe(execution_id)
            if record.status != ExecutionStatus.RUNNING:
                return record
            due: datetime | None = None
            claimed = False
            scope = self._keeper.reserve(execution_id)
            if scope is not None:
                try:
                    ran = await self._keeper.run_one(
                        execution_id, scope, leased=False, hold_seconds=hold_seconds
                    )
                except (LeaseLost, CommitConflict):
                    ran = None
                if ran is not None and ran.claimed:
                    claimed = True
                    if ran.activation is not None:
                        due = ran.activation.due_at
                        if ran.activation.status != ExecutionStatus.RUNNING:
                            continue
                        if until_stable:
                            return await self.describe(execution_id)
            if claimed:
                await self._wait_running_children(execution_id, due)
            else:
                # Someone else holds it now (a worker, or our own in-process one).
                await anyio.sleep(0.1)

    # -- plain-code twins ----------------------------------------------------
    def _call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self._portal is None:
            raise RuntimeError("use the _sync methods inside 'with Engine(...) as engine:'")
        return self._portal.call(functools.partial(fn, *args, **kwargs))

    create_state_machine_sync = _sync_twin(MachineApi.create_state_machine)
    start_sync = _sync_twin(start)
    wait_sync = _sync_twin(wait)
    run_sync = _sync_twin(run)
    resume_sync = _sync_twin(resume)
    describe_sync = _sync_twin(describe)
    history_sync = _sync_twin(history)
    stop_sync = _sync_twin(stop)
    list_executions_sync = _sync_twin(list_executions)
    list_executions_page_sync = _sync_twin(list_executions_page)
    redrive_sync = _sync_twin(redrive)
    test_state_sync = _sync_twin(TestStateApi.test_state)
    test_state_request_sync = _sync_twin(TestStateApi.test_state_request)
    update_state_machine_sync = _sync_twin(MachineApi.update_state_machine)
    publish_version_sync = _sync_twin(MachineApi.publish_version)
    list_versions_sync = _sync_twin(MachineApi.list_versions)
    delete_version_sync = _sync_twin(MachineApi.delete_version)
    delete_state_machine_sync = _sync_twin(MachineApi.delete_state_machine)
    create_alias_sync = _sync_twin(MachineApi.create_alias)
    update_alias_sync = _sync_twin(MachineApi.update_alias)
    describe_alias_sync = _sync_twin(MachineApi.describe_alias)
    list_aliases_sync = _sync_twin(MachineApi.list_aliases)
    delete_alias_sync = _sync_twin(MachineApi.delete_alias)
    redrive_status_sync = _sync_twin(redrive_status)
    describe_map_run_sync = _sync_twin(MapRunApi.describe_map_run)
    list_map_runs_sync = _sync_twin(MapRunApi.list_map_runs)
    update_map_run_sync = _sync_twin(MapRunApi.update_map_run)
    list_map_run_executions_sync = _sync_twin(MapRunApi.list_map_run_executions)
    # mypy cannot rule out a `self=` among **options; the twins pass them through unchanged.
    create_schedule_sync = _sync_twin(ScheduleApi.create_schedule)  # type: ignore[arg-type]
    update_schedule_sync = _sync_twin(ScheduleApi.update_schedule)  # type: ignore[arg-type]
    describe_schedule_sync = _sync_twin(ScheduleApi.describe_schedule)
    list_schedules_sync = _sync_twin(ScheduleApi.list_schedules)
    pause_schedule_sync = _sync_twin(ScheduleApi.pause_schedule)
    resume_schedule_sync = _sync_twin(ScheduleApi.resume_schedule)
    delete_schedule_sync = _sync_twin(ScheduleApi.delete_schedule)
    trigger_schedule_sync = _sync_twin(ScheduleApi.trigger_schedule)
    backfill_schedule_sync = _sync_twin(ScheduleApi.backfill_schedule)
