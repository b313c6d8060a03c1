"""The interpreter's walk core: services, scopes, frames, variables, and the state loop.

`Services` names, typed, what the walk may use beyond the execution itself
(the store through `run_db`, the committer, the clock, the activity
registry, JSONata limits and sandbox, the trace id, the worker id, and the
state dispatcher). `Walk` holds what is shared by one activation of one
execution (journal, services, the checkpoint hook). A `Frame` is one visit
of one state: its journal key (the state's position through branches,
iterations and attempts, built by `engine.keys`), its raw input, its line
of events and the variables in scope. `run_scope` walks a
`StartAt`/`States` pair the way the specification reads, handing each
state to the dispatcher it was given (`engine.states.run_state`), so this
module imports nothing above it. Because the walk is deterministic given
its recorded values, the same step always gets the same key on replay, and
every record names its state so a changed walk is caught.
"""

from __future__ import annotations

import functools
import logging
import uuid as _uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import anyio
import msgspec

from activities.registry import Registry
from engine import keys
from engine.clock import Clock
from engine.committer import Committer, committed_before
from engine.journal import (
    MISSING,
    Events,
    Journal,
    NondeterminismError,
    RowTime,
    Suspend,
    Thread,
)
from engine.sandbox import Sandbox
from engine.store import (
    Checkpoint,
    CommitConflict,
    CommitResult,
    LeaseLost,
    Store,
)
from engine.store.boundary import fault_of
from statemachine.errors import States, StatesError, StepwiseError
from statemachine.jsonata import Limits
from statemachine.model import Scope, State, StateMachine
from statemachine.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "Frame",
    "Services",
    "StateRunner",
    "Transition",
    "Variables",
    "Walk",
    "commit_error",
    "is_poison",
    "is_unstorable",
    "mentions_context",
    "run_scope",
    "unexpected",
]

log = logging.getLogger("stepwise.walk")


class StateRunner(Protocol):
    """Runs one state visit to its transition: the dispatcher `run_scope` is given."""

    def __call__(self, frame: Frame, /) -> Awaitable[Transition]: ...


def commit_error(result: CommitResult, what: str) -> StepwiseError:
    """The error for a commit that did not go through: the lease was lost, or a row collided.

    `what` says what was being committed (``execution X: … at commit``).
    """
    if result == CommitResult.CONFLICT:
        return CommitConflict(f"{what}: a conflicting row was already recorded")
    return LeaseLost(f"{what}: {result}")


@dataclass(frozen=True)
class Services:
    """What one activation's walk may use beyond the execution itself, each named and typed."""

    store: Store
    run_db: Callable[..., Awaitable[Any]]  # runs a blocking store call off the event loop
    committer: Committer
    clock: Clock
    registry: Registry
    worker_id: str
    run_state: StateRunner
    jsonata_limits: Limits = Limits()  # noqa: RUF009 - frozen, shared safely
    sandbox: Sandbox | None = None
    trace_id: str | None = None

    async def commit(self, checkpoint: Checkpoint, what: str) -> None:
        """Commit `checkpoint` now; raises LeaseLost or CommitConflict (see `commit_error`)."""
        result = await self.committer.commit(checkpoint)
        if result != CommitResult.OK:
            raise commit_error(result, what)


class FinalError(StatesError):
    """A StatesError whose cause is final: already prefixed, or raised by a task, Fail or child.

    `uncatchable` marks errors AWS ends the execution with regardless of
    Retry/Catch (oversized state I/O), beside States.Runtime which never matches.
    """

    def __init__(self, error: str, cause: str | None = None, *, uncatchable: bool = False) -> None:
        super().__init__(error, cause)
        self.uncatchable = uncatchable


def final(error: StatesError) -> FinalError:
    if isinstance(error, FinalError):
        return error
    result = FinalError(error.error, error.cause)
    result.__dict__.update({k: v for k, v in error.__dict__.items() if k not in ("error", "cause")})
    return result


