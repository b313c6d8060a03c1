"""The interpreter's walk: scopes, frames, variables, and the state loop.

`Walk` holds what is shared by one activation of one execution (journal,
clock, activity registry, the checkpoint hook). A `Frame` is one visit of
one state: its journal key (the state's position through branches,
iterations and attempts), its raw input, its line of events and the
variables in scope. `run_scope` walks a `StartAt`/`States` pair the way the
specification reads; each state type lives in its own module under
`engine/states/`.

Keys: the n-th state visited in a scope has key ``<scope prefix><n>``; a
Parallel branch's scope prefix is ``<state key>.a<attempt>.b<branch>/`` and a
Map iteration's ``<state key>.a<attempt>.i<index>/``. Because the walk is
deterministic given its recorded values, the same step always gets the
same key on replay.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
import msgspec

from activities.registry import Registry
from engine.clock import Clock
from engine.journal import MISSING, Journal, NondeterminismError, Suspend, Thread
from statemachine.errors import States, StatesError
from statemachine.model import Scope, State, StateMachine
from statemachine.timestamps import format_timestamp, parse_timestamp

__all__ = ["Frame", "Transition", "Variables", "Walk", "run_scope"]


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


@dataclass
class Transition:
    """How a state ended: its output, where to go (None: the scope ends), what it assigned."""

    output: Any
    next: str | None
    assigned: dict[str, Any] | None = None


@dataclass
class Frame:
    """One visit of one state."""

    walk: Walk
    state: State
    key: str
    input: Any
    thread: Thread
    variables: Variables
    entered_event_id: int = 0
    entered_time: datetime | None = None
    retry_count: int = 0
    task_token: str | None = None
    _nd_counter: int = field(default=0)

    # -- context object and nondeterminism ---------------------------------
    def context(self, *, map_item: tuple[int, Any] | None = None) -> dict[str, Any]:
        """The `$$` context object as AWS builds it for this state."""
        ctx = self.walk.base_context()
        ctx["State"] = {
            "Name": self.state.name,
            "EnteredTime": format_timestamp(self.entered_time or self.walk.clock.now()),
            "RetryCount": self.retry_count,
        }
        if self.task_token is not None:
            ctx["Task"] = {"Token": self.task_token}
        if map_item is not None:
            ctx["Map"] = {"Item": {"Index": map_item[0], "Value": map_item[1]}}
        return ctx

    def _next_nd_key(self, kind: str) -> str:
        self._nd_counter += 1
        return f"{self.key}:nd{self._nd_counter}:{kind}"

    def uuid(self) -> str:
        key = self._next_nd_key("uuid")
        value = self.walk.journal.replay(key)
        if value is MISSING:
            value = self.walk.journal.record(key, str(_uuid.uuid4()))
        return str(value)

    def random(self) -> float:
        key = self._next_nd_key("random")
        value = self.walk.journal.replay(key)
        if value is MISSING:
            value = self.walk.journal.record(key, self.walk.random_source())
        return float(value)

    def now(self) -> datetime:
        key = self._next_nd_key("now")
        value = self.walk.journal.replay(key)
        if value is MISSING:
            value = self.walk.journal.record(key, self.walk.clock.now().isoformat())
        parsed = datetime.fromisoformat(str(value))
        return parsed

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
            )
        return result

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Errors raised inside get AWS's prefix naming this state."""
        try:
            yield
        except FinalError:
            raise
        except StatesError as error:
            raise self.prefix(error) from None


