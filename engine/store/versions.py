"""Published versions and aliases of state machines, as AWS Step Functions has them.

Every definition change is a revision (`MachineStore`, state_machine_versions);
publishing snapshots a revision as version N — numbers rise from 1 per
machine and are never reused, so a deleted version's row stays, marked
deleted. Publishing the revision the newest live version already points at
returns that version (AWS is idempotent there). An alias routes to one or
two published versions of its machine with weights summing to 100; a version
an alias routes to cannot be deleted (ConflictError). Each machine's row
lock orders publishes and alias changes, so concurrent callers take turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store.base import StoreBase
from engine.store.errors import (
    ConflictError,
    InvalidRouting,
    ResourceNotFound,
    StateMachineDoesNotExist,
)
from engine.store.schema import (
    machine_aliases,
    published_versions,
    state_machine_versions,
    state_machines,
)

__all__ = ["MAX_ALIASES", "MAX_VERSIONS", "AliasRecord", "PublishedVersion", "VersionStore"]

# AWS's quotas per state machine.
MAX_VERSIONS = 1000
MAX_ALIASES = 100


class PublishedVersion(msgspec.Struct, frozen=True):
    """Version `number` of machine `machine`: an immutable pointer to one revision."""

    machine: str
    number: int
    revision: int
    description: str | None
    created_at: datetime


class AliasRecord(msgspec.Struct, frozen=True):
    """An alias of machine `machine`: routes are (version number, weight) pairs."""

    machine: str
    name: str
    description: str | None
    routes: tuple[tuple[int, int], ...]
    created_at: datetime
    updated_at: datetime


def _machine_id(conn: Connection, machine: str, *, lock: bool = False) -> int:
    query = sa.select(state_machines.c.id).where(state_machines.c.name == machine)
    if lock:
        query = query.with_for_update()
    found = conn.execute(query).scalar()
    if found is None:
        raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{machine}'")
    return int(found)


def _version(machine: str, row: Any) -> PublishedVersion:
    mapping = row._mapping
    return PublishedVersion(
        machine=machine,
        number=int(mapping["number"]),
        revision=int(mapping["revision"]),
        description=mapping["description"],
        created_at=mapping["created_at"],
    )


def _alias(machine: str, row: Any) -> AliasRecord:
    mapping = row._mapping
    routes = msgspec.json.decode(str(mapping["routes"]), type=list[tuple[int, int]])
    return AliasRecord(
        machine=machine,
        name=str(mapping["name"]),
        description=mapping["description"],
        routes=tuple(routes),
        created_at=mapping["created_at"],
        updated_at=mapping["updated_at"],
    )


def _live_versions(conn: Connection, machine_id: int) -> set[int]:
    return {
        int(number)
        for number in conn.execute(
            sa.select(published_versions.c.number).where(
                published_versions.c.machine_id == machine_id,
                published_versions.c.deleted_at.is_(None),
            )
        ).scalars()
    }


def _check_routes(
    conn: Connection, machine: str, machine_id: int, routes: Sequence[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    checked = tuple((int(number), int(weight)) for number, weight in routes)
    if not 1 <= len(checked) <= 2:
        raise InvalidRouting("INVALID_ROUTING_CONFIGURATION: an alias routes to 1 or 2 versions")
    if len({number for number, _ in checked}) != len(checked):
        raise InvalidRouting("INVALID_ROUTING_CONFIGURATION: the two routes name one version")
    if any(not 0 <= weight <= 100 for _, weight in checked):
        raise InvalidRouting("INVALID_ROUTING_CONFIGURATION: each weight is 0 to 100")
    if sum(weight for _, weight in checked) != 100:
        raise InvalidRouting("INVALID_ROUTING_CONFIGURATION: the weights must sum to 100")
    live = _live_versions(conn, machine_id)
    for number, _ in checked:
        if number not in live:
            raise ResourceNotFound(f"Resource not found: '{machine}:{number}'")
    return checked


class VersionStore(StoreBase):
    """The store's published-version and alias calls (a part of `Store`)."""

    # -- versions ------------------------------------------------------------
    def publish_version(
        self,
        machine: str,
        *,
        now: datetime,
        description: str | None = None,
        revision: int | None = None,
    ) -> PublishedVersion:
        """Publish `revision` (None: the latest) of `machine` as its next version number.

        Returns the newest live version instead when it already points at
        that revision. Raises StateMachineDoesNotExist, ResourceNotFound (no
        such revision) and ConflictError (the 1000-version quota).
        """
        with self._write() as conn:
            machine_id = _machine_id(conn, machine, lock=True)
            latest_revision = conn.execute(
                sa.select(sa.func.max(state_machine_versions.c.version)).where(
                    state_machine_versions.c.machine_id == machine_id
                )
            ).scalar()
            wanted = latest_revision if revision is None else revision
            if latest_revision is None or wanted is None or not 1 <= wanted <= latest_revision:
                raise ResourceNotFound(f"Resource not found: revision {revision} of '{machine}'")
            newest = conn.execute(
                sa.select(published_versions)
                .where(
                    published_versions.c.machine_id == machine_id,
                    published_versions.c.deleted_at.is_(None),
                )
                .order_by(published_versions.c.number.desc())
                .limit(1)
            ).first()
            if newest is not None and newest.revision == wanted:
                return _version(machine, newest)
            top = conn.execute(
                sa.select(sa.func.max(published_versions.c.number)).where(
                    published_versions.c.machine_id == machine_id
                )
            ).scalar()
            if len(_live_versions(conn, machine_id)) >= MAX_VERSIONS:
                raise ConflictError(f"'{machine}' already has {MAX_VERSIONS} versions")
            number = int(top or 0) + 1
            conn.execute(
                sa.insert(published_versions).values(
                    machine_id=machine_id,
                    number=number,
                    revision=wanted,
                    description=description,
                    created_at=now,
                )
            )
        return PublishedVersion(machine, number, int(wanted), description, now)

    def get_version(self, machine: str, number: int) -> PublishedVersion:
        """Version `number` of `machine`; ResourceNotFound when absent or deleted."""
        with self._read() as conn:
            machine_id = _machine_id(conn, machine)
            row = conn.execute(
                sa.select(published_versions).where(
                    published_versions.c.machine_id == machine_id,
                    published_versions.c.number == number,
                    published_versions.c.deleted_at.is_(None),
                )
            ).first()
        if row is None:
            raise ResourceNotFound(f"Resource not found: '{machine}:{number}'")
        return _version(machine, row)

    def list_versions(self, machine: str) -> list[PublishedVersion]:
        """The live versions of `machine`, newest first."""
        with self._read() as conn:
            machine_id = _machine_id(conn, machine)
            rows = conn.execute(
                sa.select(published_versions)
                .where(
                    published_versions.c.machine_id == machine_id,
                    published_versions.c.deleted_at.is_(None),
                )
                .order_by(published_versions.c.number.desc())
            )
            return [_version(machine, row) for row in rows]

    def delete_version(self, machine: str, number: int, *, now: datetime) -> None:
        """Delete version `number` (its number is never reused); deleting it again is a no-op.

        Running executions of it carry on. Raises ConflictError while an
        alias routes to it.
        """
        with self._write() as conn:
            machine_id = _machine_id(conn, machine, lock=True)
            for row in conn.execute(
                sa.select(machine_aliases).where(machine_aliases.c.machine_id == machine_id)
            ):
                alias = _alias(machine, row)
                if any(routed == number for routed, _ in alias.routes):
                    raise ConflictError(
                        f"Version {number} of '{machine}' is referenced by alias '{alias.name}'"
                    )
            conn.execute(
                sa.update(published_versions)
                .where(
                    published_versions.c.machine_id == machine_id,
                    published_versions.c.number == number,
                    published_versions.c.deleted_at.is_(None),
                )
                .values(deleted_at=now)
            )

    # -- aliases ---------------------------------------------------------------
    def create_alias(
        self,
        machine: str,
        name: str,
        routes: Sequence[tuple[int, int]],
        *,
        now: datetime,
        description: str | None = None,
    ) -> AliasRecord:
        """Create alias `name` of `machine`; the same call again returns the existing alias.

        Raises StateMachineDoesNotExist, InvalidRouting (not 1 or 2 routes,
        weights not summing to 100), ResourceNotFound (a version missing)
        and ConflictError (the name is taken with another configuration, or
        the 100-alias quota).
        """
        with self._write() as conn:
            machine_id = _machine_id(conn, machine, lock=True)
            checked = _check_routes(conn, machine, machine_id, routes)
            existing = conn.execute(
                sa.select(machine_aliases).where(
                    machine_aliases.c.machine_id == machine_id, machine_aliases.c.name == name
                )
            ).first()
            if existing is not None:
                found = _alias(machine, existing)
                if found.routes == checked and found.description == description:
                    return found
                raise ConflictError(f"Alias '{machine}:{name}' already exists")
            count = conn.execute(
                sa.select(sa.func.count()).where(machine_aliases.c.machine_id == machine_id)
            ).scalar()
            if int(count or 0) >= MAX_ALIASES:
                raise ConflictError(f"'{machine}' already has {MAX_ALIASES} aliases")
            conn.execute(
                sa.insert(machine_aliases).values(
                    machine_id=machine_id,
                    name=name,
                    description=description,
                    routes=msgspec.json.encode([list(route) for route in checked]).decode(),
                    created_at=now,
                    updated_at=now,
                )
            )
        return AliasRecord(machine, name, description, checked, now, now)

    def update_alias(
        self,
        machine: str,
        name: str,
        *,
        now: datetime,
        routes: Sequence[tuple[int, int]] | None = None,
        description: str | None = None,
    ) -> AliasRecord:
        """Change an alias's routes and/or description; raises ResourceNotFound when absent."""
        with self._write() as conn:
            machine_id = _machine_id(conn, machine, lock=True)
            current = self._alias_row(conn, machine, machine_id, name)
            values: dict[str, object] = {"updated_at": now}
            if routes is not None:
                checked = _check_routes(conn, machine, machine_id, routes)
                values["routes"] = msgspec.json.encode([list(r) for r in checked]).decode()
            if description is not None:
                values["description"] = description
            conn.execute(
                sa.update(machine_aliases)
                .where(machine_aliases.c.machine_id == machine_id, machine_aliases.c.name == name)
                .values(**values)
            )
            return msgspec.structs.replace(
                current,
                routes=checked if routes is not None else current.routes,
                description=description if description is not None else current.description,
                updated_at=now,
            )

    def get_alias(self, machine: str, name: str) -> AliasRecord:
        """Alias `name` of `machine`; ResourceNotFound when absent."""
        with self._read() as conn:
            return self._alias_row(conn, machine, _machine_id(conn, machine), name)

    def list_aliases(self, machine: str) -> list[AliasRecord]:
        """The aliases of `machine`, newest first."""
        with self._read() as conn:
            machine_id = _machine_id(conn, machine)
            rows = conn.execute(
                sa.select(machine_aliases)
                .where(machine_aliases.c.machine_id == machine_id)
                .order_by(machine_aliases.c.created_at.desc(), machine_aliases.c.name.desc())
            )
            return [_alias(machine, row) for row in rows]

    def delete_alias(self, machine: str, name: str) -> None:
        """Delete alias `name` (its versions stay); deleting an absent alias is a no-op."""
        with self._write() as conn:
            machine_id = _machine_id(conn, machine, lock=True)
            conn.execute(
                sa.delete(machine_aliases).where(
                    machine_aliases.c.machine_id == machine_id, machine_aliases.c.name == name
                )
            )

    @staticmethod
    def _alias_row(conn: Connection, machine: str, machine_id: int, name: str) -> AliasRecord:
        row = conn.execute(
            sa.select(machine_aliases).where(
                machine_aliases.c.machine_id == machine_id, machine_aliases.c.name == name
            )
        ).first()
        if row is None:
            raise ResourceNotFound(f"Resource not found: '{machine}:{name}'")
        return _alias(machine, row)
