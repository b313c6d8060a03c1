"""Redriving a closed execution: AWS's eligibility rules and the one transaction that reopens it.

`redrive_status` is the single judgement of whether an execution may be
redriven, with AWS's ``redriveStatusReason`` strings; `describe` shows it and
`RedriveStore.redrive_execution` enforces it, so the two never disagree. The
redrive transaction locks the work row and the executions row (in the order
commits do), checks eligibility under that lock, and then reopens the
execution with `reopen.reopen` (RUNNING, a stop request cleared, the count
bumped, the date set, ``ExecutionRedriven`` appended, its work due now) —
the same body a Map Run's redriven children go through.
Two callers racing therefore redrive once: the second finds it RUNNING
and is refused — unless it carries the winner's client token, in which
case it gets the winner's answer (RedriveExecution is idempotent on
``clientToken``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store.base import StoreBase
from engine.store.codec import unescape_clear
from engine.store.errors import ExecutionDoesNotExist, ExecutionNotRedrivable
from engine.store.map_run_hook import is_child
from engine.store.records import ExecutionRecord, ExecutionStatus
from engine.store.reopen import reopen
from engine.store.rows import execution_record
from engine.store.schema import (
    executions,
    map_run_children,
    state_machine_versions,
    state_machines,
    work_queue,
)

__all__ = [
    "MAX_HISTORY_EVENTS",
    "REDRIVE_WINDOW",
    "RedriveStore",
    "redrive_status",
]

# A Map Run child its redriven run holds PENDING is the run's to reopen
# (`map_run_hook.release_children`): redriven directly as well, it would be
# reopened a second time when the run releases it, even after it SUCCEEDED.
_PENDING_IN_RUN = "Execution is pending redrive by its Map Run."


def _pending_in_run(conn: Connection, execution_id: str) -> bool:
    status = conn.execute(
        sa.select(map_run_children.c.status).where(map_run_children.c.execution_id == execution_id)
    ).scalar()
    return status == "PENDING"


# AWS: the execution must have closed at most 14 days ago.
REDRIVE_WINDOW = timedelta(days=14)
# AWS: fewer than 25,000 events, room left for ExecutionRedriven and one more.
MAX_HISTORY_EVENTS = 24_999
# AWS: an execution may be open for at most a year, redrives included.
_MAX_EXECUTION_TIME = timedelta(days=365)
_REDRIVABLE = frozenset(
    {ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED}
)


# The "type" of a machine that was deleted: none of its executions can be redriven.
DELETED = "DELETED"


def redrive_status(
    record: ExecutionRecord,
    now: datetime,
    *,
    machine_type: str = "STANDARD",
    window: timedelta = REDRIVE_WINDOW,
) -> tuple[str, str | None]:
    """``("REDRIVABLE", None)`` or ``("NOT_REDRIVABLE", AWS's reason)`` for `record` at `now`."""
    if machine_type == DELETED:
        return "NOT_REDRIVABLE", "State machine is deleted; its executions cannot be redriven."
    if machine_type != "STANDARD":
        return "NOT_REDRIVABLE", "Execution is EXPRESS and cannot be redriven."
    if record.status not in _REDRIVABLE:
        return "NOT_REDRIVABLE", f"Execution is {record.status} and cannot be redriven."
    if record.last_event_id >= MAX_HISTORY_EVENTS:
        return "NOT_REDRIVABLE", "Execution history event limit exceeded."
    if now - record.start_date > _MAX_EXECUTION_TIME:
        return "NOT_REDRIVABLE", "Execution has exceeded the max execution time."
    if record.stop_date is not None and now - record.stop_date > window:
        return "NOT_REDRIVABLE", "Execution redrivable period exceeded."
    return "REDRIVABLE", None


def _machine_type(conn: Connection, record: ExecutionRecord) -> str:
    """The type of the machine version `record` runs, or DELETED once the machine is."""
    row = conn.execute(
        sa.select(state_machine_versions.c.machine_type, state_machines.c.deleted_at)
        .select_from(
            state_machines.outerjoin(
                state_machine_versions,
                sa.and_(
                    state_machines.c.id == state_machine_versions.c.machine_id,
                    state_machine_versions.c.version == record.version,
                ),
            )
        )
        .where(state_machines.c.name == record.machine)
    ).first()
    if row is None or row.deleted_at is not None:
        return DELETED
    return str(row.machine_type or "STANDARD")


class RedriveStore(StoreBase):
    """The executions table's redrive transaction."""

    def machine_type_of(self, record: ExecutionRecord) -> str:
        """The type (STANDARD or EXPRESS) of the machine version `record` runs."""
        with self._read() as conn:
            return _machine_type(conn, record)

    def redrive_execution(
        self,
        execution_id: str,
        *,
        now: datetime,
        client_token: str | None = None,
        window: timedelta = REDRIVE_WINDOW,
    ) -> ExecutionRecord:
        """Reopen a closed execution from where it failed; returns its record (RUNNING).

        Raises ExecutionDoesNotExist, and ExecutionNotRedrivable with AWS's
        reason when `redrive_status` refuses it — except that a RUNNING
        execution whose last redrive carried the same `client_token`
        returns that redrive's record again.
        """
        with self._write() as conn:
            # Lock the work row before the executions row, as commit does.
            conn.execute(
                sa.select(work_queue.c.execution_id)
                .where(work_queue.c.execution_id == execution_id)
                .with_for_update()
            ).first()
            row = conn.execute(
                sa.select(executions)
                .where(executions.c.execution_id == execution_id)
                .with_for_update()
            ).first()
            if row is None:
                raise ExecutionDoesNotExist(f"Execution Does Not Exist: '{execution_id}'")
            record = execution_record(row, self._codec)
            if (
                client_token is not None
                and record.status == ExecutionStatus.RUNNING
                and unescape_clear(row.redrive_token) == client_token
            ):
                return record
            _status, reason = redrive_status(
                record, now, machine_type=_machine_type(conn, record), window=window
            )
            if reason is None and is_child(execution_id) and _pending_in_run(conn, execution_id):
                reason = _PENDING_IN_RUN
            if reason is not None:
                raise ExecutionNotRedrivable(reason)
            reopened = reopen(conn, record, now, self._codec, client_token=client_token)
            self._backend.notify_in(conn)
        self._waker.wake_local()
        return msgspec.structs.replace(record, **reopened)