class Variables:
    """One variable scope: the machine's, a Parallel branch's or a Map iteration's."""

    def __init__(self, parent: Variables | None = None) -> None:
        self.parent = parent
        self.values: dict[str, Any] = {}

    def visible(self) -> dict[str, Any]:
        merged = self.parent.visible() if self.parent is not None else {}
        merged.update(self.values)
        return merged

    def _outer_has(self, name: str) -> bool:
        scope = self.parent
        while scope is not None:
            if name in scope.values:
                return True
            scope = scope.parent
        return False

    def check_assign(self, updates: Mapping[str, Any]) -> None:
        for name in updates:
            if self._outer_has(name):
                raise StatesError(
                    States.RUNTIME,
                    f"Cannot assign variable '{name}': it is declared in an outer scope "
                    "and inner scopes may only read it.",
                )

    def assign(self, updates: Mapping[str, Any]) -> None:
        self.values.update(updates)


_RETRYING_TYPES = frozenset({"Task", "Parallel", "Map"})


@dataclass(slots=True)
class Transition:
    """How a state ended: its output, where to go (None: the scope ends), what it assigned."""

    output: Any
    next: str | None
    assigned: dict[str, Any] | None = None


@dataclass(slots=True)
class Frame:
    """One visit of one state (slotted: one is made for every state a walk runs)."""

    walk: Walk
    state: State
    key: str
    input: Any
    thread: Thread
    variables: Variables
    # The keys this step had in older generations it did not finish in (newest
    # first): a redriven Parallel or Map finds its finished children there.
    previous_keys: tuple[str, ...] = ()
    entered_event_id: int = 0
    entered_time: datetime | None = None
    retry_count: int = 0
    task_token: str | None = None
    # The exit record (value, events) the state made; `run_scope` records it.
    exit_record: tuple[dict[str, Any], Events] | None = None
    # `input` as JSON text when the walk already has it (the previous state's
    # live exit or this state's entry encoded it), and this state's output as
    # its exit encoded it: each payload is encoded once for the events that
    # carry it.
    input_text: str | None = None
    output_text: str | None = None
    # A Task's live result and its text as the outcome event encoded it: the
    # exit reuses the text when the result passes through to the output as is.
    result_text: tuple[Any, str] | None = None
    _nd_counter: int = field(default=0)
    # EnteredTime as `$$` shows it, formatted once per visit (entered_time, its text).
    _entered_text: tuple[datetime, str] | None = field(default=None, repr=False)

    # -- context object and nondeterminism ---------------------------------
    def context(self, *, map_item: tuple[int, Any] | None = None) -> dict[str, Any]:
        """The `$$` context object as AWS builds it for this state.

        A fresh dict each call (a handler may mutate what it is given); the
        timestamps in it are formatted once per execution and per visit.
        """
        ctx = self.walk.base_context()
        ctx["State"] = {
            "Name": self.state.name,
            "EnteredTime": self._entered_time_text(),
        }
        if self.state.type in _RETRYING_TYPES:  # AWS gives RetryCount only to states that retry
            ctx["State"]["RetryCount"] = self.retry_count
        if self.task_token is not None:
            ctx["Task"] = {"Token": self.task_token}
        if map_item is not None:
            ctx["Map"] = {"Item": {"Index": map_item[0], "Value": map_item[1]}}
        return ctx

    def path_context(self, *, map_item: tuple[int, Any] | None = None) -> dict[str, Any]:
        """`context` for a JSONPath evaluation: empty when no path of the machine reads `$$`.

        Only a path rooted at ``$$`` reads the context object, so a machine
        whose definition never writes ``$$`` (`mentions_context`) skips
        building it for every state. JSONata's ``$states.context`` always
        gets the real one (`context`).
        """
        if self.walk.reads_context:
            return self.context(map_item=map_item)
        return {}

    def _entered_time_text(self) -> str:
        entered = self.entered_time
        if entered is None:
            return format_timestamp(self.walk.clock.now())
        cached = self._entered_text
        if cached is None or cached[0] is not entered:
            cached = self._entered_text = (entered, format_timestamp(entered))
        return cached[1]

    def _next_nd_key(self, kind: str) -> str:
        self._nd_counter += 1
        return keys.nondeterministic(self.key, self._nd_counter, kind)

    def record_once(
        self,
        key: str,
        produce: Callable[[], tuple[Any, Events]],
        *,
        thread: Thread | None = None,
        timestamp: datetime | None = None,
    ) -> Any:
        """`Journal.record_once` for a step of this state (checked against its name on replay)."""
        return self.walk.journal.record_once(
            key, produce, thread=thread, state=self.state.name, timestamp=timestamp
        )

    async def record_once_async(
        self,
        key: str,
        produce: Callable[[], Awaitable[tuple[Any, Events]]],
        *,
        thread: Thread | None = None,
        record_thread: Thread | None = None,
    ) -> Any:
        """`Journal.record_once_async` for a step of this state."""
        return await self.walk.journal.record_once_async(
            key, produce, thread=thread, state=self.state.name, record_thread=record_thread
        )

    def record(
        self, key: str, value: Any, *, thread: Thread | None = None, events: Events = ()
    ) -> Any:
        """Record a step of this state that is never replayed in place (a child's end)."""
        return self.walk.journal.record(
            key, value, thread=thread, events=events, state=self.state.name
        )

    def replay(self, key: str, thread: Thread | None = None) -> Any:
        """A record of this state (or MISSING) that is read, never produced, by the walk."""
        return self.walk.journal.replay(key, thread, state=self.state.name)

    def uuid(self) -> str:
        return str(self.record_once(self._next_nd_key("uuid"), lambda: (str(_uuid.uuid4()), ())))

    def random(self) -> float:
        value = self.record_once(
            self._next_nd_key("random"), lambda: (self.walk.random_source(), ())
        )
        return float(value)

    def now(self) -> datetime:
        value = self.record_once(
            self._next_nd_key("now"), lambda: (self.walk.clock.now().isoformat(), ())
        )
        return datetime.fromisoformat(str(value))

    # -- errors --------------------------------------------------------------
    def prefix(self, error: StatesError) -> FinalError:
        """AWS's form of an error the state's own evaluation raised."""
        if isinstance(error, FinalError):
            return error
        cause = (
            f"An error occurred while executing the state '{self.state.name}' "
            f"(entered at the event id #{self.entered_event_id}). {error.cause or ''}"
        ).rstrip()
        result = FinalError(error.error, cause)
        location = getattr(error, "location", None)
        if location is not None:
            self.walk.journal.record(
                self._next_nd_key("evalfail"),
                None,
                thread=self.thread,
                events=[
                    (
                        "EvaluationFailed",
                        {
                            "error": error.error,
                            "cause": cause,
                            "location": location,
                            "state": self.state.name,
                        },
                    )
                ],
                state=self.state.name,
            )
        return result

    def evaluating(self) -> Frame:
        """A context in which raised StatesErrors get AWS's prefix naming this state.

        The frame itself (no object made per state's pipeline): see `__exit__`.
        """
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any
    ) -> None:
        # Never swallows: an error leaves as it came, or as its prefixed form.
        if isinstance(error, StatesError) and not isinstance(error, FinalError):
            raise self.prefix(error) from None


