"""`stepwise alerts …`: tell people when executions fail, through signed webhooks or Python.

``create NAME [--machine M] --status FAILED [--status TIMED_OUT …]
(--webhook URL [--secret whsec_…] [--header K=V]… | --python MODULE:FUNCTION)
[--include-payloads]``; ``list``, ``describe``, ``delete`` and ``test NAME``
(queue a sample event); ``deliveries [--failed]`` and ``replay DELIVERY``.
Workers (``stepwise worker``) deliver. Webhook URLs are shown as scheme and
host only, and secrets never: both are credentials.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from engine.cli.core import StepwiseGroup, global_options, json_output, with_client
from engine.cli.output import CliError, emit_json, print_table

if TYPE_CHECKING:
    from engine.store.outbox import AlertRecord, DeliveryRecord

__all__ = ["alerts"]

_STATUSES = click.Choice(["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"], case_sensitive=False)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert_to_json(record: AlertRecord) -> dict[str, Any]:
    from engine.alerts import shown_target

    return {
        "name": record.name,
        "stateMachine": record.machine,
        "statuses": list(record.statuses),
        "target": shown_target(record.target),
        "signed": record.secret is not None,
        "headers": sorted(record.headers),
        "includePayloads": record.include_payloads,
        "creationDate": _iso(record.created_at),
    }


def delivery_to_json(delivery: DeliveryRecord) -> dict[str, Any]:
    from engine.alerts import webhook_id

    return {
        "deliveryId": delivery.delivery_id,
        "webhookId": webhook_id(delivery.delivery_id),
        "alert": delivery.alert,
        "executionArn": delivery.execution_id or None,
        "status": delivery.status,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "nextAttemptDate": _iso(delivery.next_attempt_at),
        "lastError": delivery.last_error,
        "creationDate": _iso(delivery.created_at),
        "deliveredDate": _iso(delivery.delivered_at),
    }


@click.group("alerts", cls=StepwiseGroup)
@global_options
def alerts() -> None:
    """Create and manage alerts on execution status changes, and their deliveries."""


@alerts.command("create")
@click.argument("name")
@click.option("--machine", metavar="M", help="Only executions of this state machine.")
@click.option("--status", "statuses", type=_STATUSES, multiple=True, required=True)
@click.option("--webhook", metavar="URL", help="POST the event here (http or https).")
@click.option("--secret", metavar="whsec_…", help="Sign webhooks (Standard Webhooks).")
@click.option("--header", "headers", metavar="K=V", multiple=True, help="Extra webhook header.")
@click.option("--python", "python", metavar="MODULE:FUNCTION", help="Call this with the event.")
@click.option("--include-payloads", is_flag=True, help="Put input and output in the event.")
@global_options
def alerts_create(
    name: str,
    machine: str | None,
    statuses: tuple[str, ...],
    webhook: str | None,
    secret: str | None,
    headers: tuple[str, ...],
    python: str | None,
    include_payloads: bool,
) -> None:
    """Create alert NAME: executions reaching --status are announced to one target."""
    parsed: dict[str, str] = {}
    for header in headers:
        key, sep, value = header.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--header {header!r}: write K=V")
        parsed[key.strip()] = value
    record = with_client(
        lambda engine: engine.alerts.create(
            name,
            statuses=[s.upper() for s in statuses],
            machine=machine,
            webhook=webhook,
            secret=secret,
            headers=parsed,
            python=python,
            include_payloads=include_payloads,
        )
    )
    _show(record)


def _show(record: AlertRecord) -> None:
    document = alert_to_json(record)
    if json_output():
        emit_json(document)
        return
    for key, value in document.items():
        click.echo(f"{key}: {value}")


@alerts.command("list")
@global_options
def alerts_list() -> None:
    """List the alerts."""
    found = with_client(lambda engine: engine.alerts.list_all())
    documents = [alert_to_json(record) for record in found]
    if json_output():
        emit_json({"alerts": documents})
        return
    print_table(
        ["NAME", "MACHINE", "STATUSES", "TARGET"],
        [
            [d["name"], d["stateMachine"] or "*", ",".join(d["statuses"]), d["target"]]
            for d in documents
        ],
    )


@alerts.command("describe")
@click.argument("name")
@global_options
def alerts_describe(name: str) -> None:
    """Show alert NAME (never its secret or its full webhook URL)."""
    _show(with_client(lambda engine: engine.alerts.describe(name)))


@alerts.command("delete")
@click.argument("name")
@global_options
def alerts_delete(name: str) -> None:
    """Delete alert NAME (its deliveries' record stays)."""
    with_client(lambda engine: engine.alerts.delete(name))
    if json_output():
        emit_json({})


@alerts.command("test")
@click.argument("name")
@global_options
def alerts_test(name: str) -> None:
    """Queue a sample event for alert NAME; a worker delivers it."""
    delivery = with_client(lambda engine: engine.alerts.test(name))
    _emit_delivery(delivery)


def _emit_delivery(delivery: DeliveryRecord) -> None:
    document = delivery_to_json(delivery)
    if json_output():
        emit_json(document)
    else:
        click.echo(f"{document['deliveryId']}  {document['state']}  {document['webhookId']}")


@alerts.command("deliveries")
@click.option("--failed", is_flag=True, help="Only dead ones and ones whose attempts failed.")
@global_options
def alerts_deliveries(failed: bool) -> None:
    """List alert deliveries, newest first."""
    found = with_client(lambda engine: engine.alerts.deliveries(failed=failed))
    documents = [delivery_to_json(d) for d in found]
    if json_output():
        emit_json({"deliveries": documents})
        return
    print_table(
        ["DELIVERY", "STATE", "ATTEMPTS", "LAST ERROR"],
        [[d["deliveryId"], d["state"], d["attempts"], d["lastError"] or ""] for d in documents],
    )


@alerts.command("replay")
@click.argument("delivery")
@global_options
def alerts_replay(delivery: str) -> None:
    """Send DELIVERY again (same webhook-id, so receivers deduplicate)."""
    _emit_delivery(with_client(lambda engine: engine.alerts.replay(delivery)))
