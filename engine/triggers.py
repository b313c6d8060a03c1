"""Triggers: start a state machine when another's execution reaches a status, exactly once.

A trigger is a rule in the alerts' outbox (`engine/store/outbox.py`, kind
``trigger``): when an execution of machine A closes with one of the
trigger's statuses, the commit that records it also queues the trigger's
delivery, and a worker delivers it by starting machine B through
`Lifecycle.start`, with A's output (default) or input as B's input. B's
execution name is derived from the trigger and A's execution
(`triggered_name`), so a delivery retried after a crash — even a SIGKILL
right after A's last commit — finds B already started and starts nothing:
exactly one B per A execution. A paused trigger queues nothing for the
executions that close while it is paused. Triggers and alerts share one
namespace of names. Folder-watching triggers are not built yet.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from engine.clock import Clock
from engine.lifecycle import Lifecycle, RunDb
from engine.names import check_name
from engine.runner import execution_arn
from engine.store import ExecutionDoesNotExist, ExecutionRecord, ExecutionStatus, Store
from engine.store.outbox import AlertDoesNotExist, AlertRecord, InvalidAlert

__all__ = ["INPUT_SOURCES", "Triggers", "start_triggered", "triggered_name"]

INPUT_SOURCES = ("output", "input")
# A triggered execution's name adds "-" and 16 hex digits and must stay within 80.
MAX_TRIGGER_NAME = 63


def triggered_name(trigger: str, upstream_execution_id: str) -> str:
    """The name of the execution `trigger` starts for one upstream execution."""
    digest = hashlib.sha256(upstream_execution_id.encode()).hexdigest()[:16]
    return f"{trigger}-{digest}"


async def start_triggered(
    lifecycle: Lifecycle, trigger: AlertRecord, upstream: ExecutionRecord
) -> ExecutionRecord:
    """Start (once) the execution `trigger` owes `upstream`, or return it if it exists."""
    source, _, machine = trigger.target.removeprefix("start:").partition(":")
    payload = upstream.output if source == "output" else upstream.input
    value = json.loads(payload) if payload else {}
    name = triggered_name(trigger.name, upstream.execution_id)
    version = await lifecycle.resolve_machine(machine)
    try:
        return await lifecycle.describe(execution_arn(version.name, name))
    except ExecutionDoesNotExist:
        return await lifecycle.start(machine, value, name=name)


@dataclass(frozen=True)
class Triggers:
    """The trigger operations on one store, for the Engine and the CLI."""

    store: Store
    lifecycle: Lifecycle
    clock: Clock
    run_db: RunDb

    async def create(
        self,
        name: str,
        *,
        machine: str,
        on_execution_of: str,
        statuses: list[str],
        input_from: str = "output",
    ) -> AlertRecord:
        """Start `machine` when an execution of `on_execution_of` closes with one of `statuses`.

        Raises InvalidName, InvalidAlert (a bad status or input source),
        StateMachineDoesNotExist and AlertAlreadyExists.
        """
        check_name(name, what="trigger")
        if len(name) > MAX_TRIGGER_NAME:
            raise InvalidAlert(f"trigger name {name!r} is over {MAX_TRIGGER_NAME} characters")
        if input_from not in INPUT_SOURCES:
            raise InvalidAlert(f"--input is output or input, not {input_from!r}")
        if not statuses:
            raise InvalidAlert("a trigger needs at least one status")
        for status in statuses:
            if status not in ExecutionStatus.__members__ or status == "RUNNING":
                raise InvalidAlert(f"{status!r} is not a closing status")
        await self.lifecycle.resolve_machine(machine)
        upstream = await self.lifecycle.resolve_machine(on_execution_of)
        record = AlertRecord(
            name=name,
            machine=upstream.name,
            statuses=tuple(statuses),
            target=f"start:{input_from}:{machine}",
            kind="trigger",
            created_at=self.clock.now(),
        )
        return await self.run_db(self.store.create_alert, record)

    async def describe(self, name: str) -> AlertRecord:
        """The trigger called `name`. Raises AlertDoesNotExist."""
        try:
            record = await self.run_db(self.store.get_alert, name)
        except AlertDoesNotExist:
            record = None
        if record is None or record.kind != "trigger":
            raise AlertDoesNotExist(f"Trigger {name} does not exist.")
        return record

    async def list_all(self) -> list[AlertRecord]:
        return await self.run_db(self.store.list_alerts, kind="trigger")

    async def delete(self, name: str) -> None:
        await self.describe(name)
        await self.run_db(self.store.delete_alert, name)

    async def pause(self, name: str) -> AlertRecord:
        await self.describe(name)
        return await self.run_db(self.store.set_alert_paused, name, True)

    async def resume(self, name: str) -> AlertRecord:
        await self.describe(name)
        return await self.run_db(self.store.set_alert_paused, name, False)
