"""The outbox's hook in the commit path: the one statement that queues alert deliveries.

Kept apart from `outbox.py` (the store's alert calls) because the commit
modules (`checkpoints.py`, `fastcommit.py`) import it, and they sit below
the store's base. `ENQUEUE_SQL` inserts one PENDING delivery per alert whose
statuses (and machine, if it names one) match, and that is not paused,
match the execution's new status,
with the stable id ``<execution arn>|<alert>|<status>`` (plus ``|r<n>`` once
the execution has been redriven n times, so a redriven execution that fails
again is announced again); a second run of it for the same change inserts
nothing.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store.schema import alert_deliveries

__all__ = ["ENQUEUE_SQL", "enqueue_alerts"]

# Written in the finishing commit. Parameters: execution, status, now (psycopg's
# %(name)s style; `enqueue_alerts` turns them into SQLAlchemy's :name).
ENQUEUE_SQL = (
    "INSERT INTO alert_deliveries (delivery_id, alert, execution_id, status, state, attempts,"
    " next_attempt_at, created_at)"
    " SELECT %(execution)s || '|' || alerts.name || '|' || %(status)s"
    " || (SELECT CASE WHEN redrive_count > 0 THEN '|r' || redrive_count ELSE '' END"
    " FROM executions WHERE execution_id = %(execution)s), alerts.name,"
    " %(execution)s, %(status)s, 'PENDING', 0, %(now)s, %(now)s FROM alerts"
    " WHERE alerts.paused = 0 AND alerts.statuses LIKE '%%,' || %(status)s || ',%%'"
    " AND (alerts.machine IS NULL OR alerts.machine ="
    " (SELECT machine FROM executions WHERE execution_id = %(execution)s))"
    " ON CONFLICT (delivery_id) DO NOTHING"
)
_ENQUEUE_TEXT = sa.text(
    ENQUEUE_SQL.replace("%(execution)s", ":execution")
    .replace("%(status)s", ":status")
    .replace("%(now)s", ":now")
    .replace("%%", "%")
).bindparams(sa.bindparam("now", type_=alert_deliveries.c.created_at.type))


def enqueue_alerts(conn: Connection, execution_id: str, status: str, now: datetime) -> None:
    """Queue the deliveries of every alert matching this status change, in `conn`'s transaction."""
    conn.execute(_ENQUEUE_TEXT, {"execution": execution_id, "status": status, "now": now})