class _Abandoned(Exception):
    """A gathering whose first sibling left without committing: its joiners checkpoint again.

    Cancelled before it drained anything, or ended mid-commit by something
    other than the commit's error (its rows then put back: `Walk._gather`).
    """


class _Gathering:
    """One checkpoint that siblings' checkpoints joined (`Walk.durable`): its outcome, once set."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None

    async def joined(self) -> None:
        """Wait until the gathered commit's outcome is known; raise its error, if any.

        Cancelled meanwhile, the outcome is still waited for (shielded), as
        a checkpoint handed to the committer is, and the cancellation then
        passed on: rows handed over are never left with an unknown fate.
        """
        try:
            await self.done.wait()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.done.wait()
            raise
        error = self.error
        if error is not None:
            raise error


@dataclass
class Walk:
    """Everything one activation of one execution shares."""

    machine: StateMachine
    journal: Journal
    services: Services
    execution_id: str
    execution_name: str
    machine_id: str
    machine_name: str
    execution_input: Any
    start_time: datetime
    checkpoint: Callable[[], Awaitable[None]]
    random_source: Callable[[], float]
    hold_seconds: float = 30.0
    redrive_count: int = 0
    # Whether a JSONPath of this machine may read `$$` (`mentions_context`):
    # when not, JSONPath evaluation gets no context object built for it.
    reads_context: bool = True
    # Children (Map iterations, Parallel branches) launched and not yet
    # ended: while several are, their checkpoints gather into one (`durable`).
    children_running: int = 0
    _gathering: _Gathering | None = field(default=None, repr=False, compare=False)

    async def durable(self) -> None:
        """Commit what the journal recorded (`checkpoint`); return once it is durable.

        Raises what the checkpoint raises (LeaseLost, CommitConflict, ...).
        While several children walk at once, the first to ask yields once
        before draining the journal, so the siblings ready to run record
        their steps and join it: one commit makes all of theirs durable
        (a Map of 100 Tasks schedules all 100 in one commit, not one and
        then 99). A joiner returns only when that commit has succeeded, and
        raises its error otherwise; nothing is acknowledged before it is
        durable. A checkpoint asked for once the journal was drained opens
        a gathering of its own.
        """
        while True:
            if self.children_running < 2:
                await self.checkpoint()
                return
            gathering = self._gathering
            if gathering is not None:
                try:
                    await gathering.joined()
                except _Abandoned:
                    continue  # nothing was drained: ask again (this one may gather)
                return
            await self._gather()
            return

    async def _gather(self) -> None:
        """`durable` for the first sibling to ask: yield once, then commit for all who joined."""
        gathering = self._gathering = _Gathering()
        try:
            try:
                # Not shielded: a walk cancelled here (a worker stopping, a
                # lease lost) commits nothing for it — what its cancelled
                # siblings record as they unwind (`_record_aborted`) must not
                # ride a commit, but go with the runner's finish or vanish.
                await anyio.lowlevel.checkpoint()  # the ready siblings record and join
            except anyio.get_cancelled_exc_class():
                gathering.error = _Abandoned()
                raise
            # Shielded from here: the joiners' rows ride on this commit, so
            # its outcome must be known; a cancellation lands at the next await.
            batch = self.journal.next_batch()
            with anyio.CancelScope(shield=True):
                # Closed before the drain (which `checkpoint` does before its
                # first await): whoever asks later is not in this commit.
                self._gathering = None
                try:
                    await self.checkpoint()
                except Exception:
                    raise
                except BaseException as ending:
                    # Not the commit's error but this task's own end (asyncio's
                    # own Task.cancel, which no shield holds back, or an
                    # interrupt). Known committed (the committer waited for
                    # its answer), the joiners' rows are durable: they return.
                    # Else the outcome is lost with it: the rows go back in
                    # the journal and the joiners checkpoint them again (the
                    # unique keys refuse them if they were committed). This
                    # task's cancellation propagates as a cancellation.
                    if committed_before(ending):
                        gathering.done.set()
                    else:
                        self.journal.restore(batch)
                        gathering.error = _Abandoned()
                    raise
        except BaseException as error:
            if gathering.error is None and not gathering.done.is_set():
                gathering.error = error
            raise
        finally:
            if self._gathering is gathering:
                self._gathering = None
            gathering.done.set()

    @property
    def clock(self) -> Clock:
        return self.services.clock

    @property
    def registry(self) -> Registry:
        return self.services.registry

    def payload(self, value: Any) -> str:
        """A payload as the JSON text history events carry."""
        return msgspec.json.encode(value).decode()

    @functools.cached_property
    def _start_time_text(self) -> str:
        return format_timestamp(self.start_time)

    def base_context(self) -> dict[str, Any]:
        return {
            "Execution": {
                "Id": self.execution_id,
                "Input": self.execution_input,
                "Name": self.execution_name,
                "RoleArn": "arn:aws:iam::000000000000:role/stepwise",
                "StartTime": self._start_time_text,
                "RedriveCount": self.redrive_count,
            },
            "StateMachine": {"Id": self.machine_id, "Name": self.machine_name},
        }

    async def sleep_until(self, due: datetime) -> None:
        """Wait until `due`: in this process when short, else suspend the execution."""
        remaining = (due - self.clock.now()).total_seconds()
        if remaining <= 0:
            return
        if remaining > self.hold_seconds:
            raise Suspend(due)
        await self.durable()
        await self.clock.sleep_until(due)

    async def timer(self, frame: Frame, key: str, delay: float) -> None:
        """A durable timer of `delay` seconds under the frame's `key`."""
        recorded = frame.record_once(
            key, lambda: ((self.clock.now() + timedelta(seconds=delay)).isoformat(), ())
        )
        await self.sleep_until(datetime.fromisoformat(str(recorded)))


