"""State machines in the store: named definitions, each change a new immutable version.

A put records a definition as the machine's next version unless its content
(the parsed JSON and the type) equals the latest, so re-indenting a file or
deploying the same definition twice mints nothing. Versions are numbered
1, 2, … per machine; concurrent puts of one machine take turns on its row lock.

Deleting a machine marks it (``deleted_at``), drops its aliases and deletes
its published versions; its revisions stay, because its running executions
still walk them and its finished ones' histories name them. The machine is
DELETING while any execution of it is RUNNING and gone afterwards (unknown
to describe and start); putting a definition under a gone machine's name
brings the name back into use.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from engine.store.base import StoreBase
from engine.store.errors import StateMachineDeleting, StateMachineDoesNotExist
from engine.store.records import MachineType, MachineVersion
from engine.store.rows import MACHINE_COLUMNS, MACHINE_JOIN, hash_definition, machine_version
from engine.store.schema import (
    executions,
    machine_aliases,
    published_versions,
    resource_tags,
    state_machine_versions,
    state_machines,
)

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
            machine_id, deleted_at = conn.execute(
                sa.select(state_machines.c.id, state_machines.c.deleted_at)
                .where(state_machines.c.name == name)
                .with_for_update()
            ).one()
            if deleted_at is not None:
                if _running(conn, name):
                    raise StateMachineDeleting(f"State machine '{name}' is being deleted")
                conn.execute(
                    sa.update(state_machines)
                    .where(state_machines.c.id == machine_id)
                    .values(deleted_at=None)
                )
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
        """Return the latest version of every state machine, ordered by name.

        The hidden machines a Distributed Map's children run are left out.
        """
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
            .where(state_machines.c.deleted_at.is_(None))
            # Distributed Map children's hidden machines (<machine>/<label>) are not listed.
            .where(~state_machines.c.name.contains("/", autoescape=True))
            .order_by(state_machines.c.name)
        )
        with self._read() as conn:
            return [machine_version(row) for row in conn.execute(query)]

    def delete_state_machine(self, name: str, *, now: datetime) -> None:
        """Mark machine `name` deleted, with its aliases and published versions.

        Its running executions carry on to their end; starting a new one
        raises StateMachineDeleting while any runs, StateMachineDoesNotExist
        after. Deleting an unknown or already deleted machine does nothing
        (as on AWS, where DeleteStateMachine has no not-found error).
        """
        with self._write() as conn:
            found = conn.execute(
                sa.select(state_machines.c.id, state_machines.c.deleted_at)
                .where(state_machines.c.name == name)
                .with_for_update()
            ).first()
            if found is None or found.deleted_at is not None:
                return
            conn.execute(
                sa.update(state_machines)
                .where(state_machines.c.id == found.id)
                .values(deleted_at=now)
            )
            conn.execute(sa.delete(machine_aliases).where(machine_aliases.c.machine_id == found.id))
            # Its tags go with it (kept under "stateMachine:NAME", see store/activities.py).
            conn.execute(
                sa.delete(resource_tags).where(resource_tags.c.resource == f"stateMachine:{name}")
            )
            conn.execute(
                sa.update(published_versions)
                .where(
                    published_versions.c.machine_id == found.id,
                    published_versions.c.deleted_at.is_(None),
                )
                .values(deleted_at=now)
            )

    def state_machine_status(self, name: str) -> str:
        """AWS's status of machine `name`: ACTIVE, or DELETING while its executions finish.

        Raises StateMachineDoesNotExist for an unknown machine, and for a
        deleted one once none of its executions is RUNNING.
        """
        with self._read() as conn:
            deleted_at = conn.execute(
                sa.select(state_machines.c.deleted_at).where(state_machines.c.name == name)
            ).first()
            if deleted_at is not None and deleted_at[0] is None:
                return "ACTIVE"
            if deleted_at is not None and _running(conn, name):
                return "DELETING"
        raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{name}'")


def _running(conn: sa.Connection, name: str) -> bool:
    """Whether any execution of machine `name` is RUNNING."""
    return (
        conn.execute(
            sa.select(executions.c.execution_id)
            .where(executions.c.machine == name, executions.c.status == "RUNNING")
            .limit(1)
        ).first()
        is not None
    )
