"""State machines in the store: named definitions, each change a new immutable version.

A put records a definition as the machine's next version unless its content
(the parsed JSON and the type) equals the latest, so re-indenting a file or
deploying the same definition twice mints nothing. Versions are numbered
1, 2, … per machine; concurrent puts of one machine take turns on its row lock.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from engine.store.base import StoreBase
from engine.store.errors import StateMachineDoesNotExist
from engine.store.records import MachineType, MachineVersion
from engine.store.rows import MACHINE_COLUMNS, MACHINE_JOIN, hash_definition, machine_version
from engine.store.schema import state_machine_versions, state_machines

__all__ = ["MachineStore"]


class MachineStore(StoreBase):
    """The store's state machine calls (a part of `Store`)."""

    def put_state_machine(
        self, name: str, definition: str, machine_type: str = MachineType.STANDARD
    ) -> MachineVersion:
        """Record `definition` as the next version of machine `name`, unless it is unchanged.

        The content hash covers the parsed definition and the type: when it
        equals the latest version's, that version is returned and nothing is
        written. Raises ValueError for a type other than STANDARD/EXPRESS.
        """
        machine_type = MachineType(machine_type).value
        content_hash = hash_definition(definition, machine_type)
        now = datetime.now(UTC)
        with self._write() as conn:
            conn.execute(
                self._backend.insert_ignoring_duplicates(
                    state_machines,
                    {"name": name, "type": machine_type, "created_at": now},
                    key=["name"],
                )
            )
            # The row lock makes concurrent puts of one machine take turns.
            machine_id = conn.execute(
                sa.select(state_machines.c.id)
                .where(state_machines.c.name == name)
                .with_for_update()
            ).scalar_one()
            latest = conn.execute(
                sa.select(*MACHINE_COLUMNS)
                .select_from(MACHINE_JOIN)
                .where(state_machines.c.id == machine_id)
                .order_by(state_machine_versions.c.version.desc())
                .limit(1)
            ).first()
            if latest is not None and latest.content_hash == content_hash:
                return machine_version(latest)
            version = 1 if latest is None else latest.version + 1
            conn.execute(
                sa.insert(state_machine_versions).values(
                    machine_id=machine_id,
                    version=version,
                    definition=definition,
                    content_hash=content_hash,
                    machine_type=machine_type,
                    created_at=now,
                )
            )
            conn.execute(
                sa.update(state_machines)
                .where(state_machines.c.id == machine_id)
                .values(type=machine_type)
            )
        return MachineVersion(name, version, definition, content_hash, machine_type, now)

    def get_state_machine(self, name: str, version: int | None = None) -> MachineVersion:
        """Return one version of machine `name` (the latest when `version` is None).

        Raises StateMachineDoesNotExist when the machine or version is unknown.
        """
        query = sa.select(*MACHINE_COLUMNS).select_from(MACHINE_JOIN)
        query = query.where(state_machines.c.name == name)
        if version is None:
            query = query.order_by(state_machine_versions.c.version.desc()).limit(1)
        else:
            query = query.where(state_machine_versions.c.version == version)
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            what = name if version is None else f"{name}:{version}"
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{what}'")
        return machine_version(row)

    def list_state_machines(self) -> list[MachineVersion]:
        """Return the latest version of every state machine, ordered by name."""
        latest = (
            sa.select(
                state_machine_versions.c.machine_id,
                sa.func.max(state_machine_versions.c.version).label("version"),
            )
            .group_by(state_machine_versions.c.machine_id)
            .subquery()
        )
        query = (
            sa.select(*MACHINE_COLUMNS)
            .select_from(MACHINE_JOIN)
            .join(
                latest,
                sa.and_(
                    latest.c.machine_id == state_machine_versions.c.machine_id,
                    latest.c.version == state_machine_versions.c.version,
                ),
            )
            .order_by(state_machines.c.name)
        )
        with self._read() as conn:
            return [machine_version(row) for row in conn.execute(query)]
