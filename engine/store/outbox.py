"""Alerts and their outbox: delivery rows written in the same transaction as the status change.

An alert rule names the statuses (and optionally the state machine) it fires
on and where it goes. When a checkpoint closes an execution, the commit that
writes its final status also runs `outbox_hook.ENQUEUE_SQL` (`enqueue_alerts`
on the careful path, the same text on PostgreSQL's pipelined one), which inserts
one PENDING delivery per matching alert — so no committed status change is
ever left unannounced. The delivery's id, ``<execution arn>|<alert>|<status>``,
is stable: the webhook id derived from it is the same on every retry and
replay, and the primary key refuses a second row for one change. Workers
claim due deliveries under a lease (SKIP LOCKED on PostgreSQL), and record
each attempt: DELIVERED, or PENDING again at a later `next_attempt_at`, or
DEAD after the last attempt; `replay_delivery` makes one PENDING again.
Alert secrets and headers are sealed like payloads (`codec`).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from engine.store.base import StoreBase
from engine.store.codec import escape_clear, unescape_clear
from engine.store.schema import alert_deliveries, alerts
from statemachine.errors import StepwiseError

__all__ = [
    "AlertAlreadyExists",
    "AlertDoesNotExist",
    "AlertRecord",
    "AlertStore",
    "DeliveryDoesNotExist",
    "DeliveryRecord",
    "DeliveryState",
    "InvalidAlert",
]


class InvalidAlert(StepwiseError):
    """An alert whose target, statuses or settings cannot be used (AWS: ValidationException).

    Raised by `engine.alerts`; defined here with the alerts' other errors so
    that `engine.errors` re-exports them without an import cycle.
    """

    aws_code = "ValidationException"


class AlertDoesNotExist(StepwiseError):
    """No alert by that name."""

    aws_code = "ResourceNotFoundException"


class AlertAlreadyExists(StepwiseError):
    """An alert by that name exists already."""

    aws_code = "ConflictException"


class DeliveryDoesNotExist(StepwiseError):
    """No alert delivery has that id."""

    aws_code = "ResourceNotFoundException"


class DeliveryState:
    """Where a delivery is."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"


class AlertRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An alert rule: which status changes, and where they go."""

    name: str
    machine: str | None
    statuses: tuple[str, ...]
    target: str
    secret: str | None = None
    headers: dict[str, str] = {}
    include_payloads: bool = False
    kind: str = "alert"  # or "trigger"
    paused: bool = False
    created_at: datetime


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One alert's delivery of one status change, and how its attempts went."""

    delivery_id: str
    alert: str
    execution_id: str
    status: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _delivery(row: Any) -> DeliveryRecord:
    fields = {field: getattr(row, field) for field in DeliveryRecord.__struct_fields__}
    fields["last_error"] = unescape_clear(fields["last_error"])  # an exception's text
    return DeliveryRecord(**fields)


