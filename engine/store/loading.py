"""Loading executions for a replay: the record, its machine version, its journal and tokens.

One function reads what `Store.load` returns for any number of executions on
one connection, so the worker's claim (`WorkStore.claim_due_loaded`) loads
what it just leased inside the claiming transaction — under the claim's row
locks, nothing read outside the lease — instead of a separate `load` per
execution afterwards: one statement each for the records, their machine
versions and their tokens, whatever the number claimed, and one journal read
per execution through the backend's raw-driver path.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store.backend import Backend
from engine.store.codec import PayloadCodec
from engine.store.records import LoadedExecution, MachineVersion, TokenRecord
from engine.store.rows import (
    MACHINE_COLUMNS,
    MACHINE_JOIN,
    execution_record,
    machine_version,
    token_record,
)
from engine.store.schema import executions, state_machine_versions, state_machines, task_tokens

__all__ = ["load_executions"]


def load_executions(
    conn: Connection, backend: Backend, codec: PayloadCodec, execution_ids: Sequence[str]
) -> dict[str, LoadedExecution]:
    """What `Store.load` returns for each of `execution_ids`, read on `conn`.

    An execution missing from the result has no row, or its machine version
    is gone: the caller's own `Store.load` raises the error that says which.
    """
    if not execution_ids:
        return {}
    ids = sorted(set(execution_ids))
    records = {
        row.execution_id: execution_record(row, codec)
        for row in conn.execute(sa.select(executions).where(executions.c.execution_id.in_(ids)))
    }
    if not records:
        return {}
    wanted = sorted({(record.machine, record.version) for record in records.values()})
    machines: dict[tuple[str, int], MachineVersion] = {}
    for row in conn.execute(
        sa.select(*MACHINE_COLUMNS)
        .select_from(MACHINE_JOIN)
        .where(sa.tuple_(state_machines.c.name, state_machine_versions.c.version).in_(wanted))
    ):
        version = machine_version(row)
        machines[(version.name, version.version)] = version
    tokens: dict[str, dict[str, TokenRecord]] = {execution_id: {} for execution_id in records}
    for row in conn.execute(sa.select(task_tokens).where(task_tokens.c.execution_id.in_(ids))):
        tokens[row.execution_id][row.key] = token_record(row)
    open_value = codec.open
    loaded: dict[str, LoadedExecution] = {}
    for execution_id, record in records.items():
        machine = machines.get((record.machine, record.version))
        if machine is None:
            continue
        journal_values = {
            key: open_value(value) for key, value in backend.journal_rows(conn, execution_id)
        }
        loaded[execution_id] = LoadedExecution(
            record=record,
            machine=machine,
            journal=journal_values,
            last_event_id=record.last_event_id,
            tokens=tokens[execution_id],
        )
    return loaded
