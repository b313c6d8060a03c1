"""`stepwise worker`: run executions from the database until SIGTERM or SIGINT, then exit 0.

The worker's start line (on stderr) names its database without the
password; a signal during start-up is queued, not fatal, so the worker
always stops cleanly. The operator's options (``--allow-http-to``,
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
    run_async,
)
from engine.cli.definitions import (
    operator_options,
    operator_settings,
    telemetry_options,
    telemetry_session,
)

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
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--lease-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
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
    retention_days: float | None,
    activities: tuple[str, ...],
    allow_http_to: tuple[str, ...],
    sql_role: str | None,
    max_history_events: int | None,
    otlp: str | None,
    trace_payloads: bool,
) -> None:
    """Run executions from the database until SIGTERM or SIGINT, then exit 0."""
    import signal

    import anyio

    from engine.api import Engine

    ctx = click.get_current_context()
    import_activities(activities)
    url = database_url(ctx)
    settings = operator_settings(url, allow_http_to, sql_role, max_history_events)

    async def work() -> None:
        # Listen before the engine starts, so a signal during start-up is
        # queued here instead of killing the process half-started.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with Engine(
                url,
                worker=True,
                concurrency=concurrency,
                lease_seconds=lease_seconds,
                registry=settings.registry,
                max_history_events=settings.max_history_events,
                retention_days=retention_days,
            ) as engine:
                click.echo(
                    f"stepwise: worker {engine.worker_id} started on {_display_url(url)} "
                    f"(concurrency {concurrency})",
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