class AlertStore(StoreBase):
    """The store's calls for alerts and their deliveries (a part of `Store`)."""

    def create_alert(self, record: AlertRecord) -> AlertRecord:
        """Store a new alert. Raises AlertAlreadyExists."""
        values = {
            "name": record.name,
            "machine": record.machine,
            "statuses": "," + ",".join(record.statuses) + ",",
            "target": record.target,
            "secret": self._codec.seal_optional(record.secret),
            "headers": self._codec.seal(json.dumps(record.headers)),
            "include_payloads": record.include_payloads,
            "kind": record.kind,
            "paused": int(record.paused),
            "created_at": record.created_at,
        }
        try:
            with self._write() as conn:
                conn.execute(sa.insert(alerts).values(**values))
        except sa_exc.IntegrityError:
            raise AlertAlreadyExists(f"Alert {record.name} already exists.") from None
        return record

    def _alert(self, row: Any) -> AlertRecord:
        return AlertRecord(
            name=row.name,
            machine=row.machine,
            statuses=tuple(s for s in row.statuses.split(",") if s),
            target=row.target,
            secret=self._codec.open_optional(row.secret),
            headers=json.loads(self._codec.open(row.headers)),
            include_payloads=row.include_payloads,
            kind=row.kind,
            paused=bool(row.paused),
            created_at=row.created_at,
        )

    def get_alert(self, name: str) -> AlertRecord:
        """The alert called `name`. Raises AlertDoesNotExist."""
        with self._read() as conn:
            row = conn.execute(sa.select(alerts).where(alerts.c.name == name)).first()
        if row is None:
            raise AlertDoesNotExist(f"Alert {name} does not exist.")
        return self._alert(row)

    def list_alerts(self, *, kind: str = "alert") -> list[AlertRecord]:
        """Every alert (or, with `kind` ``trigger``, every trigger), by name."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(alerts).where(alerts.c.kind == kind).order_by(alerts.c.name)
            ).all()
        return [self._alert(row) for row in rows]

    def set_alert_paused(self, name: str, paused: bool) -> AlertRecord:
        """Pause (no deliveries are queued for it) or resume an alert or trigger."""
        with self._write() as conn:
            done = conn.execute(
                sa.update(alerts).where(alerts.c.name == name).values(paused=int(paused))
            )
        if done.rowcount == 0:
            raise AlertDoesNotExist(f"{name} does not exist.")
        return self.get_alert(name)

    def delete_alert(self, name: str) -> None:
        """Delete an alert (its deliveries' record stays). Raises AlertDoesNotExist."""
        with self._write() as conn:
            done = conn.execute(sa.delete(alerts).where(alerts.c.name == name))
        if done.rowcount == 0:
            raise AlertDoesNotExist(f"Alert {name} does not exist.")

    def enqueue_delivery(
        self, delivery_id: str, alert: str, execution_id: str, status: str, now: datetime
    ) -> None:
        """Queue one delivery by hand (``alerts test``); an existing id is left as it is."""
        with self._write() as conn:
            conn.execute(
                self._backend.insert_ignoring_duplicates(
                    alert_deliveries,
                    {
                        "delivery_id": delivery_id,
                        "alert": alert,
                        "execution_id": execution_id,
                        "status": status,
                        "state": DeliveryState.PENDING,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    },
                    key=("delivery_id",),
                )
            )
            self._backend.notify_in(conn)

    def claim_deliveries(
        self, worker_id: str, *, now: datetime, lease_seconds: float, limit: int = 16
    ) -> list[DeliveryRecord]:
        """Lease up to `limit` PENDING deliveries that are due and not leased elsewhere."""
        free = sa.or_(
            alert_deliveries.c.lease_expires_at.is_(None),
            alert_deliveries.c.lease_expires_at <= now,
        )
        query = (
            sa.select(alert_deliveries)
            .where(
                alert_deliveries.c.state == DeliveryState.PENDING,
                alert_deliveries.c.next_attempt_at <= now,
                free,
            )
            .order_by(alert_deliveries.c.next_attempt_at, alert_deliveries.c.delivery_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._write() as conn:
            rows = conn.execute(query).all()
            ids = [row.delivery_id for row in rows]
            if ids:
                conn.execute(
                    sa.update(alert_deliveries)
                    .where(alert_deliveries.c.delivery_id.in_(ids))
                    .values(
                        lease_owner=worker_id,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                    )
                )
        return [_delivery(row) for row in rows]

    def record_attempt(
        self,
        delivery_id: str,
        worker_id: str,
        *,
        state: str,
        error: str | None,
        next_attempt_at: datetime | None,
        now: datetime,
    ) -> None:
        """Record one attempt of a delivery this worker holds (nothing if it lost the lease)."""
        with self._write() as conn:
            conn.execute(
                sa.update(alert_deliveries)
                .where(
                    alert_deliveries.c.delivery_id == delivery_id,
                    alert_deliveries.c.lease_owner == worker_id,
                )
                .values(
                    state=state,
                    attempts=alert_deliveries.c.attempts + 1,
                    last_error=escape_clear(error),
                    next_attempt_at=next_attempt_at,
                    delivered_at=now if state == DeliveryState.DELIVERED else None,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )

    def list_deliveries(
        self, *, failed: bool = False, alert: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        """Deliveries, newest first; `failed`: only DEAD ones and PENDING ones that have failed."""
        query = sa.select(alert_deliveries)
        if failed:
            query = query.where(
                sa.or_(
                    alert_deliveries.c.state == DeliveryState.DEAD,
                    sa.and_(
                        alert_deliveries.c.state == DeliveryState.PENDING,
                        alert_deliveries.c.attempts > 0,
                    ),
                )
            )
        if alert is not None:
            query = query.where(alert_deliveries.c.alert == alert)
        query = query.order_by(
            alert_deliveries.c.created_at.desc(), alert_deliveries.c.delivery_id
        ).limit(limit)
        with self._read() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    def get_delivery(self, delivery_id: str) -> DeliveryRecord:
        """One delivery. Raises DeliveryDoesNotExist."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(alert_deliveries).where(alert_deliveries.c.delivery_id == delivery_id)
            ).first()
        if row is None:
            raise DeliveryDoesNotExist(f"Delivery {delivery_id} does not exist.")
        return _delivery(row)

    def replay_delivery(self, delivery_id: str, *, now: datetime) -> DeliveryRecord:
        """Make a delivery PENDING and due now again (same id). Raises DeliveryDoesNotExist."""
        with self._write() as conn:
            done = conn.execute(
                sa.update(alert_deliveries)
                .where(alert_deliveries.c.delivery_id == delivery_id)
                .values(
                    state=DeliveryState.PENDING,
                    next_attempt_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            if done.rowcount:
                self._backend.notify_in(conn)
        if done.rowcount == 0:
            raise DeliveryDoesNotExist(f"Delivery {delivery_id} does not exist.")
        return self.get_delivery(delivery_id)

    def next_delivery_due(self) -> datetime | None:
        """When the earliest PENDING delivery (leased or not) is due, or None."""
        with self._read() as conn:
            value: datetime | None = conn.execute(
                sa.select(alert_deliveries.c.next_attempt_at)
                .where(
                    alert_deliveries.c.state == DeliveryState.PENDING,
                    # Never claimed (the claim's `<= now` leaves it out); first
                    # on SQLite's ascending order, it would hide the due rows.
                    alert_deliveries.c.next_attempt_at.is_not(None),
                )
                .order_by(alert_deliveries.c.next_attempt_at)
                .limit(1)
            ).scalar()
        return value