def mentions_context(definition: str) -> bool:
    """Whether a definition's JSON text may hold a JSONPath that reads the context object.

    Conservative: any ``$$`` in the text, or any escaped ``$`` (``\\u0024``),
    whose decoded form might spell one.
    """
    return "$$" in definition or "\\u0024" in definition


def is_poison(error: BaseException) -> bool:
    """Whether `error` is a bug or a resource error of this execution, not the machinery's.

    Poison is any exception that is neither ASL's (StatesError), nor the
    engine's own signals and infrastructure errors (Suspend, StepwiseError:
    lease lost, store unavailable, nondeterminism), nor a cancellation, nor
    a driver error (`boundary.fault_of`: one that escaped the boundary
    unmapped is still the store's, or a refusal of data, `is_unstorable`);
    an exception group is poison only when everything in it is.
    """
    if isinstance(error, BaseExceptionGroup):
        return all(is_poison(inner) for inner in error.exceptions)
    if not isinstance(error, Exception) or isinstance(error, Suspend | StepwiseError):
        return False
    return fault_of(error) is None


def is_unstorable(error: BaseException) -> bool:
    """Whether the database refused this execution's data (`boundary.fault_of`), grouped or not.

    Not poison inside the walk (no state's failure: what the walk recorded
    since its last commit is not durable), but the activation's: the
    execution is reloaded and failed (`runner._poisoned`), not retried.
    """
    if isinstance(error, BaseExceptionGroup):
        return bool(error.exceptions) and all(is_unstorable(e) for e in error.exceptions)
    return fault_of(error) == "data"