@dataclass
class Walk:
    """Everything one activation of one execution shares."""

    machine: StateMachine
    journal: Journal
    clock: Clock
    registry: Registry
    execution_id: str
    execution_name: str
    machine_id: str
    machine_name: str
    execution_input: Any
    start_time: datetime
    checkpoint: Callable[[], Awaitable[None]]
    random_source: Callable[[], float]
    hold_seconds: float = 30.0
    extras: dict[str, Any] = field(default_factory=dict)

    def payload(self, value: Any) -> str:
        """A payload as the JSON text history events carry."""
        return msgspec.json.encode(value).decode()

    def base_context(self) -> dict[str, Any]:
        return {
            "Execution": {
                "Id": self.execution_id,
                "Input": self.execution_input,
                "Name": self.execution_name,
                "RoleArn": "arn:aws:iam::000000000000:role/stepwise",
                "StartTime": format_timestamp(self.start_time),
                "RedriveCount": 0,
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
        await self.checkpoint()
        await self.clock.sleep_until(due)

    async def timer(self, frame: Frame, name: str, delay: float) -> None:
        """A durable timer of `delay` seconds, keyed within the frame."""
        key = f"{frame.key}:{name}"
        recorded = self.journal.replay(key)
        if recorded is MISSING:
            due = self.clock.now() + timedelta(seconds=delay)
            recorded = self.journal.record(key, due.isoformat())
        await self.sleep_until(datetime.fromisoformat(str(recorded)))


def enter(frame: Frame, *, input_payload: Any) -> None:
    """Record the state's entry (or replay it): entered time and event id."""
    walk = frame.walk
    key = f"{frame.key}:in"
    recorded = walk.journal.replay(key, frame.thread)
    if recorded is MISSING:
        now = walk.clock.now()
        details = {"name": frame.state.name, "input": walk.payload(input_payload)}
        walk.journal.record(
            key,
            {"s": frame.state.name, "t": now.isoformat()},
            thread=frame.thread,
            events=[(f"{frame.state.type}StateEntered", details)],
            timestamp=now,
        )
        frame.entered_time = now
        frame.entered_event_id = frame.thread.last_event_id
        return
    if recorded["s"] != frame.state.name:
        raise NondeterminismError(
            f"execution {walk.execution_id}: step {frame.key} was recorded for state "
            f"{recorded['s']!r} but the walk reached {frame.state.name!r}"
        )
    frame.entered_time = parse_timestamp(recorded["t"]) or datetime.fromisoformat(recorded["t"])
    frame.entered_event_id = frame.thread.last_event_id


# States that can be in flight when an execution is stopped or a sibling branch fails.
_ABORTABLE = frozenset({"Task", "Wait", "Parallel", "Map"})


def _record_aborted(frame: Frame) -> None:
    """AWS's `<Type>StateAborted` for a state cancelled mid-flight.

    Synchronous, so it runs even while the task is being cancelled; it is only
    committed if the activation then commits (a stop, a timeout, a sibling's
    failure) and vanishes with the rest when a shutdown or lost lease drops it.
    """
    walk = frame.walk
    if frame.state.type not in _ABORTABLE or f"{frame.key}:in" not in walk.journal:
        return
    if f"{frame.key}:out" in walk.journal or f"{frame.key}:aborted" in walk.journal:
        return
    walk.journal.record(
        f"{frame.key}:aborted",
        None,
        thread=frame.thread,
        events=[(f"{frame.state.type}StateAborted", {})],
    )


async def run_scope(
    walk: Walk, scope: Scope, value: Any, *, prefix: str, thread: Thread, variables: Variables
) -> Any:
    """Walk `scope` from StartAt with `value` as input; return the scope's output."""
    from engine.states import run_state

    name = scope.start_at
    step = 0
    while True:
        state = scope.states[name]
        frame = Frame(
            walk=walk,
            state=state,
            key=f"{prefix}{step}",
            input=value,
            thread=thread,
            variables=variables,
        )
        exited = walk.journal.replay(f"{frame.key}:out", thread)
        if exited is MISSING:
            try:
                transition = await run_state(frame)
            except anyio.get_cancelled_exc_class():
                _record_aborted(frame)
                raise
        else:
            transition = Transition(exited["o"], exited["n"], exited.get("v"))
        if transition.assigned:
            variables.assign(transition.assigned)
        if transition.next is None:
            return transition.output
        value = transition.output
        name = transition.next
        step += 1
