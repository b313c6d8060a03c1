"""The records the store takes and returns: frozen msgspec Structs and enums.

These are the store's vocabulary with the rest of the engine: a state machine
version, an execution row, a history event, a task token, a queued activity
task, the checkpoint a worker commits and what became of it. Payloads
(execution input and output, journal values) travel as JSON *text* the
caller encoded; event details travel as dicts. Every datetime is timezone-aware UTC.
The Structs are untracked by the cyclic collector (``gc=False``): they hold
text, numbers, datetimes, JSON-shaped dicts and lists and one another, never
a reference back to themselves, so a step's many events and checkpoints add
nothing to the young collections' count or work.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

__all__ = [
    "DEFAULT_QUEUE",
    "ActivityTaskRecord",
    "Checkpoint",
    "CommitResult",
    "Event",
    "ExecutionRecord",
    "ExecutionStatus",
    "Finish",
    "LoadedExecution",
    "MachineType",
    "MachineVersion",
    "TokenRecord",
    "TokenStatus",
]


# The queue an execution is on when its starter names none, and the one a
# worker claims from unless told otherwise (Temporal's task queues).
DEFAULT_QUEUE = "default"


class MachineType(StrEnum):
    """The two Step Functions workflow types."""

    STANDARD = "STANDARD"
    EXPRESS = "EXPRESS"


class ExecutionStatus(StrEnum):
    """An execution's status, as DescribeExecution reports it."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"


class TokenStatus(StrEnum):
    """The life of a callback task token: OPEN until it closes one way."""

    OPEN = "OPEN"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"


class CommitResult(StrEnum):
    """What became of one checkpoint in a group commit."""

    OK = "OK"
    LEASE_LOST = "LEASE_LOST"
    CONFLICT = "CONFLICT"


class MachineVersion(msgspec.Struct, frozen=True, gc=False):
    """One immutable version (1, 2, …) of a named state machine."""

    name: str
    version: int
    definition: str
    content_hash: str
    machine_type: str
    created_at: datetime


class ExecutionRecord(msgspec.Struct, frozen=True, gc=False):
    """The executions row: a projection of the history for fast queries."""

    execution_id: str
    name: str
    machine: str
    version: int
    status: str
    input: str
    output: str | None
    error: str | None
    cause: str | None
    start_date: datetime
    stop_date: datetime | None
    trace_id: str
    stop_requested: bool
    stop_requested_error: str | None
    stop_requested_cause: str | None
    last_event_id: int
    # Which workers may claim it: those on this queue (a Stepwise extension).
    queue: str = DEFAULT_QUEUE
    # RedriveExecution: how often it was redriven and when last (None: never).
    redrive_count: int = 0
    redrive_date: datetime | None = None
    # Started through a published version (its number) and/or an alias (None: neither).
    published_version: int | None = None
    alias: str | None = None


class Event(msgspec.Struct, frozen=True, gc=False):
    """One history event: AWS's `id`, `previousEventId`, `type`, `timestamp` and details."""

    event_id: int
    previous_event_id: int
    type: str
    timestamp: datetime
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class TokenRecord(msgspec.Struct, frozen=True, gc=False):
    """A callback task token and the journal key its answer will be recorded under."""

    token: str
    execution_id: str
    key: str
    state_name: str
    status: str = TokenStatus.OPEN
    heartbeat_at: datetime | None = None
    created_at: datetime | None = None


class ActivityTaskRecord(msgspec.Struct, frozen=True, gc=False):
    """A task queued for activity workers: its token, the step it answers and its input (JSON)."""

    token: str
    activity: str
    execution_id: str
    key: str
    input: str


class Finish(msgspec.Struct, frozen=True, gc=False):
    """The closing fields of an execution, written with its last checkpoint."""

    status: str
    stop_date: datetime
    output: str | None = None
    error: str | None = None
    cause: str | None = None


class Checkpoint(msgspec.Struct, frozen=True, gc=False):
    """Everything one execution recorded since its last commit.

    `release` hands the execution back to the queue (due at `release_due_at`,
    or never by itself when that is None: only a callback or a stop wakes
    it); otherwise the worker keeps its lease. A `finish` removes the
    execution from the queue whatever `release` says.
    """

    execution_id: str
    journal: list[tuple[str, str]] = msgspec.field(default_factory=list)
    events: list[Event] = msgspec.field(default_factory=list)
    tokens: list[TokenRecord] = msgspec.field(default_factory=list)
    finish: Finish | None = None
    release: bool = False
    release_due_at: datetime | None = None
    last_event_id: int = 0


class LoadedExecution(msgspec.Struct, frozen=True, gc=False):
    """What a replay needs: the execution, its definition and everything journaled."""

    record: ExecutionRecord
    machine: MachineVersion
    journal: dict[str, str]
    last_event_id: int
    tokens: dict[str, TokenRecord] = msgspec.field(default_factory=dict)