def unexpected(error: BaseException) -> StatesError:
    """AWS's States.Runtime for an unexpected exception: it fails the execution, never caught.

    Recursion, encoding and memory errors that reach here were not bounded
    where they arose; retrying the same deterministic walk would raise them
    again, so the execution fails rather than being re-activated.
    """
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    detail = str(error).encode("utf-8", "backslashreplace").decode()[:500]
    return StatesError(States.RUNTIME, f"{type(error).__name__}: {detail}".rstrip(": "))


def enter(frame: Frame, *, input_payload: Any) -> None:
    """Record the state's entry (or replay it): entered time and event id.

    `Frame.record_once` spelled out (replay, else record), as every state
    visit runs it: no closure or extra calls per transition.
    """
    walk = frame.walk
    journal = walk.journal
    state = frame.state
    name = state.name
    thread = frame.thread
    key = keys.entered(frame.key)
    now = journal.now()  # the clock's read, without a frame for the system clock
    recorded = journal.replay(key, thread, state=name)
    if recorded is MISSING:
        known = frame.input_text
        if input_payload is not frame.input:
            text = walk.payload(input_payload)
        elif known is None:  # kept: the input's text, as its entered event carries it
            text = frame.input_text = walk.payload(input_payload)
        else:
            text = known
        journal.record(
            key,
            {"s": name, "t": RowTime(now)},
            thread=thread,
            events=[(state.entered_event, {"name": name, "input": text})],
            timestamp=now,
            state=name,
            encode_later=True,  # never encoded when the exit shares the commit
        )
        frame.entered_event_id = thread.last_event_id
        frame.entered_time = now
        return
    frame.entered_event_id = thread.last_event_id
    # Records from before rows named their state carry it in the value.
    if recorded["s"] != name:
        raise NondeterminismError(
            f"execution {walk.execution_id}: step {frame.key} was recorded for state "
            f"{recorded['s']!r} but the walk reached {name!r}"
        )
    entered_text = str(recorded["t"])  # a RowTime when this activation recorded it
    frame.entered_time = parse_timestamp(entered_text) or datetime.fromisoformat(entered_text)


# States that can be in flight when an execution is stopped or a sibling branch fails.
_ABORTABLE = frozenset({"Task", "Wait", "Parallel", "Map"})


