"""`stepwise start|describe|history|list|stop` and `stepwise executions purge`.

``start`` enqueues an execution on a queue (``--queue``, ``default``) for
a running ``stepwise worker`` on that queue;
``describe`` and ``history`` read one (by executionArn, or by name when
unambiguous), with ``--redact`` hiding secret fields (engine/redact.py);
``list`` shows executions newest first; ``stop`` aborts one;
``executions purge`` deletes closed executions older than a cutoff, in
small batches. ``history`` pages through the store and prints each page as
it comes, so it holds one page of events whatever the history's length.
JSON output is AWS-shaped (see `engine.history`), plus the execution's
``queue`` in ``describe``.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from engine.cli.core import (
    StepwiseCommand,
    StepwiseGroup,
    database_url,
    end_startup,
    execution_input,
    global_options,
    input_options,
    json_output,
    with_client,
)
from engine.cli.output import CliError, emit_json, print_table

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.store import Event, ExecutionRecord

__all__ = [
    "describe_command",
    "executions_group",
    "history_command",
    "list_command",
    "parse_age",
    "start_command",
    "stop_command",
]

# Events per page read by `history`.
HISTORY_PAGE = 1000

# The values of engine.store.ExecutionStatus, spelled out so that building the
# option does not import the store (tests pin them equal).
STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


@click.command("start", cls=StepwiseCommand)
@click.argument("machine", metavar="NAME")
@input_options
@click.option("--name", "execution_name", metavar="EXEC", default=None, help="Execution name.")
@click.option(
    "--queue",
    metavar="Q",
    default="default",
    show_default=True,
    help="Queue to put it on: only a `stepwise worker --queue Q` runs it.",
)
@global_options
def start_command(
    machine: str,
    input_text: str | None,
    input_file: str | None,
    execution_name: str | None,
    queue: str,
) -> None:
    """Start an execution of NAME (its latest revision), NAME:VERSION, NAME:ALIAS or an ARN."""
    from engine.history import iso_timestamp

    payload = execution_input(input_text, input_file)

    record = with_client(
        lambda engine: engine.start(machine, payload, name=execution_name, queue=queue)
    )
    result = {
        "executionArn": record.execution_id,
        "name": record.name,
        "startDate": iso_timestamp(record.start_date),
    }
    if json_output():
        emit_json(result)
    else:
        click.echo(record.execution_id)


def _print_execution(document: dict[str, Any]) -> None:
    for key in ("executionArn", "name", "stateMachine", "status", "queue", "startDate", "stopDate"):
        if document[key] is not None:
            click.echo(f"{key}: {document[key]}")
    click.echo(f"input: {_compact(document['input'])}")
    if document["output"] is not None:
        click.echo(f"output: {_compact(document['output'])}")
    for key in ("error", "cause", "redriveDate", "redriveStatusReason"):
        if document.get(key) is not None:
            click.echo(f"{key}: {document[key]}")
    click.echo(f"redriveCount: {document['redriveCount']}")
    click.echo(f"redriveStatus: {document['redriveStatus']}")


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


redact_option = click.option(
    "--redact",
    is_flag=True,
    help="Hide the values of secret fields (password, token, …; $STEPWISE_SECRET_FIELDS).",
)


@click.command("describe", cls=StepwiseCommand)
@click.argument("execution", metavar="EXEC")
@redact_option
@global_options
def describe_command(execution: str, redact: bool) -> None:
    """Describe an execution (by executionArn, or by its name when unambiguous)."""
    from engine.history import execution_to_aws, iso_timestamp

    async def describe(engine: Engine) -> tuple[ExecutionRecord, tuple[str, str | None]]:
        record = await engine.describe(execution)
        return record, await engine.redrive_status(record)

    record, (redrive_status, redrive_reason) = with_client(describe)
    if redact:
        import msgspec

        from engine.redact import redactor_from_environment

        redactor = redactor_from_environment()
        record = msgspec.structs.replace(
            record,
            input=redactor.text(record.input),
            output=None if record.output is None else redactor.text(record.output),
            cause=None if record.cause is None else redactor.text(record.cause),
        )
    document = execution_to_aws(record)
    if record.published_version is not None:
        base = document["stateMachineArn"]
        document["stateMachineVersionArn"] = f"{base}:{record.published_version}"
        if record.alias is not None:
            document["stateMachineAliasArn"] = f"{base}:{record.alias}"
    document["redriveCount"] = record.redrive_count
    document["redriveDate"] = iso_timestamp(record.redrive_date)
    document["redriveStatus"] = redrive_status
    if redrive_reason is not None:
        document["redriveStatusReason"] = redrive_reason
    if json_output():
        emit_json(document)
    else:
        _print_execution(document)


@click.command("history", cls=StepwiseCommand)
@click.argument("execution", metavar="EXEC")
@click.option("--reverse", is_flag=True, help="Newest event first.")
@redact_option
@global_options
def history_command(execution: str, reverse: bool, redact: bool) -> None:
    """Print an execution's history events, AWS-shaped (read and printed a page at a time)."""
    as_json = json_output()
    hide = _event_redactor() if redact else None

    async def stream(engine: Engine) -> None:
        pages = engine.lifecycle.history_pages(execution, reverse=reverse, page_size=HISTORY_PAGE)
        first = True
        async for page in pages:
            if hide is not None:
                page = [hide(e) for e in page]
            (_json_page if as_json else _table_page)(page, first=first)
            first = False
        if as_json:
            click.echo('{\n  "events": []\n}' if first else "\n  ]\n}")

    with_client(stream)


