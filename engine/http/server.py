"""Running the API: bind a socket, refuse an unsafe bind, and serve the app with uvicorn.

`serve` binds the listening socket itself (so ``--port 0`` works and the
line it prints names the real port), refuses a non-loopback address
without keys unless the operator said ``allow_unauthenticated``, and runs
`engine.http.app.create_app` under uvicorn until SIGINT or SIGTERM, when
uvicorn finishes the requests in flight and the engine's lifespan stops
its worker cleanly. A crash (SIGKILL) loses nothing: every execution is
in the database and the next server or worker resumes it.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from dataclasses import dataclass, field
from types import FrameType

from activities.registry import Registry
from engine.arns import Arns
from engine.http.app import AppSettings, create_app
from engine.store import Store, default_database_url

__all__ = ["ServeOptions", "UnsafeBind", "check_bind", "serve"]


class UnsafeBind(ValueError):
    """A non-loopback address without ``--auth`` and without ``--allow-unauthenticated``."""


@dataclass(frozen=True)
class ServeOptions:
    """How to serve: address, database, worker, ARNs and authentication."""

    host: str = "127.0.0.1"
    port: int = 8083
    database_url: str | None = None
    worker: bool = True
    concurrency: int = 16
    lease_seconds: float = 30.0
    arns: Arns = field(default_factory=Arns)
    keys: dict[str, str] = field(default_factory=dict)
    allow_unauthenticated: bool = False
    log_level: str = "info"
    activity_poll_seconds: float = 50.0
    # The operator's options (--allow-http-to, --sql-role, --max-history-events).
    registry: Registry | None = None
    max_history_events: int | None = None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(options: ServeOptions) -> None:
    """Raise UnsafeBind for a non-loopback bind without keys, unless explicitly allowed."""
    if options.keys or options.allow_unauthenticated or _is_loopback(options.host):
        return
    raise UnsafeBind(
        f"refusing to serve on {options.host} without --auth: anyone who can reach it could "
        "run workflows. Give --auth FILE, or --allow-unauthenticated if that is what you want."
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on
    # sockets whose proto says TCP, and with Nagle on, every response waits
    # ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def serve(options: ServeOptions) -> None:
    """Serve the Step Functions API until SIGINT/SIGTERM.

    Raises UnsafeBind, StoreUnavailable (the database cannot be opened) and
    OSError (the address cannot be bound).
    """
    import uvicorn

    check_bind(options)
    # Open (and migrate) the database before serving, so an unreachable one
    # is a one-line StoreUnavailable here, not a traceback from the lifespan.
    Store(options.database_url or default_database_url()).close()
    sock = _bind(options.host, options.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    app = create_app(
        AppSettings(
            database_url=options.database_url,
            worker=options.worker,
            concurrency=options.concurrency,
            lease_seconds=options.lease_seconds,
            arns=options.arns,
            keys=options.keys,
            activity_poll_seconds=options.activity_poll_seconds,
            registry=options.registry,
            max_history_events=options.max_history_events,
        )
    )
    config = uvicorn.Config(
        app,
        log_level=options.log_level,
        access_log=options.log_level == "debug",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after a graceful stop, so the
            # process would die of it; a stop we finished cleanly exits 0,
            # as `stepwise worker` does.
            self._captured_signals.clear()

    server = Server(config)
    print(
        f"stepwise: serving the Step Functions API on http://{shown}:{port} "
        f"({'with' if options.worker else 'without'} a worker"
        f"{', SigV4 required' if options.keys else ''}); "
        f"web view: http://{shown}:{port}/",
        file=sys.stderr,
        flush=True,
    )
    logging.getLogger("stepwise.http").setLevel(options.log_level.upper())
    server.run(sockets=[sock])
    print("stepwise: server stopped", file=sys.stderr, flush=True)
