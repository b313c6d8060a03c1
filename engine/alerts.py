"""Alerts: tell people when executions fail, at least once, through the store's outbox.

An alert rule (`Alerts.create`) names the statuses it fires on, optionally a
state machine, and a target: an HTTP(S) webhook (optionally signed with a
``whsec_`` secret, plus headers) or an operator's Python function
(``MODULE:FUNCTION``). The commit that closes an execution writes one
delivery row per matching alert (`engine/store/outbox_hook.py`), and the
`AlertDeliverer` loop in every worker claims due deliveries and sends them
(a trigger's delivery starts its execution instead: `engine.triggers`).
The body is EventBridge's "Step Functions Execution Status Change" event,
so consumers of AWS's events work unchanged; input and output are in it
only when the alert opts in (`include_payloads`). Webhooks follow the
Standard Webhooks specification: ``webhook-id`` (stable across retries and
replays: receivers deduplicate on it), ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``. A 2xx
answer delivers; anything else (redirects are not followed), a timeout or a
refused connection retries with exponential backoff and full jitter, up to
`MAX_ATTEMPTS`, then the delivery is DEAD until replayed; 410 Gone is dead
at once. Targets are the operator's, and still checked as the HTTP built-in
checks its own (`activities.netpolicy`): ``http``/``https`` only; link-local
and cloud-metadata addresses always refused; loopback and public addresses
allowed; private ranges only when ``STEPWISE_ALERTS_ALLOW`` (comma-separated
CIDRs or host names) allows them. Secrets, headers and webhook URLs (a Slack
URL is a credential) never appear in logs or delivery errors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import ipaddress
import json
import logging
import os
import random
import socket
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from activities.netpolicy import HttpPolicy, IPAddress
from engine.clock import Clock
from engine.lifecycle import Lifecycle, RunDb
from engine.names import check_name
from engine.runner import machine_arn
from engine.store import ExecutionRecord, ExecutionStatus, Store
from engine.store.errors import StoreUnavailable
from engine.store.outbox import AlertRecord, DeliveryRecord, DeliveryState, InvalidAlert
from engine.triggers import start_triggered
from engine.worker import outage_of
from statemachine.errors import StepwiseError

__all__ = [
    "MAX_ATTEMPTS",
    "TIMEOUT_SECONDS",
    "AlertDeliverer",
    "Alerts",
    "InvalidAlert",
    "shown_target",
    "sign",
    "status_change_event",
    "webhook_id",
]

log = logging.getLogger("stepwise.alerts")

MAX_ATTEMPTS = 10
TIMEOUT_SECONDS = 15.0
_DETAIL_TYPE = "Step Functions Execution Status Change"


def webhook_id(delivery_id: str) -> str:
    """The Standard Webhooks message id of a delivery: the same on every attempt and replay."""
    return f"msg_{uuid.uuid5(uuid.NAMESPACE_URL, 'stepwise:' + delivery_id).hex}"


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body`` under a ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def status_change_event(
    delivery: DeliveryRecord, execution: ExecutionRecord | None, alert: AlertRecord
) -> dict[str, Any]:
    """EventBridge's "Step Functions Execution Status Change" event for one delivery."""
    arn = delivery.execution_id or "arn:aws:states:local:000000000000:execution:test:test"
    fields = arn.split(":")
    region, account = fields[3], fields[4]
    detail: dict[str, Any] = {
        "executionArn": arn,
        "stateMachineArn": machine_arn(execution.machine) if execution else None,
        "name": execution.name if execution else "test",
        "status": delivery.status,
        "startDate": _ms(execution.start_date) if execution else None,
        "stopDate": _ms(execution.stop_date) if execution else None,
        "input": execution.input if execution and alert.include_payloads else None,
        "output": execution.output if execution and alert.include_payloads else None,
        "inputDetails": {"included": alert.include_payloads},
        "outputDetails": {"included": alert.include_payloads},
        "error": execution.error if execution else None,
        "cause": execution.cause if execution else None,
    }
    moment = (execution.stop_date if execution else None) or delivery.created_at
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "stepwise:" + delivery.delivery_id)),
        "detail-type": _DETAIL_TYPE,
        "source": "aws.states",
        "account": account,
        "time": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [arn],
        "detail": detail,
    }


def _policy() -> HttpPolicy:
    allowed = [v.strip() for v in os.environ.get("STEPWISE_ALERTS_ALLOW", "").split(",")]
    return HttpPolicy(allow=("127.0.0.0/8", "::1/128", *[v for v in allowed if v]))


