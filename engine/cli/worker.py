"""`stepwise worker`: run executions from the database until SIGTERM or SIGINT, then exit 0.

A worker claims only the executions of its queue (``--queue``, default
``default``): those started there with ``stepwise start --queue``, or the
private queue of a ``stepwise run`` whose process died.

The worker's start line (on stderr) names its database without the
password; a signal during start-up is queued, not fatal, so the worker
always stops cleanly. A database that cannot be reached at start-up is
retried with backoff for ``$STEPWISE_RETRY_SECONDS`` (one line on stderr;
a signal meanwhile stops the worker), then the worker exits 3. Once
started, a worker outlives any outage of the store (see `engine.worker`):
it exits only on SIGTERM/SIGINT (0) or a configuration error (3).
SIGTERM is prompt even while a sync handler runs: a thread cannot be
interrupted, so the worker releases that execution's lease with the others
and exits without waiting for the thread (its result would be discarded
anyway; the Task runs again elsewhere under the same idempotency key).
The operator's options (``--allow-http-to``,
``--sql-role``, ``--max-history-events``) configure what its executions may
do; ``--retention-days`` makes it purge closed executions older than that.
"""

from __future__ import annotations

import click

from engine.cli.core import (
    StepwiseCommand,
    activities_option,
    database_url,
    global_options,
    import_activities,
    retry_seconds,
    run_async,
)
from engine.cli.definitions import (
    operator_options,
    operator_settings,
    telemetry_options,
    telemetry_session,
)
from engine.cli.s3root import s3_root_option

__all__ = ["worker_command"]


def _display_url(url: str) -> str:
    # The worker's start line names its database, never its password.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<database>"


@click.command("worker", cls=StepwiseCommand)
@s3_root_option
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lease-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
@click.option(
    "--queue",
    metavar="Q",
    default="default",
    show_default=True,
    help="Run only executions started on queue Q (`start --queue Q`; a `run`'s private queue).",
)
@click.option(
    "--retention-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="DAYS",
    help="Purge closed executions that stopped more than DAYS ago, in small batches "
    "(AWS keeps 90; default: $STEPWISE_RETENTION_DAYS, else keep everything).",
)
@activities_option
@operator_options
@telemetry_options
@global_options
def worker_command(
    concurrency: int,
    lease_seconds: float,
    queue: str,
    retention_days: float | None,
    activities: tuple[str, ...],
    allow_http_to: tuple[str, ...],
    sql_role: str | None,
    max_history_events: int | None,
    otlp: str | None,
    trace_payloads: bool,
) -> None:
    """Run executions of one queue from the database until SIGTERM or SIGINT, then exit 0."""
    import signal
    import time
    from contextlib import AsyncExitStack

    import anyio

    from engine.api import Engine
    from engine.store import StoreUnavailable
    from engine.store.boundary import Backoff, is_transient

    ctx = click.get_current_context()
    import_activities(activities)
    url = database_url(ctx)
    settings = operator_settings(url, allow_http_to, sql_role, max_history_events)

    async def work() -> None:
        # Listen before the engine starts, so a signal during start-up is
        # queued here instead of killing the process half-started.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            stack = AsyncExitStack()
            async with stack:
                deadline = time.monotonic() + retry_seconds()
                backoff = Backoff(first=0.2, cap=2.0)
                while True:
                    engine = Engine(
                        url,
                        worker=True,
                        concurrency=concurrency,
                        lease_seconds=lease_seconds,
                        queue=queue,
                        registry=settings.registry,
                        max_history_events=settings.max_history_events,
                        retention_days=retention_days,
                    )
                    try:
                        await stack.enter_async_context(engine)
                        break
                    except StoreUnavailable as error:
                        if not is_transient(error) or time.monotonic() >= deadline:
                            raise
                        if backoff.attempts == 0:
                            click.echo(
                                f"stepwise: waiting for the store to start the worker: {error}",
                                err=True,
                            )
                    with anyio.move_on_after(backoff.next_delay()):
                        async for signum in signals:
                            click.echo(
                                f"stepwise: worker stopping on {signal.Signals(signum).name}",
                                err=True,
                            )
                            return
                click.echo(
                    f"stepwise: worker {engine.worker_id} started on {_display_url(url)} "
                    f"(queue {queue}, concurrency {concurrency})",
                    err=True,
                )
                async for signum in signals:
                    click.echo(
                        f"stepwise: worker {engine.worker_id} stopping on "
                        f"{signal.Signals(signum).name}",
                        err=True,
                    )
                    break
            click.echo(f"stepwise: worker {engine.worker_id} stopped", err=True)

    with telemetry_session(otlp, trace_payloads):
        run_async(work)
    _exit_without_waiting_for_handler_threads()


# How long a stopped worker lets sync handlers still running finish on their own.
_HANDLER_GRACE_SECONDS = 1.0


def _exit_without_waiting_for_handler_threads() -> None:
    """Exit now (0) if sync handlers still run in worker threads after the worker stopped.

    Their executions' leases are already released; Python would otherwise
    wait for every such thread at exit, however long the handler takes.
    """
    import os
    import sys
    import threading
    import time

    from activities.handler_threads import THREAD_NAME

    def lingering() -> list[threading.Thread]:
        return [
            thread
            for thread in threading.enumerate()
            if (thread.name == "AnyIO worker thread" or thread.name.startswith(THREAD_NAME))
            and thread.is_alive()
            and not thread.daemon
        ]

    deadline = time.monotonic() + _HANDLER_GRACE_SECONDS
    for thread in lingering():
        thread.join(max(0.0, deadline - time.monotonic()))
    still = lingering()
    if not still:
        return
    click.echo(
        f"stepwise: worker exits without waiting for {len(still)} sync handler(s) still "
        "running; their executions resume on another worker",
        err=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
