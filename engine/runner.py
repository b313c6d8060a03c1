"""One activation of one execution: load, replay-walk, and checkpoint until it ends or waits.

An activation holds the execution's lease. It loads the history's journal,
walks the machine from the top (recorded steps return at once), and ends in
one of four ways, each committed as a checkpoint: the execution finished
(ExecutionSucceeded / Failed / TimedOut / Aborted), it suspended (released
with a due time), its lease was lost (nothing more is written), or the
worker is shutting down (the lease is released for another worker).
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
import msgspec

from activities.registry import Registry
from engine import keys, telemetry
from engine.clock import Clock
from engine.committer import Committer
from engine.earlywalk import StartGate, gated_services
from engine.journal import (
    Journal,
    NondeterminismError,
    Suspend,
    Thread,
    history_limit_error,
)
from engine.sandbox import Sandbox
from engine.states import FailStateError, run_state
from engine.store import (
    Checkpoint,
    CommitResult,
    ExecutionRecord,
    ExecutionStatus,
    Finish,
    LoadedExecution,
    MachineVersion,
    Store,
)
from engine.store.map_run_hook import is_child
from engine.walk import (
    Services,
    Variables,
    Walk,
    commit_error,
    is_poison,
    is_unstorable,
    mentions_context,
    run_scope,
    unexpected,
)
from statemachine.build import load
from statemachine.errors import LanguageUnavailable, States, StatesError
from statemachine.jsonata import Limits
from statemachine.model import StateMachine
from statemachine.quotas import MAX_HISTORY_EVENTS

__all__ = [
    "KEPT_MACHINES",
    "POISON_STRIKES",
    "Activation",
    "FinishWatch",
    "KeptEnds",
    "Runtime",
    "StopSignal",
    "activate",
    "execution_arn",
    "machine_arn",
]

log = logging.getLogger("stepwise.runner")

ACCOUNT = "arn:aws:states:local:000000000000"
# Built machines a Runtime keeps (`Runtime.keep_machine`): 32 of 200 Task states ~2.4 MiB.
KEPT_MACHINES = 32


def machine_arn(name: str) -> str:
    """The ARN-shaped id of a state machine, as `$$.StateMachine.Id` shows it."""
    return f"{ACCOUNT}:stateMachine:{name}"


def execution_arn(machine: str, name: str) -> str:
    """The ARN-shaped id of an execution (`executionArn`, `$$.Execution.Id`)."""
    return f"{ACCOUNT}:execution:{machine}:{name}"


@dataclass
class Activation:
    """How an activation ended: the status, and when a waiting execution is next due."""

    status: str
    due_at: datetime | None = None


@dataclass
class FinishWatch:
    """Waiters on one execution's end in this process (`Engine.wait`).

    Set by the finishing checkpoint once its commit is durable; `record` is
    then the execution's record as a describe read it right after that
    commit, or None when it could not be read with the commit (describe it).
    """

    event: anyio.Event = field(default_factory=anyio.Event)
    record: ExecutionRecord | None = None
    # How many `Engine.wait` calls wait on it (the last to leave unanswered removes it).
    waiters: int = 0


class KeptEnds:
    """SUCCEEDED ends committed here, kept for an `Engine.wait` that comes after the end.

    A wait on an execution that has already ended would otherwise describe
    it (a store call on a thread: ~300 µs of process CPU on PostgreSQL).
    Off until `enabled` (an Engine that starts executions turns it on:
    only a process that starts executions waits on them); then each
    SUCCEEDED end of a top-level execution nobody waits on yet is read back
    with its finishing commit (as a `FinishWatch`'s is) and kept until a
    wait takes it. Only SUCCEEDED: such a record never changes again (no
    redrive). A wait takes it only for the same execution *incarnation*:
    the record the wait was given (as `Engine.start` returned it) must
    carry the kept record's start date, since a name can be started again
    once its execution is purged, by any process. Every end committed here
    drops what was kept for its id first. Bounded: at most `max_records`
    records and `max_chars` characters of input and output together, and
    `max_age` seconds (monotonic), the oldest dropped first; a record
    larger than a sixteenth of `max_chars` is not kept (its wait describes).
    """

    __slots__ = ("_chars", "_records", "enabled", "max_age", "max_chars", "max_records")

    def __init__(
        self,
        *,
        max_records: int = 1024,
        max_chars: int = 16 * 1024 * 1024,
        max_age: float = 60.0,
    ) -> None:
        self.enabled = False
        self.max_records = max_records
        self.max_chars = max_chars
        self.max_age = max_age
        self._records: dict[str, tuple[float, ExecutionRecord]] = {}
        self._chars = 0

    def __len__(self) -> int:
        return len(self._records)

    def keep(self, record: ExecutionRecord) -> None:
        """Keep `record` (an end just committed here) for a later wait, within the bounds."""
        self.drop(record.execution_id)
        if record.status != ExecutionStatus.SUCCEEDED or is_child(record.execution_id):
            return
        size = _chars(record)
        if size > self.max_chars // 16:
            return
        now = time.monotonic()
        self._records[record.execution_id] = (now, record)
        self._chars += size
        records = self._records
        while records and (
            len(records) > self.max_records
            or self._chars > self.max_chars
            or now - next(iter(records.values()))[0] > self.max_age
        ):
            self.drop(next(iter(records)))

    def drop(self, execution_id: str) -> None:
        """Keep nothing for `execution_id` (it ended again, or was purged)."""
        kept = self._records.pop(execution_id, None)
        if kept is not None:
            self._chars -= _chars(kept[1])

    def take(self, execution: ExecutionRecord) -> ExecutionRecord | None:
        """The kept end of `execution` (same id and start date, not expired), no longer kept."""
        kept = self._records.get(execution.execution_id)
        if kept is None:
            return None
        self.drop(execution.execution_id)
        at, record = kept
        if record.start_date != execution.start_date or time.monotonic() - at > self.max_age:
            return None
        return record


def _chars(record: ExecutionRecord) -> int:
    return len(record.input) + len(record.output or "")


@dataclass
class Runtime:
    """What every activation in one process shares."""

    store: Store
    clock: Clock
    registry: Registry
    committer: Committer
    worker_id: str
    run_db: Callable[..., Awaitable[Any]]
    lease_seconds: float = 30.0
    hold_seconds: float = 30.0
    stop_poll_seconds: float = 1.0
    # Evaluates regex-using JSONata templates in a process killed at the limit.
    sandbox: Sandbox | None = None
    jsonata_limits: Limits = field(default_factory=Limits)
    # AWS's history limit: an execution reaching it fails (States.Runtime).
    max_history_events: int = MAX_HISTORY_EVENTS
    # Executions someone in this process waits on, answered when they finish here.
    finished: dict[str, FinishWatch] = field(default_factory=dict)
    # SUCCEEDED ends committed here nobody waited on yet (see `KeptEnds`).
    kept_ends: KeptEnds = field(default_factory=KeptEnds)
    # Executions whose finishing checkpoint has committed while their run is
    # still unwinding: the lease keeper must not take their gone work rows
    # for a lost lease (`LeaseKeeper.run`); `run_one` forgets them.
    ended: set[str] = field(default_factory=set)
    # Executions whose finishing checkpoint is being committed: the lease
    # keeper leaves them to that commit's own lease check (`LeaseKeeper.run`).
    finishing: set[str] = field(default_factory=set)
    # Walks begun while their start commits (engine/earlywalk.py), by
    # execution: the lease keeper leaves a lease alone while its gate is
    # pending (the row may not exist yet); the worker forgets them.
    early_gates: dict[str, StartGate] = field(default_factory=dict)
    # Running activations, signalled by the process's one StopWatcher.
    stop_signals: dict[str, StopSignal] = field(default_factory=dict)
    # Unexpected exceptions outside the walk, per execution (see `_poisoned`).
    poison_strikes: dict[str, int] = field(default_factory=dict)
    # Called, once the commit of an execution's SUCCEEDED end is durable, with
    # the journal rows that commit left out (`_checkpointer`): how
    # tests/histories/record.py records a complete journal. None: not built.
    unwritten_rows: Callable[[str, list[tuple[str, str]]], None] | None = None
    # Built machines by content hash, the most recently used last (`keep_machine`).
    # Each with the stored text it was built from: the hash ignores key order.
    _machines: OrderedDict[str, tuple[str, StateMachine]] = field(default_factory=OrderedDict)
    # `mentions_context` of each definition, by content hash (as `_machines`).
    _reads_context: dict[str, bool] = field(default_factory=dict)

    def services(self, trace_id: str | None) -> Services:
        """The walk's services for one activation of the execution traced as `trace_id`."""
        return Services(
            store=self.store,
            run_db=self.run_db,
            committer=self.committer,
            clock=self.clock,
            registry=self.registry,
            worker_id=self.worker_id,
            run_state=run_state,
            jsonata_limits=self.jsonata_limits,
            sandbox=self.sandbox,
            trace_id=trace_id,
        )

    def machine(self, version: MachineVersion) -> StateMachine:
        """`version`'s built machine: kept, or loaded from its stored text and kept."""
        kept = self._machines.get(version.content_hash)
        if kept is not None and kept[0] == version.definition:
            self._machines.move_to_end(version.content_hash)
            return kept[1]
        built = load(version.definition, machine_type=version.machine_type)  # type: ignore[arg-type]
        self.keep_machine(version, built)
        return built

    def keep_machine(self, version: MachineVersion, machine: StateMachine) -> None:
        """Keep `machine`, built from `version`'s stored text (`MachineApi`), LRU-bounded."""
        machines = self._machines
        machines[version.content_hash] = (version.definition, machine)
        machines.move_to_end(version.content_hash)
        while len(machines) > KEPT_MACHINES:
            evicted, _ = machines.popitem(last=False)
            self._reads_context.pop(evicted, None)

    def reads_context(self, version: MachineVersion) -> bool:
        """`mentions_context` of the version's definition, scanned once per definition."""
        reads = self._reads_context.get(version.content_hash)
        if reads is None:
            reads = self._reads_context[version.content_hash] = mentions_context(version.definition)
        return reads


@dataclass
class StopSignal:
    """Set when a stop is requested for a running activation's execution: cancels its walk."""

    error: str | None = None
    cause: str | None = None
    requested: bool = False
    # The walk's cancel scope while it runs (`_activate`); None before and after.
    scope: anyio.CancelScope | None = None

    def set(self, error: str | None, cause: str | None) -> None:
        self.error, self.cause = error, cause
        self.requested = True
        if self.scope is not None:
            self.scope.cancel()


async def activate(
    runtime: Runtime,
    execution_id: str,
    *,
    hold_seconds: float | None = None,
    loaded: LoadedExecution | None = None,
    gate: StartGate | None = None,
) -> Activation:
    """Run the execution as far as it goes now (RUNNING + due_at when it waits).

    `hold_seconds` overrides how long a wait may hold this process before the
    execution is suspended instead (`Engine.run` holds every timer).
    `loaded` is what the claim read under this lease (`claim_due_loaded`);
    without it the activation loads the execution itself. `gate`: the
    execution's start is still in flight (`loaded` is what it will create,
    engine/earlywalk.py): every checkpoint and every store call of the walk
    waits for it, and raises StartNotDurable (a LeaseLost) when refused.
    Raises LeaseLost when another worker owns the execution now, and the
    other infrastructure errors as they come; any other exception is the
    execution's poison, never the worker's (see `_poisoned`).
    """
    try:
        activation = await _activate(runtime, execution_id, hold_seconds, loaded, gate)
    except LanguageUnavailable as error:
        if gate is not None:
            await gate.passed()
        return await _unavailable(runtime, execution_id, error)
    except Exception as error:
        if not (is_poison(error) or is_unstorable(error)):
            raise
        if gate is not None:
            await gate.passed()  # a start that did not commit has nothing to fail
        return await _poisoned(runtime, execution_id, error)
    runtime.poison_strikes.pop(execution_id, None)
    return activation


async def _activate(
    runtime: Runtime,
    execution_id: str,
    hold_seconds: float | None,
    loaded: LoadedExecution | None,
    gate: StartGate | None = None,
) -> Activation:
    if loaded is None:
        loaded = await runtime.run_db(runtime.store.load, execution_id)
    record = loaded.record
    if record.status != ExecutionStatus.RUNNING:
        return Activation(record.status)
    end_key = keys.execution_end(record.redrive_count)
    journal = Journal(
        execution_id,
        # Owned by this activation (a fresh load, or the claim's): no copy of a
        # long history's journal.
        loaded.journal,
        last_event_id=loaded.last_event_id,
        clock=runtime.clock,
        max_events=runtime.max_history_events,
    )
    if record.redrive_count:
        journal.chain_floor = journal.event_id(keys.redriven(record.redrive_count))

    checkpoint = _checkpointer(runtime, journal, record, gate)

    if record.stop_requested:  # needs no machine: a stop ends even one whose language is broken
        return await _finish_aborted(
            runtime,
            journal,
            end_key,
            checkpoint,
            record.stop_requested_error,
            record.stop_requested_cause,
        )
    try:
        machine = runtime.machine(loaded.machine)
    except StatesError as error:  # pragma: no cover - definitions are validated at creation
        return await _finish_failed(runtime, journal, end_key, checkpoint, error.error, error.cause)
    execution_input = msgspec.json.decode(record.input)
    services = runtime.services(record.trace_id)
    walk = Walk(
        machine=machine,
        journal=journal,
        services=services if gate is None else gated_services(services, gate),
        execution_id=execution_id,
        execution_name=record.name,
        machine_id=machine_arn(record.machine),
        machine_name=record.machine,
        execution_input=execution_input,
        start_time=record.start_date,
        checkpoint=checkpoint,
        random_source=random.random,
        hold_seconds=runtime.hold_seconds if hold_seconds is None else hold_seconds,
        redrive_count=record.redrive_count,
        reads_context=runtime.reads_context(loaded.machine),
    )
    # A redrive restarts the execution's TimeoutSeconds (AWS resets it).
    deadline = (
        (record.redrive_date or record.start_date) + timedelta(seconds=machine.timeout_seconds)
        if machine.timeout_seconds
        else None
    )
    if deadline is not None and runtime.clock.now() >= deadline:
        return await _finish_timed_out(runtime, journal, end_key, checkpoint)

    stop = StopSignal()
    outcome: Any = None
    suspended: Suspend | None = None
    failure: StatesError | None = None
    escaped: Exception | None = None
    # One scope, in this task, ends the walk at the deadline or when a stop is
    # requested (the worker's StopWatcher calls `stop.set`, which cancels it):
    # no task group and no watcher task per activation. Registered and
    # entered with no await in between; unregistered as it exits.
    # No deadline: a plain scope (what `move_on_after(inf)` makes, without
    # its second backend lookup and clock read).
    ending = (
        anyio.move_on_after((deadline - runtime.clock.now()).total_seconds())
        if deadline
        else anyio.CancelScope()
    )
    runtime.stop_signals[execution_id] = stop
    try:
        with ending as scope:
            stop.scope = scope
            try:
                outcome = await run_scope(
                    walk,
                    machine.scope,
                    execution_input,
                    prefix=keys.redrive_prefix(record.redrive_count),
                    # ExecutionStarted is event 1 (a redrive's: ExecutionRedriven).
                    thread=Thread(1),
                    variables=Variables(),
                    previous=[
                        keys.redrive_prefix(generation)
                        for generation in reversed(range(record.redrive_count))
                    ],
                )
            except Suspend as signal:
                suspended = signal
            except NondeterminismError as error:
                failure = StatesError(States.RUNTIME, str(error))
            except StatesError as error:
                failure = error
            except Exception as error:
                # The limit signal, alone or grouped by a Parallel's or Map's task group.
                if not journal.limit_reached:
                    if not is_poison(error):
                        escaped = error
                    else:
                        log.error(
                            "execution %s: unexpected %s in its walk; failing it",
                            execution_id,
                            type(error).__name__,
                            exc_info=error,
                        )
                        failure = unexpected(error)
            if journal.limit_reached:
                suspended, failure = None, _history_limit(journal)
    finally:
        stop.scope = None
        runtime.stop_signals.pop(execution_id, None)
    if escaped is not None:
        # What leaves the walk (lease lost, a conflict, the store away) leaves
        # it grouped, as it did when the walk ran in its own task group: the
        # callers tell a walk's conflict (it fails `Engine.run`) from one at
        # the claim or the end (another owner: `_drive` retries), and
        # `_store_outage_in` reads either shape.
        raise ExceptionGroup("unhandled errors in the walk", [escaped])
    # A stop that came after the walk's last await did not end it: the walk's end stands.
    stopped = scope.cancelled_caught and stop.requested
    timed_out = scope.cancelled_caught and not stop.requested

    if stopped:
        return await _finish_aborted(runtime, journal, end_key, checkpoint, stop.error, stop.cause)
    if timed_out:
        return await _finish_timed_out(runtime, journal, end_key, checkpoint)
    if suspended is not None:
        due = suspended.due_at
        if deadline is not None:
            due = deadline if due is None else min(due, deadline)
        await checkpoint(release=True, due_at=due)
        return Activation(ExecutionStatus.RUNNING, due)
    if failure is not None:
        name: str | None = failure.error
        if isinstance(failure, FailStateError) and failure.error_absent:
            name = None
        return await _finish_failed(runtime, journal, end_key, checkpoint, name, failure.cause)
    now = runtime.clock.now()
    output = msgspec.json.encode(outcome).decode()
    journal.record(
        end_key,
        None,
        events=[("ExecutionSucceeded", {"output": output})],
        timestamp=now,
    )
    await checkpoint(finish=Finish(status=ExecutionStatus.SUCCEEDED, stop_date=now, output=output))
    return Activation(ExecutionStatus.SUCCEEDED)


Checkpointer = Callable[..., Awaitable[None]]

# Quick re-activations an execution gets after an unexpected exception outside
# its walk before it is failed (a MemoryError may pass; a bug will not).
POISON_STRIKES = 3


async def _poisoned(runtime: Runtime, execution_id: str, error: Exception) -> Activation:
    """An unexpected exception escaped the activation: retry it a little later, then fail it.

    The walk itself turns a state's unexpected exception into States.Runtime
    (`engine.walk.unexpected`); what reaches here came from outside any
    state (loading, encoding, committing). The journal this activation built
    is dropped: the execution is reloaded, and either released with a short
    backoff (the first `POISON_STRIKES - 1` times in this process) or failed
    durably with States.Runtime, so a worker never re-activates it in a loop.
    Data the database refused (`is_unstorable`) fails it at the first
    strike: the same walk would hand the database the same data again.
    """
    if is_unstorable(error):
        strikes = POISON_STRIKES
        log.error("execution %s: the database refused its data: %s", execution_id, error)
    else:
        strikes = runtime.poison_strikes.get(execution_id, 0) + 1
        log.error(
            "execution %s: unexpected %s outside its states (strike %d of %d)",
            execution_id,
            type(error).__name__,
            strikes,
            POISON_STRIKES,
            exc_info=error,
        )
    runtime.poison_strikes[execution_id] = strikes
    reopened = await _reopened(runtime, execution_id)
    if isinstance(reopened, Activation):
        return reopened
    record, journal, checkpoint = reopened
    if strikes < POISON_STRIKES:
        due = runtime.clock.now() + timedelta(seconds=0.5 * 4 ** (strikes - 1))
        await checkpoint(release=True, due_at=due)
        return Activation(ExecutionStatus.RUNNING, due)
    runtime.poison_strikes.pop(execution_id, None)
    cause = unexpected(error).cause
    end_key = keys.execution_end(record.redrive_count)
    return await _finish_failed(runtime, journal, end_key, checkpoint, States.RUNTIME, cause)


# The longest an execution whose language part is broken waits between tries.
UNAVAILABLE_BACKOFF_MAX = 300.0


async def _unavailable(
    runtime: Runtime, execution_id: str, error: LanguageUnavailable
) -> Activation:
    """The execution's definition needs a part of the language this install cannot load.

    Not the execution's fault, and nothing it recorded is in doubt: it is
    released, never failed, due again after a backoff that grows 0.5 s, 2 s,
    8 s … up to `UNAVAILABLE_BACKOFF_MAX`, so a worker on a broken install
    neither spins on it nor fails it; once the install is repaired it runs on.
    """
    tries = runtime.poison_strikes.get(execution_id, 0) + 1
    runtime.poison_strikes[execution_id] = tries
    delay = min(0.5 * 4 ** min(tries - 1, 8), UNAVAILABLE_BACKOFF_MAX)
    log.error("execution %s: %s; tried again in %.1f s", execution_id, error, delay)
    reopened = await _reopened(runtime, execution_id)
    if isinstance(reopened, Activation):
        return reopened
    _record, _journal, checkpoint = reopened
    due = runtime.clock.now() + timedelta(seconds=delay)
    await checkpoint(release=True, due_at=due)
    return Activation(ExecutionStatus.RUNNING, due)


async def _reopened(
    runtime: Runtime, execution_id: str
) -> tuple[ExecutionRecord, Journal, Checkpointer] | Activation:
    """The execution reloaded after an activation gave up on it, with a fresh journal.

    The journal that activation built is dropped: what is durable is what
    counts. An execution no longer RUNNING is left as it is (its Activation).
    """
    loaded: LoadedExecution = await runtime.run_db(runtime.store.load, execution_id)
    if loaded.record.status != ExecutionStatus.RUNNING:
        runtime.poison_strikes.pop(execution_id, None)
        return Activation(loaded.record.status)
    journal = Journal(
        execution_id,
        dict(loaded.journal),
        last_event_id=loaded.last_event_id,
        clock=runtime.clock,
    )
    return loaded.record, journal, _checkpointer(runtime, journal, loaded.record)


def _checkpointer(
    runtime: Runtime, journal: Journal, record: ExecutionRecord, gate: StartGate | None = None
) -> Checkpointer:
    """The one way an activation commits what its journal recorded (lease-checked).

    Nothing to write and nothing to finish or release: no commit at all.
    Spans are a view of what is durable: only committed events become spans.

    The commit of the execution's SUCCEEDED end writes its events, the
    executions row and the rest as any commit, but none of its batch's
    journal rows. The journal is read only to resume a RUNNING execution
    (`_activate`, `_poisoned`: an ended one is not walked) and to redrive
    one that FAILED, TIMED_OUT or was ABORTED; nothing resumes or redrives
    a SUCCEEDED one (`redrive.redrive_status`; a Map Run's redrive leaves
    its SUCCEEDED children done). Every other reader (describe, history,
    the web view, the CLI, the HTTP API, Map Runs, TestState, telemetry)
    reads events and executions rows; retention and key rotation take what
    rows there are. One transaction makes the end durable or none of the
    batch: a crash before it leaves the earlier commits' rows, as before.
    The end's ExecutionSucceeded event, always new, keeps the unique-key
    safety net. Only the execution's own end: a Map iteration's or Parallel
    branch's end is a row like any other, and FAILED, TIMED_OUT and ABORTED
    ends keep their rows for a redrive.

    With a `gate` (a walk begun while its start commits) every checkpoint
    first waits for the start to be durable: nothing is committed, and no
    effect follows, before it is.
    """
    execution_id = record.execution_id

    async def checkpoint(
        *, finish: Finish | None = None, release: bool = False, due_at: datetime | None = None
    ) -> None:
        waiting = gate if gate is not None and not gate.durable else None
        if not journal.dirty and finish is None and not release:
            if waiting is not None:
                await waiting.passed()
            return
        succeeded = finish is not None and finish.status == ExecutionStatus.SUCCEEDED
        hook = runtime.unwritten_rows if succeeded else None
        # Drained before the gate's wait, so this checkpoint carries what was
        # recorded before it was asked for and no more: a sibling asking
        # while it waits drains and commits its own rows (else it found them
        # drained here and returned before they were durable).
        # Siblings' drained batches then reach the committer in the order
        # they drained: asyncio wakes the gate's waiters first in, first out,
        # and early walks exist only on asyncio (`EarlyStart.begin`). A
        # batch put back below (this task cancelled at the gate) leaves a
        # sibling's later batch first: the store's `last_event_id` check
        # refuses that one as CONFLICT and the activation runs again from what
        # is stored, nothing written out of order.
        batch = journal.next_batch()
        rows, events = journal.drain(rows=not succeeded or hook is not None)
        last_event_id = journal.last_event_id  # of what was drained: more may follow meanwhile
        if waiting is not None:
            try:
                await waiting.passed()
            except BaseException:
                journal.restore(batch)  # nothing sent: as if never drained
                raise
        unwritten: list[tuple[str, str]] = []
        if succeeded:
            unwritten, rows = rows, []
        done = Checkpoint(
            execution_id=execution_id,
            journal=rows,
            events=events,
            finish=finish,
            release=release,
            release_due_at=due_at,
            last_event_id=last_event_id,
        )
        final: ExecutionRecord | None = None
        if finish is not None:
            runtime.finishing.add(execution_id)
        try:
            if finish is not None and (
                execution_id in runtime.finished
                or (succeeded and runtime.kept_ends.enabled and not is_child(execution_id))
            ):
                # Someone here waits, or may wait, on this end: read the record
                # back with the commit.
                result, final = await runtime.committer.commit_reading(done)
            else:
                result = await runtime.committer.commit(done)
        finally:
            if finish is not None:
                runtime.finishing.discard(execution_id)
        if result != CommitResult.OK:
            raise commit_error(result, f"execution {execution_id}: at commit")
        telemetry.on_commit(record, events, runtime.store.history)
        if hook is not None:
            hook(execution_id, unwritten)
        if finish is not None:
            runtime.ended.add(execution_id)
            # Taken out as it is answered: its waiters hold it, and a wait after
            # a redrive must not find this end.
            watch = runtime.finished.pop(execution_id, None)
            if watch is not None:
                watch.record = final
                watch.event.set()
            if final is not None and watch is None:
                runtime.kept_ends.keep(final)
            else:
                runtime.kept_ends.drop(execution_id)

    return checkpoint


def _history_limit(journal: Journal) -> StatesError:
    """The failure of an execution that reached its history event limit.

    Whatever else the walk ended with (a failure, a suspension) yields to
    the limit: AWS ends the execution there.
    """
    return history_limit_error(journal.max_events)


def _details(error: str | None, cause: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if error is not None:
        details["error"] = error
    if cause is not None:
        details["cause"] = cause
    return details


async def _finish(
    runtime: Runtime,
    journal: Journal,
    end_key: str,
    checkpoint: Checkpointer,
    status: ExecutionStatus,
    event: str,
    error: str | None,
    cause: str | None,
) -> Activation:
    now = runtime.clock.now()
    journal.record(end_key, None, events=[(event, _details(error, cause))], timestamp=now)
    # A parent that failed, timed out or was aborted with a Distributed Map
    # still running takes its Map Runs down in this same commit
    # (store/map_run_hook.parents_ended): no child keeps running for an ended parent.
    await checkpoint(finish=Finish(status=status, stop_date=now, error=error, cause=cause))
    return Activation(status)


async def _finish_failed(
    runtime: Runtime,
    journal: Journal,
    end_key: str,
    checkpoint: Checkpointer,
    error: str | None,
    cause: str | None,
) -> Activation:
    return await _finish(
        runtime,
        journal,
        end_key,
        checkpoint,
        ExecutionStatus.FAILED,
        "ExecutionFailed",
        error,
        cause,
    )


async def _finish_timed_out(
    runtime: Runtime, journal: Journal, end_key: str, checkpoint: Checkpointer
) -> Activation:
    return await _finish(
        runtime,
        journal,
        end_key,
        checkpoint,
        ExecutionStatus.TIMED_OUT,
        "ExecutionTimedOut",
        States.TIMEOUT,
        None,
    )


async def _finish_aborted(
    runtime: Runtime,
    journal: Journal,
    end_key: str,
    checkpoint: Checkpointer,
    error: str | None,
    cause: str | None,
) -> Activation:
    return await _finish(
        runtime,
        journal,
        end_key,
        checkpoint,
        ExecutionStatus.ABORTED,
        "ExecutionAborted",
        error,
        cause,
    )
