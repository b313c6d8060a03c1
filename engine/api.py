"""`Engine`: the embedding API, and the one object the CLI drives too.

Async: ``async with Engine(url) as engine: …``. Plain code: ``with
Engine(url) as engine: engine.start_sync(…)`` — every coroutine method has
a ``_sync`` twin that runs it on the engine's own event-loop thread.

By default an Engine also runs a worker in-process (the embedded model:
start and wait just work); pass ``worker=False`` for a client that only
starts, inspects and stops executions that separate `stepwise worker`
processes run.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import uuid
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack, ExitStack
from datetime import datetime
from typing import Any, TypeVar, cast

import anyio
import anyio.from_thread
import msgspec

from activities.registry import Handler, Registry, default_registry
from engine import telemetry
from engine.callbacks import TaskCallbacks
from engine.clock import Clock, SystemClock
from engine.committer import Committer
from engine.errors import InvalidExecutionInput
from engine.names import check_name
from engine.runner import Runtime, activate, execution_arn, machine_arn
from engine.sandbox import Sandbox
from engine.states.common import MAX_PAYLOAD_BYTES
from engine.store import (
    CommitConflict,
    Event,
    ExecutionRecord,
    ExecutionStatus,
    LeaseLost,
    MachineVersion,
    Store,
    default_database_url,
)
from engine.worker import LeaseKeeper, StopWatcher, Worker
from statemachine.build import load, parse_definition

__all__ = ["Engine"]

T = TypeVar("T")


class Engine(TaskCallbacks):
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
    ) -> None:
        """Bind to `database_url` (None: $STEPWISE_DATABASE_URL or ./stepwise.db).

        `inline_store` runs store calls on the event-loop thread instead of a
        worker thread: slower, but a mocked loop clock (trio's MockClock with
        autojump) then only jumps when the engine really waits, which makes
        time-dependent tests exact. Leave it off in production.
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
        self._store: Store | None = None
        self._runtime: Runtime | None = None
        self._stack: AsyncExitStack | None = None
        self._sync_stack: ExitStack | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._db_limiter: anyio.CapacityLimiter | None = None
        self.worker: Worker | None = None

    # -- lifecycle -----------------------------------------------------------
    async def __aenter__(self) -> Engine:
        self._db_limiter = anyio.CapacityLimiter(1 if self.database_url.startswith("sqlite") else 8)
        self._store = await self._run_db(Store, self.database_url)
        stack = AsyncExitStack()
        await stack.__aenter__()
        self._stack = stack
        stack.push_async_callback(self._close_store)
        committer = Committer(
            self._store, worker_id=self.worker_id, clock=self.clock, run_db=self._run_db
        )
        self._runtime = Runtime(
            store=self._store,
            clock=self.clock,
            registry=self.registry,
            committer=committer,
            worker_id=self.worker_id,
            run_db=self._run_db,
            lease_seconds=self.lease_seconds,
            hold_seconds=self.hold_seconds,
        )
        sandbox = Sandbox()
        stack.callback(sandbox.close)
        self._runtime.sandbox = sandbox
        self._keeper = LeaseKeeper(self._runtime)
        keeper = self._keeper
        telemetry.watch_leases(lambda: len(keeper.held))
        group = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(group.cancel_scope.cancel)
        group.start_soon(committer.run)
        group.start_soon(self._keeper.run)
        group.start_soon(StopWatcher(self._runtime).run)
        if self.run_worker_in_process:
            self.worker = Worker(
                self._runtime,
                self._keeper,
                concurrency=self.concurrency,
                poll_seconds=self.poll_seconds,
            )
            group.start_soon(self.worker.run)
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(None, None, None)

    async def _close_store(self) -> None:
        if self._store is not None:
            await self._run_db(self._store.close)
            self._store = None

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
        self, fn: Callable[..., T], /, *args: Any, cancellable: bool = False, **kwargs: Any
    ) -> T:
        waiting = getattr(fn, "__name__", "") == "wait_for_work"
        if self.inline_store:
            if waiting:
                await anyio.sleep(float(args[0]) if args else self.poll_seconds)
                return None  # type: ignore[return-value]
            return fn(*args, **kwargs)
        if waiting:
            # Waiting for work must never hold a database slot: on SQLite the
            # limiter has one, and every commit would queue behind the poll.
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args, **kwargs), abandon_on_cancel=True
            )
        return await anyio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs),
            limiter=self._db_limiter,
            abandon_on_cancel=cancellable,
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError(
                "use the Engine inside 'async with Engine(...)' or 'with Engine(...)'"
            )
        return self._store

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError(
                "use the Engine inside 'async with Engine(...)' or 'with Engine(...)'"
            )
        return self._runtime

    # -- activities ----------------------------------------------------------
    def register_activity(self, resource: str, handler: Handler) -> None:
        """Bind a Task Resource (name, ARN or `*` pattern) to a handler for this engine."""
        self.registry.register(resource, handler)

    # -- state machines ------------------------------------------------------
    async def create_state_machine(
        self, name: str, definition: str | Mapping[str, Any], *, machine_type: str = "STANDARD"
    ) -> MachineVersion:
        """Validate `definition` and store it; a changed definition becomes a new version.

        Raises DefinitionError (with every diagnostic) when it is invalid.
        """
        check_name(name, what="state machine")
        raw = parse_definition(definition)
        load(raw, machine_type=machine_type)  # type: ignore[arg-type]
        text = msgspec.json.encode(raw).decode()
        return await self._run_db(self.store.put_state_machine, name, text, machine_type)

    async def describe_state_machine(self, name: str) -> MachineVersion:
        return await self._run_db(self.store.get_state_machine, name)

    async def list_state_machines(self) -> list[MachineVersion]:
        return await self._run_db(self.store.list_state_machines)

    # -- executions ----------------------------------------------------------
    async def start(
        self, machine: str, input: Any = None, *, name: str | None = None
    ) -> ExecutionRecord:
        """Start an execution of the latest version of `machine`.

        The same `name` with the same input returns the existing execution;
        with a different input it raises ExecutionAlreadyExists.
        """
        version = await self._run_db(self.store.get_state_machine, machine)
        name = name or str(uuid.uuid4())
        check_name(name, what="execution")
        try:
            payload = msgspec.json.encode({} if input is None else input).decode()
        except (TypeError, msgspec.EncodeError) as exc:
            raise InvalidExecutionInput(f"Invalid execution input: {exc}") from None
        if len(payload.encode()) > MAX_PAYLOAD_BYTES:
            raise InvalidExecutionInput(
                f"Invalid execution input: {len(payload.encode())} bytes, over the "
                f"{MAX_PAYLOAD_BYTES}-byte limit"
            )
        now = self.clock.now()
        execution_id = execution_arn(machine, name)
        first = Event(
            event_id=1,
            previous_event_id=0,
            type="ExecutionStarted",
            timestamp=now,
            details={
                "input": payload,
                "inputDetails": {"truncated": False},
                "roleArn": "arn:aws:iam::000000000000:role/stepwise",
                "stateMachineVersionArn": f"{machine_arn(machine)}:{version.version}",
            },
        )
        record, created = await self._run_db(
            self.store.create_execution,
            execution_id=execution_id,
            name=name,
            machine=version,
            input=payload,
            start_date=now,
            trace_id=secrets.token_hex(16),
            first_event=first,
        )
        if created:
            telemetry.on_commit(record, [first])
        return record

    async def describe(self, execution: str | ExecutionRecord) -> ExecutionRecord:
        """The execution by its executionArn or (when unambiguous) its name."""
        ref = execution.execution_id if isinstance(execution, ExecutionRecord) else execution
        return await self._run_db(self.store.get_execution, ref)

    async def history(self, execution: str | ExecutionRecord) -> list[Event]:
        record = await self.describe(execution)
        return await self._run_db(self.store.history, record.execution_id)

    async def list_executions(
        self, *, machine: str | None = None, status: str | None = None
    ) -> list[ExecutionRecord]:
        return await self._run_db(self.store.list_executions, machine=machine, status=status)

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
        record = await self.describe(execution)
        await self._run_db(
            self.store.request_stop,
            record.execution_id,
            error=error,
            cause=cause,
            now=self.clock.now(),
        )
        return await self._drive(record.execution_id, hold_seconds=0.0, until_stable=True)

    async def wait(
        self, execution: str | ExecutionRecord, *, timeout: float | None = None
    ) -> ExecutionRecord:
        """Wait until the execution has ended; returns its final record.

        Without an in-process worker this only watches; some worker must run it.
        """
        record = await self.describe(execution)
        finished = self.runtime.finished
        with anyio.fail_after(timeout):
            while record.status == ExecutionStatus.RUNNING:
                # Woken at once when this process finishes it; polled when
                # another process (a remote worker) does.
                event = finished.setdefault(record.execution_id, anyio.Event())
                with anyio.move_on_after(0.25):
                    await event.wait()
                record = await self.describe(record.execution_id)
        finished.pop(record.execution_id, None)
        return record

    async def run(
        self,
        definition: str | Mapping[str, Any],
        input: Any = None,
        *,
        name: str | None = None,
        machine_name: str | None = None,
    ) -> ExecutionRecord:
        """Validate `definition`, start one execution and run it to its end in this process."""
        raw = parse_definition(definition)
        load(raw)
        text = msgspec.json.encode(raw).decode()
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        machine = machine_name or f"run-{digest}"
        await self._run_db(self.store.put_state_machine, machine, text, "STANDARD")
        record = await self.start(machine, input, name=name)
        return await self._drive(record.execution_id, hold_seconds=float("inf"))

    async def _drive(
        self, execution_id: str, *, hold_seconds: float, until_stable: bool = False
    ) -> ExecutionRecord:
        """Run one execution here whenever its lease is free, until it ends."""
        runtime = self.runtime
        while True:
            record = await self._run_db(self.store.get_execution, execution_id)
            if record.status != ExecutionStatus.RUNNING:
                return record
            due: datetime | None = None
            claimed = False
            if execution_id not in self._keeper.held:
                # Reserve it in this process first: the in-process worker shares
                # our worker id, so the local table is what keeps us from both
                # running it.
                scope = anyio.CancelScope()
                self._keeper.held[execution_id] = scope
                try:
                    claimed = await self._run_db(
                        self.store.claim_execution,
                        execution_id,
                        self.worker_id,
                        lease_seconds=self.lease_seconds,
                        now=self.clock.now(),
                    )
                    if claimed:
                        with scope:
                            activation = await activate(
                                runtime, execution_id, hold_seconds=hold_seconds
                            )
                            due = activation.due_at
                            if activation.status != ExecutionStatus.RUNNING:
                                continue
                            if until_stable:
                                return await self.describe(execution_id)
                except (LeaseLost, CommitConflict):
                    claimed = False
                finally:
                    if self._keeper.held.get(execution_id) is scope:
                        del self._keeper.held[execution_id]
            if claimed:
                await self._until_due(execution_id, due)
            else:
                # Someone else holds it now (a worker, or our own in-process one).
                await anyio.sleep(0.1)

    async def _until_due(self, execution_id: str, due: datetime | None) -> None:
        """Sleep until the execution's work is due: its timer, or earlier if a callback
        or a stop request makes it due now (both move the work row's due time)."""
        while True:
            queued, due_at = await self._run_db(self.store.work_due_at, execution_id)
            now = self.clock.now()
            if not queued or (due_at is not None and due_at <= now):
                return
            wake = due_at if due_at is not None else due
            step = 0.2 if wake is None else min(0.2, (wake - now).total_seconds())
            await anyio.sleep(max(step, 0.0))

    # -- plain-code twins ----------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._portal is None:
            raise RuntimeError("use the _sync methods inside 'with Engine(...) as engine:'")
        return self._portal.call(functools.partial(fn, *args, **kwargs))

    def create_state_machine_sync(self, *args: Any, **kwargs: Any) -> MachineVersion:
        return cast("MachineVersion", self._call(self.create_state_machine, *args, **kwargs))

    def start_sync(self, *args: Any, **kwargs: Any) -> ExecutionRecord:
        return cast("ExecutionRecord", self._call(self.start, *args, **kwargs))

    def wait_sync(self, *args: Any, **kwargs: Any) -> ExecutionRecord:
        return cast("ExecutionRecord", self._call(self.wait, *args, **kwargs))

    def run_sync(self, *args: Any, **kwargs: Any) -> ExecutionRecord:
        return cast("ExecutionRecord", self._call(self.run, *args, **kwargs))

    def describe_sync(self, *args: Any, **kwargs: Any) -> ExecutionRecord:
        return cast("ExecutionRecord", self._call(self.describe, *args, **kwargs))

    def history_sync(self, *args: Any, **kwargs: Any) -> list[Event]:
        return cast("list[Event]", self._call(self.history, *args, **kwargs))

    def stop_sync(self, *args: Any, **kwargs: Any) -> ExecutionRecord:
        return cast("ExecutionRecord", self._call(self.stop, *args, **kwargs))

    def list_executions_sync(self, *args: Any, **kwargs: Any) -> list[ExecutionRecord]:
        return cast("list[ExecutionRecord]", self._call(self.list_executions, *args, **kwargs))