def check_webhook_url(url: str, *, resolve: bool) -> _Webhook:
    """An allowed webhook URL, split, with its checked addresses; InvalidAlert saying why not.

    With `resolve`, every address the host resolves to is checked and kept:
    the delivery connects to those addresses only (no second lookup).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidAlert("a webhook must be an http:// or https:// URL with a host")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    policy = _policy()
    refused = policy.refuse_host(host)
    if refused:
        raise InvalidAlert(f"webhook refused: {refused}")
    addresses: list[IPAddress] = []
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if resolve:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise InvalidAlert(f"webhook host {host} does not resolve: {exc}") from None
            for info in infos:
                address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
                if address not in addresses:
                    addresses.append(address)
    for address in addresses:
        refused = policy.refuse_address(host, address)
        if refused:
            raise InvalidAlert(
                "webhook refused: "
                + refused.replace("the HTTP Task", "an alert").replace(
                    "(--allow-http-to or Http.Allow in the resources file)",
                    "(STEPWISE_ALERTS_ALLOW)",
                )
            )
    return _Webhook(parts.scheme, host, port, tuple(addresses))


@dataclass(frozen=True)
class _Webhook:
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def _post(alert: AlertRecord, delivery: DeliveryRecord, body: bytes, now: datetime) -> int:
    """POST one signed delivery; returns the HTTP status (raises OSError on network failure)."""
    from activities.http import pinned_connection

    webhook = check_webhook_url(alert.target, resolve=True)
    parts = urllib.parse.urlsplit(alert.target)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    message_id = webhook_id(delivery.delivery_id)
    timestamp = int(now.timestamp())
    headers = {
        **alert.headers,
        "content-type": "application/json",
        "user-agent": "stepwise-alerts",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
    }
    if alert.secret:
        headers["webhook-signature"] = sign(alert.secret, message_id, timestamp, body)
    connection = pinned_connection(
        webhook.scheme, webhook.host, webhook.port, webhook.addresses, lambda: TIMEOUT_SECONDS
    )
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)
        return response.status
    finally:
        connection.close()


def _call_python(alert: AlertRecord, event: dict[str, Any]) -> None:
    module_name, _, function_name = alert.target.removeprefix("python:").partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    function(event)


@dataclass
class AlertDeliverer:
    """The worker's delivery loop: claims due deliveries, sends them, records each attempt."""

    store: Store
    lifecycle: Lifecycle
    clock: Clock
    run_db: RunDb
    worker_id: str
    lease_seconds: float = 60.0  # one attempt's hold: longer than TIMEOUT_SECONDS
    poll_seconds: float = 1.0
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 3600.0
    delivered: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    async def run(self) -> None:
        """Deliver until cancelled; a failing pass is logged and retried after the poll interval."""
        while True:
            asked = time.monotonic()
            sent = 0
            try:
                # The claim (a locking read and its statement, compiled and
                # kept) only when a delivery is due: most workers have none.
                due = await self.run_db(self.store.next_delivery_due)
                if due is not None and due <= self.clock.now():
                    sent = await self.run_once()
                outage_of(self.store).ok(asked)
            except StoreUnavailable as error:
                # The store is away: one line per outage (shared with the worker's loops).
                outage_of(self.store).failed(error)
            except Exception:
                log.exception("alert delivery pass failed; trying again shortly")
            if sent:
                continue
            now = self.clock.now()
            wake = now + timedelta(seconds=self.poll_seconds)
            await self.clock.sleep_until(wake)

    async def run_once(self) -> int:
        """Claim the due deliveries and attempt each once; returns how many were claimed."""
        now = self.clock.now()
        claimed = await self.run_db(
            self.store.claim_deliveries,
            self.worker_id,
            now=now,
            lease_seconds=self.lease_seconds,
        )
        for delivery in claimed:
            await self._attempt(delivery)
        return len(claimed)

    async def _attempt(self, delivery: DeliveryRecord) -> None:
        import http.client  # with the first delivery, not at start-up

        now = self.clock.now()
        error: str | None = None
        dead = False
        try:
            alert = await self.run_db(self.store.get_alert, delivery.alert)
            execution = None
            if delivery.execution_id:
                execution = await self.lifecycle.describe(delivery.execution_id)
            event = status_change_event(delivery, execution, alert)
            if alert.kind == "trigger":
                if execution is not None:
                    await start_triggered(self.lifecycle, alert, execution)
            elif alert.target.startswith("python:"):
                await anyio.to_thread.run_sync(_call_python, alert, event)
            else:
                body = json.dumps(event, separators=(",", ":")).encode()
                status = await anyio.to_thread.run_sync(_post, alert, delivery, body, now)
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
                    dead = status == 410
        except InvalidAlert as exc:
            error = str(exc)
        except StepwiseError as exc:  # the alert or the execution is gone
            error, dead = f"{type(exc).__name__}: {exc}", True
        except (OSError, http.client.HTTPException) as exc:
            # The exception's class only: its text may quote the URL, a credential.
            error = type(exc).__name__
        except Exception as exc:  # the operator's function failed
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            self.delivered += 1
            await self.run_db(
                self.store.record_attempt,
                delivery.delivery_id,
                self.worker_id,
                state=DeliveryState.DELIVERED,
                error=None,
                next_attempt_at=None,
                now=now,
            )
            return
        attempts = delivery.attempts + 1
        dead = dead or attempts >= MAX_ATTEMPTS
        log.warning(
            "alert %s: delivery attempt %d failed (%s)%s",
            delivery.alert,
            attempts,
            error,
            "; dead-lettered" if dead else "",
        )
        delay = min(self.retry_cap_seconds, self.retry_base_seconds * 2 ** (attempts - 1))
        delay *= 0.5 + self._random.random() / 2  # jitter: spread retries of many receivers
        await self.run_db(
            self.store.record_attempt,
            delivery.delivery_id,
            self.worker_id,
            state=DeliveryState.DEAD if dead else DeliveryState.PENDING,
            error=error,
            next_attempt_at=None if dead else now + timedelta(seconds=delay),
            now=now,
        )


