"""`stepwise worker`: run executions from the database until SIGTERM or SIGINT, then exit 0.

A worker claims only the executions of its queue (``--queue``, default
``default``): those started there with ``stepwise start --queue``, or the
private queue of a ``stepwise run`` whose process died.

The worker's start line (on stderr) names its database without the
password; a signal during start-up is queued, not fatal, so the worker
always stops cleanly.
"""

from __future__ import annotations

import click

from engine.cli.core import (
    StepwiseCommand,
    activities_option,
    database_url,
    global_options,
    import_activities,
    run_async,
)
from engine.cli.definitions import telemetry_options, telemetry_session
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
@activities_option
@telemetry_options
@global_options
def worker_command(
    concurrency: int,
    lease_seconds: float,
    queue: str,
    activities: tuple[str, ...],
    otlp: str | None,
    trace_payloads: bool,
) -> None:
    """Run executions of one queue from the database until SIGTERM or SIGINT, then exit 0."""
    import signal

    import anyio

    from engine.api import Engine

    ctx = click.get_current_context()
    import_activities(activities)
    url = database_url(ctx)

    async def work() -> None:
        # Listen before the engine starts, so a signal during start-up is
        # queued here instead of killing the process half-started.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with Engine(
                url,
                worker=True,
                concurrency=concurrency,
                lease_seconds=lease_seconds,
                queue=queue,
            ) as engine:
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
