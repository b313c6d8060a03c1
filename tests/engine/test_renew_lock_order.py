"""A lease renewal locks work rows in execution-id order, as the group commit does.

The commit (`stepwise_commit_v2`, and the careful path) locks its group's
work rows ordered by execution id. A renewal that locked the same rows in
the table's order could hold one the commit wants while waiting for one
the commit holds: PostgreSQL then aborts one of them ("deadlock detected"),
which a worker reports as an outage. Here a transaction stands in for a
commit: it holds `a`, a renewal of `b` and `a` (with `b` stored first)
starts and waits, and the stand-in then locks `b` — which the renewal must
not be holding.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg

from engine.store import Event, Store

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'


def test_a_renewal_waits_in_id_order_and_never_deadlocks_a_commit(postgres_url: str) -> None:
    store = Store(postgres_url)
    raw_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        machine = store.put_state_machine("m", DEFINITION)
        for name in ("b", "a"):  # b's work row is stored first
            store.create_execution(
                execution_id=name,
                name=name,
                machine=machine,
                input="{}",
                start_date=T0,
                trace_id="0" * 32,
                first_event=Event(1, 0, "ExecutionStarted", T0, {}),
            )
        assert len(store.claim_due("w", limit=2, lease_seconds=3600, now=T0)) == 2
        renewed: list[set[str]] = []
        with psycopg.connect(raw_url) as commit, psycopg.connect(raw_url, autocommit=True) as look:
            commit.execute("SET lock_timeout = '20s'")
            commit.execute("SELECT 1 FROM work_queue WHERE execution_id = 'a' FOR UPDATE")
            renewal = threading.Thread(
                target=lambda: renewed.append(
                    store.renew("w", ["b", "a"], lease_seconds=3600, now=T0)
                )
            )
            renewal.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until the renewal waits for a row lock
                row = look.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                ).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the renewal never waited for the commit's row")
            # The stand-in commit takes its next row: free, since the renewal waits on a.
            commit.execute("SELECT 1 FROM work_queue WHERE execution_id = 'b' FOR UPDATE")
            commit.commit()
            renewal.join(60)
        assert renewed == [{"a", "b"}]
    finally:
        store.close()
