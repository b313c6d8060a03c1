"""The Engine's state machine calls: create, describe, update, delete; versions and aliases.

`MachineApi` is a mixin of `engine.Engine` (which supplies its store, clock
and lifecycle). A definition is validated here before the store sees it;
the store owns revisions, published versions and alias routing
(`engine.store.versions`), and the lifecycle resolves ``NAME``,
``NAME:VERSION`` and ``NAME:ALIAS`` when an execution starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from engine.errors import InvalidName
from engine.mixins import EngineParts
from engine.names import check_name
from engine.store import AliasRecord, MachineVersion, PublishedVersion
from statemachine.build import build, check_definition_size, load, parse_definition

__all__ = ["MachineApi", "stored_value"]


def stored_value(validated: Any, text: str) -> Any:
    """`text` decoded afresh when it is exactly the `validated` definition it encodes, else None.

    What a kept machine is built from (`MachineApi._put_machine`): the
    stored text's own value, never the caller's dicts (which the caller may
    change after the call), and only when the encoding lost nothing the
    validator saw (a tuple, a non-text key or a NaN does not survive JSON:
    such a definition is loaded from its stored text on first use instead).
    """
    value = msgspec.json.decode(text)
    return value if value == validated and isinstance(value, dict) else None


class MachineApi(EngineParts):
    """Mixin for `Engine`: state machines, versions and aliases (needs `.store`, `.clock`,
    `.lifecycle`)."""

    async def create_state_machine(
        self, name: str, definition: str | Mapping[str, Any], *, machine_type: str = "STANDARD"
    ) -> MachineVersion:
        """Validate `definition` and store it; a changed definition becomes a new version.

        Raises DefinitionError (with every diagnostic) when it is invalid,
        DEFINITION_TOO_LARGE when it is over 1 MiB as given.
        """
        check_name(name, what="state machine")
        check_definition_size(definition)
        raw = parse_definition(definition)
        load(raw, machine_type=machine_type)  # type: ignore[arg-type]
        text = msgspec.json.encode(raw).decode()
        return await self._put_machine(name, text, machine_type, stored_value(raw, text))

    async def _put_machine(
        self, name: str, text: str, machine_type: str, value: Any = None
    ) -> MachineVersion:
        """Store machine `name` (`MachineStore.put_state_machine`) and keep it as its head.

        The next start of it then needs no lookup on the loop's start
        connection (the guarded write still checks the head in the database).
        With `value` (`stored_value` of the validated definition and `text`),
        and when the store kept `text` itself as the revision's definition,
        the Engine's runtime keeps the machine built from `value`, so its
        first activation does not load the definition again.
        """
        version: MachineVersion = await self.lifecycle.run_db(
            self.store.put_state_machine, name, text, machine_type
        )
        heads = self.lifecycle.starts.heads
        if heads is not None:
            heads.seed(version)
        runtime = self._runtime
        if value is not None and runtime is not None and version.definition == text:
            runtime.keep_machine(version, build(value))
        return version

    async def describe_state_machine(self, name: str) -> MachineVersion:
        """The revision `name` runs: ``NAME`` (the latest), ``NAME:VERSION`` or ``NAME:ALIAS``.

        For an alias with two routes this is one of them, picked by weight.
        """
        return await self.lifecycle.resolve_machine(name)

    async def update_state_machine(
        self,
        name: str,
        definition: str | Mapping[str, Any],
        *,
        publish: bool = False,
        description: str | None = None,
    ) -> tuple[MachineVersion, PublishedVersion | None]:
        """Store a new revision of existing machine `name`; with `publish`, publish it too.

        Running executions keep the revision they started with. Raises
        StateMachineDoesNotExist and DefinitionError.
        """
        current = await self.lifecycle.run_db(self.store.get_state_machine, name)
        revision = await self.create_state_machine(
            name, definition, machine_type=current.machine_type
        )
        published = None
        if publish:
            published = await self.publish_version(
                name, description=description, revision=revision.version
            )
        return revision, published

    async def publish_version(
        self, name: str, *, description: str | None = None, revision: int | None = None
    ) -> PublishedVersion:
        """Publish the latest revision (or `revision`) of `name` as its next version number.

        Publishing the revision the newest version already holds returns that
        version. Raises StateMachineDoesNotExist and ResourceNotFound.
        """
        return await self.lifecycle.run_db(
            self.store.publish_version,
            name,
            now=self.clock.now(),
            description=description,
            revision=revision,
        )

    async def list_versions(self, name: str) -> list[PublishedVersion]:
        """The published versions of `name`, newest first."""
        return await self.lifecycle.run_db(self.store.list_versions, name)

    async def delete_version(self, name: str, number: int) -> None:
        """Delete version `number` of `name`; ConflictError while an alias routes to it."""
        await self.lifecycle.run_db(self.store.delete_version, name, number, now=self.clock.now())

    async def create_alias(
        self,
        machine: str,
        alias: str,
        routes: Sequence[tuple[int, int]],
        *,
        description: str | None = None,
    ) -> AliasRecord:
        """Create alias `alias` of `machine` routing to (version, weight) pairs summing to 100.

        Raises InvalidName, InvalidRouting, ResourceNotFound and ConflictError.
        """
        check_name(alias, what="alias")
        if alias.isdigit():
            raise InvalidName(f"Invalid Name: '{alias}' (an alias name cannot be a number)")
        return await self.lifecycle.run_db(
            self.store.create_alias,
            machine,
            alias,
            routes,
            now=self.clock.now(),
            description=description,
        )

    async def update_alias(
        self,
        machine: str,
        alias: str,
        *,
        routes: Sequence[tuple[int, int]] | None = None,
        description: str | None = None,
    ) -> AliasRecord:
        """Change an alias's routes and/or description (new starts follow; running ones don't)."""
        return await self.lifecycle.run_db(
            self.store.update_alias,
            machine,
            alias,
            now=self.clock.now(),
            routes=routes,
            description=description,
        )

    async def describe_alias(self, machine: str, alias: str) -> AliasRecord:
        """Alias `alias` of `machine`; raises ResourceNotFound."""
        return await self.lifecycle.run_db(self.store.get_alias, machine, alias)

    async def list_aliases(self, machine: str) -> list[AliasRecord]:
        """The aliases of `machine`, newest first."""
        return await self.lifecycle.run_db(self.store.list_aliases, machine)

    async def delete_alias(self, machine: str, alias: str) -> None:
        """Delete an alias; its versions stay."""
        await self.lifecycle.run_db(self.store.delete_alias, machine, alias)

    async def delete_state_machine(self, name: str) -> None:
        """Delete machine `name` (see `MachineStore.delete_state_machine`); unknown: a no-op."""
        await self.lifecycle.run_db(self.store.delete_state_machine, name, now=self.clock.now())
        heads = self.lifecycle.starts.heads
        if heads is not None:
            heads.forget(name)

    async def list_state_machines(self) -> list[MachineVersion]:
        return await self.lifecycle.run_db(self.store.list_state_machines)