def _event_redactor() -> Callable[[Event], Event]:
    """Hide the secret fields of an event's details (engine/redact.py's rules)."""
    import msgspec

    from engine.redact import redactor_from_environment

    redactor = redactor_from_environment()
    return lambda e: msgspec.structs.replace(e, details=redactor.details(e.details))


def _json_page(events: list[Event], *, first: bool) -> None:
    # The same text as emit_json({"events": [...]}), written a page at a time.
    from engine.history import event_to_aws

    body = ",\n".join(
        textwrap.indent(json.dumps(event_to_aws(e), indent=2, ensure_ascii=False), "    ")
        for e in events
    )
    click.echo(('{\n  "events": [\n' if first else ",\n") + body, nl=False)


def _table_page(events: list[Event], *, first: bool) -> None:
    from engine.history import event_summary, iso_timestamp

    rows = [[e.event_id, iso_timestamp(e.timestamp), e.type, event_summary(e)] for e in events]
    if first and len(events) < HISTORY_PAGE:
        print_table(["ID", "TIMESTAMP", "TYPE", "DETAILS"], rows)  # the whole history
        return
    # A long history: columns wide enough for any event, so pages line up.
    widths = (7, 32, 28)
    header: list[list[Any]] = [["ID", "TIMESTAMP", "TYPE", "DETAILS"]] if first else []
    for row in [*header, *rows]:
        cells = ["" if c is None else str(c) for c in row]
        click.echo(
            "  ".join(c.ljust(w) for c, w in zip(cells[:3], widths, strict=True))
            + "  "
            + cells[3].rstrip()
        )


