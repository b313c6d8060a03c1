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
namespace of names.

A folder-watching trigger (kind ``watch``; its folder and glob pattern kept
in the rule's headers) is polled by `FolderWatcher`, a loop in every worker
that sleeps `poll_seconds` between scans (no busy loop): each file version
(path, size, modification time) starts one execution named from a hash of
the three, with ``{"path", "size", "modificationTime"}`` as input, so two
workers or two scans seeing one file version start it once, and a rewritten
file is a new version.

A webhook trigger (kind ``webhook``; its secret sealed in the rule's
secret column) is served by `stepwise serve` at ``POST /triggers/NAME``
(`engine.http.webhooks`): each authenticated request starts one execution,
named by `webhook_execution_name` from its ``Idempotency-Key`` so a retried
request starts it once.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.clock import Clock
from engine.lifecycle import Lifecycle, RunDb
from engine.names import check_name
from engine.runner import execution_arn
from engine.store import ExecutionDoesNotExist, ExecutionRecord, ExecutionStatus, Store
from engine.store.errors import StoreUnavailable
from engine.store.outbox import AlertDoesNotExist, AlertRecord, InvalidAlert
from engine.worker import outage_of
from statemachine.errors import StepwiseError

__all__ = [
    "INPUT_SOURCES",
    "TRIGGER_KINDS",
    "FolderWatcher",
    "Triggers",
    "start_triggered",
    "triggered_name",
    "webhook_execution_name",
]

log = logging.getLogger("stepwise.triggers")

INPUT_SOURCES = ("output", "input")
# A triggered execution's name adds "-" and 16 hex digits and must stay within 80.
MAX_TRIGGER_NAME = 63
# The alert-table kinds that are triggers: on executions, on folders, on HTTP requests.
TRIGGER_KINDS = ("trigger", "watch", "webhook")


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


def webhook_execution_name(trigger: str, idempotency_key: str) -> str:
    """The execution a webhook request with `idempotency_key` starts (one per key)."""
    digest = hashlib.sha256(f"webhook|{idempotency_key}".encode()).hexdigest()[:16]
    return f"{trigger}-{digest}"


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

    async def create_watch(
        self, name: str, *, machine: str, directory: str, pattern: str = "*"
    ) -> AlertRecord:
        """Start `machine` once per new file version in `directory` matching `pattern`.

        Raises InvalidName, InvalidAlert (not a folder), StateMachineDoesNotExist
        and AlertAlreadyExists.
        """
        check_name(name, what="trigger")
        if len(name) > MAX_TRIGGER_NAME:
            raise InvalidAlert(f"trigger name {name!r} is over {MAX_TRIGGER_NAME} characters")
        folder = os.path.abspath(directory)
        if not os.path.isdir(folder):
            raise InvalidAlert(f"--watch {directory}: not a folder")
        await self.lifecycle.resolve_machine(machine)
        record = AlertRecord(
            name=name,
            machine=None,
            statuses=(),
            target=f"watch:{machine}",
            headers={"directory": folder, "pattern": pattern},
            kind="watch",
            created_at=self.clock.now(),
        )
        return await self.run_db(self.store.create_alert, record)

    async def create_webhook(
        self, name: str, *, machine: str, secret: str | None = None
    ) -> tuple[AlertRecord, str]:
        """Start `machine` on each authenticated ``POST /triggers/NAME`` of `stepwise serve`.

        The request is authenticated by a Standard Webhooks signature under
        `secret` or by ``Authorization: Bearer <secret>``. Without `secret` a
        fresh ``whsec_`` one is made. Returns the trigger and its secret (the
        only time the secret is handed back; it is stored sealed). Raises
        InvalidName, InvalidAlert (a short or malformed secret),
        StateMachineDoesNotExist and AlertAlreadyExists.
        """
        check_name(name, what="trigger")
        if len(name) > MAX_TRIGGER_NAME:
            raise InvalidAlert(f"trigger name {name!r} is over {MAX_TRIGGER_NAME} characters")
        if secret is None:
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        elif secret.startswith("whsec_"):
            try:
                base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise InvalidAlert("a whsec_ secret is whsec_ followed by base64") from None
        elif len(secret) < 16 or not secret.isprintable() or " " in secret:
            raise InvalidAlert("a bearer secret is at least 16 printable characters, no spaces")
        await self.lifecycle.resolve_machine(machine)
        record = AlertRecord(
            name=name,
            machine=None,
            statuses=(),
            target=f"webhook:{machine}",
            secret=secret,
            kind="webhook",
            created_at=self.clock.now(),
        )
        return await self.run_db(self.store.create_alert, record), secret

    async def describe(self, name: str) -> AlertRecord:
        """The trigger called `name`. Raises AlertDoesNotExist."""
        try:
            record = await self.run_db(self.store.get_alert, name)
        except AlertDoesNotExist:
            record = None
        if record is None or record.kind not in TRIGGER_KINDS:
            raise AlertDoesNotExist(f"Trigger {name} does not exist.")
        return record

    async def list_all(self) -> list[AlertRecord]:
        """Every trigger (on executions, on folders and on webhooks), by name."""
        found: list[AlertRecord] = []
        for kind in TRIGGER_KINDS:
            found += await self.run_db(self.store.list_alerts, kind=kind)
        return sorted(found, key=lambda record: record.name)

    async def delete(self, name: str) -> None:
        await self.describe(name)
        await self.run_db(self.store.delete_alert, name)

    async def pause(self, name: str) -> AlertRecord:
        await self.describe(name)
        return await self.run_db(self.store.set_alert_paused, name, True)

    async def resume(self, name: str) -> AlertRecord:
        await self.describe(name)
        return await self.run_db(self.store.set_alert_paused, name, False)


def file_version_name(trigger: str, path: str, size: int, mtime_ns: int) -> str:
    """The execution name of one version of one file seen by `trigger`."""
    digest = hashlib.sha256(f"{path}|{size}|{mtime_ns}".encode()).hexdigest()[:16]
    return f"{trigger}-{digest}"


@dataclass
class FolderWatcher:
    """The worker's folder-polling loop: one execution per new file version."""

    store: Store
    lifecycle: Lifecycle
    clock: Clock
    run_db: RunDb
    poll_seconds: float = 2.0
    _seen: set[str] = field(default_factory=set, repr=False)

    async def run(self) -> None:
        """Scan every `poll_seconds` until cancelled; a failing scan is logged and retried."""
        while True:
            asked = time.monotonic()
            try:
                await self.run_once()
                outage_of(self.store).ok(asked)
            except StoreUnavailable as error:
                # The store is away: one line per outage (shared with the worker's loops).
                outage_of(self.store).failed(error)
            except Exception:
                log.exception("folder scan failed; trying again shortly")
            await self.clock.sleep_until(self.clock.now() + timedelta(seconds=self.poll_seconds))

    async def run_once(self) -> int:
        """Scan each unpaused folder trigger once; returns how many executions it started."""
        started = 0
        for trigger in await self.run_db(self.store.list_alerts, kind="watch"):
            if not trigger.paused:
                started += await self._scan(trigger)
        return started

    async def _scan(self, trigger: AlertRecord) -> int:
        machine = trigger.target.removeprefix("watch:")
        folder, pattern = trigger.headers["directory"], trigger.headers.get("pattern", "*")
        started = 0
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            log.warning("trigger %s: cannot read its folder (%s)", trigger.name, exc.strerror)
            return 0
        for entry in entries:
            if not fnmatch.fnmatch(entry.name, pattern) or not entry.is_file():
                continue
            stat = entry.stat()
            name = file_version_name(trigger.name, entry.path, stat.st_size, stat.st_mtime_ns)
            if name in self._seen:
                continue
            moment = datetime.fromtimestamp(stat.st_mtime, UTC)
            value: dict[str, Any] = {
                "path": entry.path,
                "size": stat.st_size,
                "modificationTime": moment.isoformat(timespec="milliseconds"),
            }
            version = await self.lifecycle.resolve_machine(machine)
            try:
                await self.lifecycle.describe(execution_arn(version.name, name))
            except ExecutionDoesNotExist:
                try:
                    await self.lifecycle.start(machine, value, name=name)
                    started += 1
                except StepwiseError as exc:  # another worker started it just now
                    log.info("trigger %s: %s", trigger.name, exc)
            self._seen.add(name)
        return started