@dataclass(frozen=True)
class Alerts:
    """The alert operations on one store, for the Engine and the CLI."""

    store: Store
    clock: Clock
    run_db: RunDb

    async def create(
        self,
        name: str,
        *,
        statuses: list[str],
        machine: str | None = None,
        webhook: str | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        python: str | None = None,
        include_payloads: bool = False,
    ) -> AlertRecord:
        """Create alert `name`: `statuses` of (`machine`'s) executions go to one target.

        Raises InvalidAlert (no or two targets, a refused webhook, an unknown
        status, a secret that is not ``whsec_<base64>``) and AlertAlreadyExists.
        """
        check_name(name, what="alert")
        if (webhook is None) == (python is None):
            raise InvalidAlert("an alert needs one target: a webhook URL or a Python function")
        if not statuses:
            raise InvalidAlert("an alert needs at least one status")
        for status in statuses:
            if status not in ExecutionStatus.__members__ or status == "RUNNING":
                raise InvalidAlert(f"{status!r} is not a closing status")
        if webhook is not None:
            check_webhook_url(webhook, resolve=False)
            target = webhook
        else:
            assert python is not None
            module, _, function = python.partition(":")
            if not module or not function:
                raise InvalidAlert("--python takes MODULE:FUNCTION")
            target = f"python:{python}"
        if secret is not None:
            try:
                base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except ValueError:
                raise InvalidAlert("a secret is whsec_ followed by base64") from None
        record = AlertRecord(
            name=name,
            machine=machine,
            statuses=tuple(statuses),
            target=target,
            secret=secret,
            headers=dict(headers or {}),
            include_payloads=include_payloads,
            created_at=self.clock.now(),
        )
        return await self.run_db(self.store.create_alert, record)

    async def list_all(self) -> list[AlertRecord]:
        return await self.run_db(self.store.list_alerts, kind="alert")

    async def describe(self, name: str) -> AlertRecord:
        return await self.run_db(self.store.get_alert, name)

    async def delete(self, name: str) -> None:
        await self.run_db(self.store.delete_alert, name)

    async def test(self, name: str) -> DeliveryRecord:
        """Queue a test delivery (a sample event with the alert's first status)."""
        alert = await self.describe(name)
        delivery_id = f"test|{name}|{uuid.uuid4().hex}"
        await self.run_db(
            self.store.enqueue_delivery, delivery_id, name, "", alert.statuses[0], self.clock.now()
        )
        return await self.run_db(self.store.get_delivery, delivery_id)

    async def deliveries(self, *, failed: bool = False) -> list[DeliveryRecord]:
        return await self.run_db(self.store.list_deliveries, failed=failed)

    async def replay(self, delivery_id: str) -> DeliveryRecord:
        """Send a delivery again (same webhook id). Raises DeliveryDoesNotExist."""
        return await self.run_db(self.store.replay_delivery, delivery_id, now=self.clock.now())


def shown_target(target: str) -> str:
    """A target as it may be shown: a webhook's scheme and host only (URLs carry credentials)."""
    if target.startswith("python:"):
        return target
    parts = urllib.parse.urlsplit(target)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"
