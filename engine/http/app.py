"""The ASGI application: the Step Functions API on ``POST /``, routed by ``X-Amz-Target``.

`create_app` builds a Starlette application whose lifespan opens an
`Engine` on the database (with an in-process worker unless told not to),
so the server alone is a complete Step Functions. Each request is read
with a bounded body, checked against SigV4 when keys are configured,
decoded as a JSON object, checked against AWS's constraints for the
operation (`engine.http.validation`) and handed to the operation its target names;
the answer is the operation's document, or AWS's error shape for
whatever it raised (`engine.http.protocol.error_for`). No traceback or SQL
ever reaches a response. ``POST /triggers/NAME`` serves webhook triggers
(`engine.http.webhooks`), authenticated by each trigger's own secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from activities.registry import Registry
from engine.api import Engine
from engine.arns import Arns
from engine.http import executions, machines, map_runs, tags, tasks, teststate
from engine.http.protocol import CONTENT_TYPE, AwsError, Members, encode, error_for
from engine.http.service import Operation, Service
from engine.http.sigv4 import Verifier
from engine.http.validation import check_request
from engine.http.webhooks import answer_webhook
from engine.runner import execution_arn
from engine.web import web_routes

__all__ = ["OPERATIONS", "TARGET_PREFIX", "AppSettings", "create_app"]

TARGET_PREFIX = "AWSStepFunctions."
# A 1 MiB definition may grow when JSON-escaped inside the request; inputs are 256 KiB.
MAX_BODY_BYTES = 4 * 1024 * 1024
_CHECKED_ON_LOOP_BYTES = 64 * 1024

OPERATIONS: dict[str, Operation] = {
    **machines.OPERATIONS,
    **executions.OPERATIONS,
    **tasks.OPERATIONS,
    **tags.OPERATIONS,
    **teststate.OPERATIONS,
    **map_runs.OPERATIONS,
}

log = logging.getLogger("stepwise.http")

# How the engine's own ids start ("arn:aws:states:local:000000000000" today).
_ENGINE_PREFIX = execution_arn("m", "n").rsplit(":execution:", 1)[0]


@dataclass(frozen=True)
class AppSettings:
    """What the application is built from: the database, the worker, the ARNs, the keys."""

    database_url: str | None = None
    worker: bool = True
    concurrency: int = 16
    lease_seconds: float = 30.0
    arns: Arns = field(default_factory=Arns)
    # Access key id → secret; empty means requests are not authenticated.
    keys: Mapping[str, str] = field(default_factory=dict)
    activity_poll_seconds: float = 50.0
    max_body_bytes: int = MAX_BODY_BYTES
    # The operator's options (--allow-http-to, --sql-role, --max-history-events).
    registry: Registry | None = None
    max_history_events: int | None = None


def _error_response(error: AwsError, request_id: str, arns: Arns) -> Response:
    body = error.body()
    # Messages name executions by the store's ids; callers know them by our ARNs.
    body["message"] = str(body["message"]).replace(_ENGINE_PREFIX, arns.prefix)
    return Response(
        encode(body),
        status_code=error.status,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": error.code},
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, at most `limit` bytes; ValidationException when it is larger.

    A body somewhat over the limit is read to its end and dropped, so the
    client gets the error instead of a reset connection; one far over it
    (over four times `limit`) is cut off at once.
    """
    too_large = AwsError("ValidationException", f"Request body is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > 4 * limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > 4 * limit:
            raise too_large
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise too_large
    return b"".join(chunks)


def create_app(settings: AppSettings) -> Starlette:
    """The ASGI application serving the Step Functions API on `settings`' database."""
    verifier = Verifier(settings.keys, region=settings.arns.region) if settings.keys else None
    holder: dict[str, Service] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with Engine(
            settings.database_url,
            worker=settings.worker,
            concurrency=settings.concurrency,
            lease_seconds=settings.lease_seconds,
            registry=settings.registry,
            max_history_events=settings.max_history_events,
        ) as engine:
            holder["service"] = Service(
                engine=engine,
                arns=settings.arns,
                activity_poll_seconds=settings.activity_poll_seconds,
            )
            try:
                yield
            finally:
                holder.clear()

    async def api(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            document = await _answer(request)
        except Exception as exc:
            return _error_response(error_for(exc), request_id, settings.arns)
        return Response(
            encode(document),
            media_type=CONTENT_TYPE,
            headers={"x-amzn-RequestId": request_id},
        )

    async def _answer(request: Request) -> dict[str, Any]:
        body = await _read_body(request, settings.max_body_bytes)
        if verifier is not None:
            verifier.verify(
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                body=body,
            )
        target = request.headers.get("x-amz-target", "")
        name = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else None
        operation = OPERATIONS.get(name or "")
        if operation is None:
            raise AwsError("UnknownOperationException", f"Unknown operation: '{target[:100]}'")
        try:
            members = msgspec.json.decode(body or b"{}")
        except msgspec.DecodeError:
            raise AwsError("SerializationException", "The request body is not JSON") from None
        if not isinstance(members, dict):
            raise AwsError("SerializationException", "The request body is not a JSON object")
        # AWS checks the model's constraints before the operation runs (and so does this).
        # The walk is linear in the body (~0.5 s of CPU for 4 MB of bad tags): a large
        # body is checked in a thread, so the loop keeps serving other requests.
        if len(body) > _CHECKED_ON_LOOP_BYTES:
            await asyncio.to_thread(check_request, name or "", members)
        else:
            check_request(name or "", members)
        service = holder.get("service")
        if service is None:
            raise AwsError("ServiceUnavailable", "The server is starting or stopping", status=503)
        return await operation(service, Members(members))

    async def webhook(request: Request) -> Response:
        # Webhook senders authenticate with the trigger's own secret, not SigV4.
        request_id = str(uuid.uuid4())
        try:
            service = holder.get("service")
            if service is None:
                raise AwsError(
                    "ServiceUnavailable", "The server is starting or stopping", status=503
                )
            status, document = await answer_webhook(service, request)
        except Exception as exc:
            return _error_response(error_for(exc), request_id, settings.arns)
        return Response(
            encode(document),
            status_code=status,
            media_type="application/json",
            headers={"x-amzn-RequestId": request_id},
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok" if "service" in holder else "starting"})

    def engine_of() -> Engine | None:
        service = holder.get("service")
        return service.engine if service is not None else None

    return Starlette(
        routes=[
            Route("/", api, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/triggers/{name}", webhook, methods=["POST"]),
            # The web view: GET / and /ui/... (engine/web).
            *web_routes(engine_of, settings.keys),
        ],
        lifespan=lifespan,
    )
