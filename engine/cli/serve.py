"""`stepwise serve`: the click command that serves the AWS Step Functions API.

This module imports click and nothing heavy at module level: the server,
the engine and uvicorn load only when the command runs, so registering
``serve`` in the ``stepwise`` group costs nothing. The same command is
``python -m engine.http``. A usage problem (an unsafe bind, an unreadable
keys file, a port in use) is one ``stepwise: error: …`` line and exit 2, an
unreachable database exit 3; exit 0 after SIGINT or SIGTERM.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from engine.cli.core import StepwiseCommand, database_url, end_startup, global_options
from engine.cli.definitions import operator_options, operator_settings
from engine.cli.s3root import s3_root_option

__all__ = ["serve"]


@click.command("serve", cls=StepwiseCommand)
@s3_root_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8083, show_default=True)
@click.option("--no-worker", is_flag=True, help="Serve the API only; `stepwise worker` runs.")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="How long the worker's claim on an execution outlives a crash.",
)
@click.option(
    "--activity-poll-seconds",
    type=click.FloatRange(min=0.1, max=60),
    default=50.0,
    show_default=True,
    help="How long GetActivityTask waits before answering that no task came.",
)
@click.option(
    "--auth",
    metavar="FILE|env:NAME",
    default=None,
    help="Require SigV4 with these keys (lines of ACCESS_KEY_ID:SECRET).",
)
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    help="Allow a non-loopback --host without --auth.",
)
@click.option("--region", default="us-east-1", show_default=True, help="Region in ARNs.")
@click.option("--account", default="000000000000", show_default=True, help="Account in ARNs.")
@click.option(
    "--activities",
    metavar="MODULE",
    multiple=True,
    envvar="STEPWISE_ACTIVITIES",
    help="Import MODULE to register its @activity handlers for the worker.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@operator_options
@global_options
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    no_worker: bool,
    concurrency: int,
    lease_seconds: float,
    activity_poll_seconds: float,
    auth: str | None,
    allow_unauthenticated: bool,
    region: str,
    account: str,
    activities: tuple[str, ...],
    log_level: str,
    allow_http_to: tuple[str, ...],
    sql_role: str | None,
    max_history_events: int | None,
) -> None:
    """Serve the AWS Step Functions API (boto3, the AWS CLI and SDKs work unchanged)."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        click.echo("stepwise: error: serve needs: pip install 'stepwise[serve]'", err=True)
        ctx.exit(2)
    from engine.arns import Arns
    from engine.http.server import ServeOptions, UnsafeBind
    from engine.http.server import serve as run_server
    from engine.http.sigv4 import KeysUnreadable, load_keys
    from engine.store import StoreUnavailable

    def fail(message: str) -> None:
        click.echo(f"stepwise: error: {message}", err=True)
        ctx.exit(2)

    try:
        arns = Arns(region=region, account=account)
    except ValueError as exc:
        fail(str(exc))
        return
    keys: dict[str, str] = {}
    if auth is not None:
        try:
            keys = load_keys(auth)
        except KeysUnreadable as exc:
            fail(str(exc))
            return
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in activities:
        try:
            importlib.import_module(module)
        except Exception as exc:
            fail(f"cannot import activities module '{module}': {type(exc).__name__}: {exc}")
            return
    url = database_url(ctx)
    settings = operator_settings(url, allow_http_to, sql_role, max_history_events)
    options = ServeOptions(
        registry=settings.registry,
        max_history_events=settings.max_history_events,
        host=host,
        port=port,
        database_url=url,
        worker=not no_worker,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        activity_poll_seconds=activity_poll_seconds,
        arns=arns,
        keys=keys,
        allow_unauthenticated=allow_unauthenticated,
        log_level=log_level,
    )
    end_startup()
    try:
        run_server(options)
    except UnsafeBind as exc:
        fail(str(exc))
    except StoreUnavailable as exc:
        click.echo(f"stepwise: error: {exc}", err=True)
        ctx.exit(3)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
