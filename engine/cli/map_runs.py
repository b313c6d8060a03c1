"""`stepwise map-runs list|describe|update`: a Distributed Map's Map Runs.

A thin face over the Engine's Map Run calls (`engine.map_run_api`):
``list EXEC`` is ListMapRuns, ``describe MAPRUN`` DescribeMapRun (status,
limits, ``itemCounts`` and ``executionCounts``), ``update MAPRUN`` UpdateMapRun
(a raised ``--max-concurrency`` starts more children at once; a run that has
ended refuses, exit 2). MAPRUN is the run's ARN (``…:mapRun:<machine>/<label>:<id>``)
or its id; an unknown one is ResourceNotFound (exit 2, one line). With
``-o json`` the answers are AWS's shapes. ``stepwise list --map-run MAPRUN``
lists a run's children.
"""

from __future__ import annotations

from typing import Any

import click

from engine.cli.core import StepwiseCommand, StepwiseGroup, global_options, json_output, with_client
from engine.cli.output import emit_json, print_table

__all__ = ["map_runs"]


@click.group("map-runs", cls=StepwiseGroup)
@global_options
def map_runs() -> None:
    """Distributed Map runs: list an execution's, describe one, update its limits."""


@map_runs.command("list", cls=StepwiseCommand)
@click.argument("execution", metavar="EXEC")
@global_options
def list_command(execution: str) -> None:
    """List the Map Runs of execution EXEC (by executionArn, or unambiguous name)."""
    from engine.map_run_api import map_run_list_item

    records = with_client(lambda engine: engine.list_map_runs(execution))
    items = [map_run_list_item(record) for record in records]
    if json_output():
        emit_json({"mapRuns": items})
        return
    print_table(
        ["MAP RUN", "STATUS", "STARTED", "STOPPED"],
        [
            [item["mapRunArn"], r.status, item["startDate"], item.get("stopDate", "")]
            for item, r in zip(items, records, strict=True)
        ],
    )


def _print(described: dict[str, Any]) -> None:
    for key in (
        "mapRunArn",
        "executionArn",
        "status",
        "startDate",
        "stopDate",
        "maxConcurrency",
        "toleratedFailurePercentage",
        "toleratedFailureCount",
    ):
        if key in described:
            click.echo(f"{key}: {described[key]}")
    for key in ("itemCounts", "executionCounts"):
        counts = described[key]
        shown = ", ".join(
            f"{name} {counts[name]}"
            for name in ("total", "pending", "running", "succeeded", "failed", "timedOut")
        )
        click.echo(f"{key}: {shown}, aborted {counts['aborted']}")


@map_runs.command("describe", cls=StepwiseCommand)
@click.argument("map_run", metavar="MAPRUN")
@global_options
def describe_command(map_run: str) -> None:
    """Describe Map Run MAPRUN (its ARN or id): status, limits and counts."""
    described = with_client(lambda engine: engine.describe_map_run(map_run))
    if json_output():
        emit_json(described)
    else:
        _print(described)


@map_runs.command("update", cls=StepwiseCommand)
@click.argument("map_run", metavar="MAPRUN")
@click.option(
    "--max-concurrency",
    type=click.IntRange(0, None),
    default=None,
    help="Children running at once (0: AWS's default, up to 10,000).",
)
@click.option(
    "--tolerated-failure-percentage",
    type=click.FloatRange(0, 100),
    default=None,
    help="Failed children tolerated, as a percentage of all.",
)
@click.option(
    "--tolerated-failure-count",
    type=click.IntRange(0, None),
    default=None,
    help="Failed children tolerated, as a count.",
)
@global_options
def update_command(
    map_run: str,
    max_concurrency: int | None,
    tolerated_failure_percentage: float | None,
    tolerated_failure_count: int | None,
) -> None:
    """Change a running Map Run's MaxConcurrency or tolerated failures."""
    with_client(
        lambda engine: engine.update_map_run(
            map_run,
            max_concurrency=max_concurrency,
            tolerated_failure_percentage=tolerated_failure_percentage,
            tolerated_failure_count=tolerated_failure_count,
        )
    )
    if json_output():
        emit_json({})
    else:
        click.echo(f"{map_run}: updated")
