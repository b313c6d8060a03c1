"""Row plumbing shared by the store's modules: hashes, JSON comparison and row-to-record conversion.

Nothing here opens a transaction; these are the small pure pieces the
`Store` and the checkpoint writer both need, kept apart so each of those
modules stays about one idea.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import sqlalchemy as sa

from engine.store.codec import PayloadCodec, unescape_clear
from engine.store.records import ExecutionRecord, MachineVersion, TokenRecord
from engine.store.schema import executions, state_machine_versions, state_machines

__all__ = [
    "EXECUTION_BY_ID",
    "MACHINE_COLUMNS",
    "MACHINE_JOIN",
    "encode_details",
    "execution_record",
    "hash_definition",
    "machine_version",
    "same_json",
    "token_record",
]


def hash_definition(definition: str, machine_type: str) -> str:
    # Hash the parsed JSON, not the text, so re-indenting a definition does
    # not mint a new version; text that is not JSON is hashed as it is.
    try:
        canonical = msgspec.json.encode(msgspec.json.decode(definition), order="sorted")
    except msgspec.DecodeError:
        canonical = definition.encode()
    return hashlib.sha256(machine_type.encode() + b"\n" + canonical).hexdigest()


def same_json(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return bool(msgspec.json.decode(a) == msgspec.json.decode(b))
    except msgspec.DecodeError:
        return False


def encode_details(details: dict[str, Any]) -> str:
    return msgspec.json.encode(details).decode()


# An execution's row by id: `Store.get_execution`'s read (on SQLite through the
# driver, `rawstart.first_row`), and the read-back SQLite's raw finishing commit
# makes inside its transaction (`sqlitecommit.raw_commit_reading`).
EXECUTION_BY_ID = sa.select(executions).where(executions.c.execution_id == sa.bindparam("ref"))


def execution_record(row: Any, codec: PayloadCodec) -> ExecutionRecord:
    """The record of an executions row, its payload columns opened by `codec`."""
    return ExecutionRecord(
        execution_id=row.execution_id,
        name=row.name,
        machine=row.machine,
        version=row.version,
        status=row.status,
        input=codec.open(row.input),
        output=codec.open_optional(row.output),
        error=unescape_clear(row.error),
        cause=codec.open_optional(row.cause),
        start_date=row.start_date,
        stop_date=row.stop_date,
        trace_id=row.trace_id,
        stop_requested=bool(row.stop_requested),
        stop_requested_error=unescape_clear(row.stop_requested_error),
        stop_requested_cause=codec.open_optional(row.stop_requested_cause),
        last_event_id=row.last_event_id,
        queue=row.queue,
        redrive_count=row.redrive_count,
        redrive_date=row.redrive_date,
        published_version=row.published_version,
        alias=row.alias,
    )


def token_record(row: Any) -> TokenRecord:
    return TokenRecord(
        token=row.token,
        execution_id=row.execution_id,
        key=row.key,
        state_name=row.state_name,
        status=row.status,
        heartbeat_at=row.heartbeat_at,
        created_at=row.created_at,
    )


MACHINE_COLUMNS = (
    state_machines.c.name,
    state_machine_versions.c.version,
    state_machine_versions.c.definition,
    state_machine_versions.c.content_hash,
    state_machine_versions.c.machine_type,
    state_machine_versions.c.created_at,
)
MACHINE_JOIN = state_machines.join(
    state_machine_versions, state_machine_versions.c.machine_id == state_machines.c.id
)


def machine_version(row: Any) -> MachineVersion:
    return MachineVersion(
        name=row.name,
        version=row.version,
        definition=row.definition,
        content_hash=row.content_hash,
        machine_type=row.machine_type,
        created_at=row.created_at,
    )