def _record_aborted(frame: Frame) -> None:
    """AWS's `<Type>StateAborted` for a state cancelled mid-flight.

    Synchronous, so it runs even while the task is being cancelled; it is only
    committed if the activation then commits (a stop, a timeout, a sibling's
    failure) and vanishes with the rest when a shutdown or lost lease drops it.
    """
    walk = frame.walk
    if frame.state.type not in _ABORTABLE or keys.entered(frame.key) not in walk.journal:
        return
    if keys.exited(frame.key) in walk.journal or keys.aborted(frame.key) in walk.journal:
        return
    frame.record_once(
        keys.aborted(frame.key),
        lambda: (None, [(f"{frame.state.type}StateAborted", {})]),
        thread=frame.thread,
    )


def _step_keys(
    walk: Walk, prefix: str, previous: Sequence[str], step: int
) -> tuple[str, tuple[str, ...]]:
    """The key of the scope's `step`-th visit, and its unfinished keys of older generations.

    A step some older generation (a prefix in `previous`, newest first)
    finished keeps that generation's key, so it replays; any other runs
    under this generation's key.
    """
    key = keys.step(prefix, step)
    if not previous or keys.exited(key) in walk.journal:
        return key, ()
    older = [keys.step(old, step) for old in previous]
    for old in older:
        if keys.exited(old) in walk.journal:
            return old, ()
    return key, tuple(old for old in older if keys.entered(old) in walk.journal)


def _poisoned(frame: Frame, error: Exception) -> FinalError:
    """The uncatchable failure of a state that raised a poison `error` (`is_poison`), logged."""
    log.error(
        "execution %s: state %r raised an unexpected %s; failing the execution",
        frame.walk.execution_id,
        frame.state.name,
        type(error).__name__,
        exc_info=error,
    )
    failure = frame.prefix(unexpected(error))
    failure.uncatchable = True
    return failure


async def run_scope(
    walk: Walk,
    scope: Scope,
    value: Any,
    *,
    prefix: str,
    thread: Thread,
    variables: Variables,
    previous: Sequence[str] = (),
) -> Any:
    """Walk `scope` from StartAt with `value` as input; return the scope's output.

    Each state not yet exited runs through `walk.services.run_state`.
    `previous` are the prefixes this scope had in older generations (a
    redrive's), newest first: what one of them finished is replayed.
    """
    run_state = walk.services.run_state
    journal = walk.journal
    name = scope.start_at
    step = 0
    value_text: str | None = None
    while True:
        state = scope.states[name]
        if previous:
            key, previous_keys = _step_keys(walk, prefix, previous, step)
        else:  # no older generation (no redrive): the common case, without a call
            key, previous_keys = keys.step(prefix, step), ()
        # A step the journal holds the exit of replays without a Frame: a long
        # history's resume walks tens of thousands of them. Otherwise the
        # state runs and its exit is recorded: `Journal.record_once_async`
        # spelled out, as every transition runs it (one replay, no partial).
        exit_key = keys.exited(key)
        exited = journal.replay(exit_key, thread, state=state.name)
        output_text: str | None = None
        if exited is MISSING:
            frame = Frame(walk, state, key, value, thread, variables, previous_keys)
            frame.input_text = value_text
            # The state runs live (its module's coroutine awaited here, no frame between).
            try:
                await run_state(frame)
            except anyio.get_cancelled_exc_class():
                _record_aborted(frame)
                raise
            except Exception as error:
                if not is_poison(error):
                    raise
                raise _poisoned(frame, error) from None
            if frame.exit_record is None:
                raise AssertionError(f"{state.name} ended without exit_state")
            exited, events = frame.exit_record
            journal.record(
                exit_key,
                exited,
                thread=thread,
                events=events,
                state=state.name,
                supersedes=keys.entered(key),
            )
            # Set only when the exit ran live just now (a replay never runs the state).
            output_text = frame.output_text
        assigned = exited.get("v")
        if assigned:
            variables.assign(assigned)
        following = exited["n"]
        if following is None:
            return exited["o"]
        value, value_text = exited["o"], output_text
        name = following
        step += 1