@click.command("list", cls=StepwiseCommand)
@click.option("--machine", metavar="NAME", default=None, help="Only executions of NAME.")
@click.option(
    "--status",
    type=click.Choice(STATUSES, case_sensitive=False),
    default=None,
    help="Only executions with STATUS.",
)
@click.option(
    "--max-results",
    type=click.IntRange(1, 1000),
    default=None,
    help="At most N executions (1-1000); prints the nextToken of the next page.",
)
@click.option("--next-token", metavar="TOKEN", default=None, help="Continue a paged listing.")
@click.option(
    "--redrive-filter",
    type=click.Choice(("REDRIVEN", "NOT_REDRIVEN"), case_sensitive=False),
    default=None,
    help="Only executions redriven at least once (REDRIVEN), or never (NOT_REDRIVEN).",
)
@click.option(
    "--map-run", metavar="MAPRUN", default=None, help="The child executions of a Map Run."
)
@global_options
def list_command(
    machine: str | None,
    status: str | None,
    max_results: int | None,
    next_token: str | None,
    redrive_filter: str | None,
    map_run: str | None,
) -> None:
    """List executions, newest first (paged with --max-results and --next-token)."""
    from engine.history import execution_list_item, iso_timestamp

    wanted = status.upper() if status else None
    redrive = redrive_filter.upper() if redrive_filter else None
    token: str | None = None
    if map_run is not None:  # a Map Run's children, in item order (engine/map_run_api.py)
        records = with_client(lambda engine: engine.list_map_run_executions(map_run))
    elif max_results is None and next_token is None:
        records = with_client(
            lambda engine: engine.list_executions(
                machine=machine, status=wanted, redrive_filter=redrive
            )
        )
    else:
        records, token = with_client(
            lambda engine: engine.list_executions_page(
                machine=machine,
                status=wanted,
                max_results=max_results or 100,
                next_token=next_token,
                redrive_filter=redrive,
            )
        )
    if json_output():
        page: dict[str, Any] = {"executions": [execution_list_item(r) for r in records]}
        if token is not None:
            page["nextToken"] = token
        emit_json(page)
        return
    print_table(
        ["NAME", "MACHINE", "STATUS", "STARTED", "STOPPED"],
        [
            [r.name, r.machine, r.status, iso_timestamp(r.start_date), iso_timestamp(r.stop_date)]
            for r in records
        ],
    )
    if token is not None:
        click.echo(f"next page: --next-token {token}", err=True)


@click.command("stop", cls=StepwiseCommand)
@click.argument("execution", metavar="EXEC")
@click.option("--error", default=None, help="Error name recorded in ExecutionAborted.")
@click.option("--cause", default=None, help="Cause recorded in ExecutionAborted.")
@global_options
def stop_command(execution: str, error: str | None, cause: str | None) -> None:
    """Stop (abort) a running execution."""
    from engine.history import iso_timestamp

    record = with_client(lambda engine: engine.stop(execution, error=error, cause=cause))
    stopped = iso_timestamp(record.stop_date or datetime.now(UTC))
    if json_output():
        emit_json({"stopDate": stopped})
    else:
        click.echo(f"{record.execution_id} {record.status} at {stopped}")


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
CLOSED_STATUSES = tuple(s for s in STATUSES if s != "RUNNING")


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or ``2w`` as a duration; CliError (exit 2) otherwise."""
    found = _AGE.match(text.lower())
    if found is None:
        raise CliError(f"--older-than: {text!r} is not an age such as 90d, 12h, 30m, 45s or 2w")
    return timedelta(seconds=float(found.group(1)) * _UNIT_SECONDS[found.group(2)])


@click.group("executions", cls=StepwiseGroup)
@global_options
def executions_group() -> None:
    """Executions in bulk: purge closed ones."""


@executions_group.command("purge", cls=StepwiseCommand)
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help="Purge executions that stopped more than AGE ago: 90d (AWS's retention), 12h, 30m.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(CLOSED_STATUSES, case_sensitive=False),
    help="Only executions that closed with STATUS (repeatable; default: every closed one).",
)
@click.option("--machine", metavar="NAME", default=None, help="Only executions of NAME.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Executions deleted per transaction (small batches hold no lock for long).",
)
@global_options
def purge_command(
    older_than: str, statuses: tuple[str, ...], machine: str | None, batch_size: int
) -> None:
    """Delete closed executions (with their histories) that stopped more than AGE ago.

    RUNNING executions are never deleted. Each batch is one short
    transaction, so workers keep running while a purge goes on.
    """
    from engine.history import iso_timestamp
    from engine.store import Store

    cutoff = datetime.now(UTC) - parse_age(older_than)
    wanted = [s.upper() for s in statuses] or None
    store = Store(database_url())
    purged = 0
    end_startup()  # a purge may run long: the collector is back on
    try:
        while True:
            ids = store.purge_executions(
                stopped_before=cutoff, statuses=wanted, machine=machine, limit=batch_size
            )
            purged += len(ids)
            if len(ids) < batch_size:
                break
    finally:
        store.close()
    if json_output():
        emit_json({"purgedExecutions": purged, "stoppedBefore": iso_timestamp(cutoff)})
    else:
        click.echo(f"purged {purged} executions that stopped before {iso_timestamp(cutoff)}")
