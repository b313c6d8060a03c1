"""The durable store: state machines, executions, history, journal, tokens, activity tasks, work.

`Store` is the one door to the database (SQLite file or PostgreSQL, via
SQLAlchemy Core) and the only code that writes SQL; the records it takes and
returns and the errors it raises are re-exported here. Everything else in
this package is its plumbing: one module per job (`machines`, `work`,
`tokens`, `effects`, `rotation`, `schedules`, `outbox` with its commit hook
`outbox_hook`, `store` for executions) on `base`, the
dialects in `sqlite` and `postgres`, driver errors mapped once in
`boundary`, and every payload column sealed and opened by `codec`
(encryption at rest).
"""

from __future__ import annotations

from engine.store.errors import (
    AmbiguousExecution,
    CommitConflict,
    ConflictError,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    ExecutionNotRedrivable,
    ExecutionNotRunning,
    InvalidRouting,
    InvalidToken,
    LeaseLost,
    ResourceNotFound,
    StateMachineDoesNotExist,
    StoreUnavailable,
    TaskDoesNotExist,
    TaskTimedOut,
)
from engine.store.records import (
    DEFAULT_QUEUE,
    ActivityTaskRecord,
    Checkpoint,
    CommitResult,
    Event,
    ExecutionRecord,
    ExecutionStatus,
    Finish,
    LoadedExecution,
    MachineType,
    MachineVersion,
    TokenRecord,
    TokenStatus,
)
from engine.store.redrive import REDRIVE_WINDOW, redrive_status
from engine.store.schema import SCHEMA_VERSION
from engine.store.store import Store, default_database_url
from engine.store.versions import AliasRecord, PublishedVersion

__all__ = [
    "DEFAULT_QUEUE",
    "REDRIVE_WINDOW",
    "SCHEMA_VERSION",
    "ActivityTaskRecord",
    "AliasRecord",
    "AmbiguousExecution",
    "Checkpoint",
    "CommitConflict",
    "CommitResult",
    "ConflictError",
    "Event",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "ExecutionNotRedrivable",
    "ExecutionNotRunning",
    "ExecutionRecord",
    "ExecutionStatus",
    "Finish",
    "InvalidRouting",
    "InvalidToken",
    "LeaseLost",
    "LoadedExecution",
    "MachineType",
    "MachineVersion",
    "PublishedVersion",
    "ResourceNotFound",
    "StateMachineDoesNotExist",
    "Store",
    "StoreUnavailable",
    "TaskDoesNotExist",
    "TaskTimedOut",
    "TokenRecord",
    "TokenStatus",
    "default_database_url",
    "redrive_status",
]
