"""Webhook triggers: ``POST /triggers/NAME`` starts an execution of the trigger's machine.

`answer_webhook` reads the request body (at most 256 KiB, the input limit:
413 past it), finds the webhook trigger (404 for none), authenticates the
request — a Standard Webhooks signature (``webhook-id``,
``webhook-timestamp`` within 5 minutes, ``webhook-signature: v1,<base64
HMAC-SHA256 of id.timestamp.body>``) or ``Authorization: Bearer <secret>``
(401 otherwise) — refuses a paused trigger (409), decodes the body as JSON
(400) and starts the execution with it as input. The execution's name comes
from the ``Idempotency-Key`` header (or the ``webhook-id``), so a retried
request finds the execution it started: 200 for the same body, 409 for a
different one; a new execution answers 202. The secret is compared in
constant time and never written to a response or a log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import uuid
from typing import Any

import msgspec
from starlette.requests import Request

from engine.http.protocol import AwsError, epoch
from engine.http.service import Service
from engine.runner import execution_arn
from engine.store import ExecutionAlreadyExists, ExecutionDoesNotExist, ExecutionRecord
from engine.store.outbox import AlertDoesNotExist, AlertRecord
from engine.triggers import webhook_execution_name

__all__ = ["MAX_WEBHOOK_BODY_BYTES", "TOLERANCE_SECONDS", "answer_webhook", "signature"]

log = logging.getLogger("stepwise.http.webhooks")

MAX_WEBHOOK_BODY_BYTES = 256 * 1024
TOLERANCE_SECONDS = 5 * 60
MAX_KEY_LENGTH = 255


def signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """The Standard Webhooks ``v1,<base64>`` signature of `body` under `secret`.

    A ``whsec_`` secret's key is its base64 tail; any other secret's key is its text.
    """
    if secret.startswith("whsec_"):
        key = base64.b64decode(secret.removeprefix("whsec_"))
    else:
        key = secret.encode()
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def _read_body(request: Request) -> bytes:
    too_large = AwsError(
        "PayloadTooLarge",
        f"Request body is larger than {MAX_WEBHOOK_BODY_BYTES} bytes",
        status=413,
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_WEBHOOK_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _authenticate(secret: str, request: Request, body: bytes, now: float) -> None:
    """Return if the request carries a valid signature or bearer secret; 401 otherwise."""
    refused = AwsError("Unauthorized", "The request's signature or secret is not valid", status=401)
    headers = request.headers
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        offered = authorization[len("bearer ") :].strip()
        if hmac.compare_digest(offered.encode(), secret.encode()):
            return
        raise refused
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not message_id or not timestamp or not signatures:
        raise refused
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise AwsError(
            "Unauthorized", "The webhook-timestamp is missing or over 5 minutes off", status=401
        )
    try:
        expected = signature(secret, message_id, timestamp, body)
    except (binascii.Error, ValueError):
        raise refused from None
    for offered in signatures.split():
        if offered.startswith("v1,") and hmac.compare_digest(offered.encode(), expected.encode()):
            return
    raise refused


async def _trigger(service: Service, name: str) -> AlertRecord:
    try:
        record = await service.engine.triggers.describe(name)
    except AlertDoesNotExist:
        record = None
    if record is None or record.kind != "webhook" or record.secret is None:
        raise AwsError(
            "ResourceNotFoundException", f"Webhook trigger {name[:80]!r} does not exist", status=404
        )
    return record


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key") or request.headers.get("webhook-id")
    if key is None:
        return str(uuid.uuid4())
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise AwsError(
            "ValidationException",
            f"The Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable characters",
        )
    return key


def _same_input(record: ExecutionRecord, value: Any) -> bool:
    return bool((json.loads(record.input) if record.input else None) == value)


async def answer_webhook(service: Service, request: Request) -> tuple[int, dict[str, Any]]:
    """Serve one ``POST /triggers/NAME``: the status and ``{executionArn, startDate}``.

    Raises AwsError for every refusal (401, 404, 409, 413, 400) and lets the
    engine's errors (an invalid input, a missing machine) through for the
    caller to map.
    """
    name = str(request.path_params["name"])
    body = await _read_body(request)
    trigger = await _trigger(service, name)
    assert trigger.secret is not None  # _trigger refuses a webhook without one
    _authenticate(trigger.secret, request, body, service.engine.clock.now().timestamp())
    if trigger.paused:
        raise AwsError("TriggerPaused", f"Trigger {name} is paused", status=409)
    try:
        value = msgspec.json.decode(body) if body.strip() else {}
    except msgspec.DecodeError:
        raise AwsError("SerializationException", "The request body is not JSON") from None
    key = _idempotency_key(request)
    machine = trigger.target.removeprefix("webhook:")
    execution_name = webhook_execution_name(trigger.name, key)
    lifecycle = service.engine.lifecycle
    version = await lifecycle.resolve_machine(machine)
    conflict = AwsError(
        "IdempotencyConflict",
        "The Idempotency-Key was used already for a request with a different body",
        status=409,
    )
    try:
        existing = await lifecycle.describe(execution_arn(version.name, execution_name))
    except ExecutionDoesNotExist:
        existing = None
    status = 200
    if existing is None:
        try:
            existing = await lifecycle.start(machine, value, name=execution_name)
            status = 202
            log.info("webhook trigger %s started execution %s", name, execution_name)
        except ExecutionAlreadyExists:  # a concurrent retry started it with another body
            raise conflict from None
    elif not _same_input(existing, value):
        raise conflict
    return status, {
        "executionArn": service.execution_arn(existing),
        "startDate": epoch(existing.start_date),
    }
