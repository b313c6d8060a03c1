"""A lease renewal never waits for a work row a commit holds, so it cannot deadlock one.

A commit locks its group's work rows in execution-id order, and a commit
that ends a Map parent unsuccessfully then locks the parent's running
children's rows too (`map_run_hook.parents_ended`) — whose ids sort before
the parent's. A renewal that waited for a locked row while holding another
could close a cycle with such a commit, and PostgreSQL would abort one of
them ("deadlock detected", which a worker logs as an outage). The renewal
skips rows locked at that moment: they still count as held by their last
committed state and are renewed next time.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from engine.store import Event, Store

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'


@pytest.mark.parametrize(
    ("stored", "first", "then"),
    [
        (("b", "a"), "a", "b"),  # a group commit: rows in id order, b stored first
        (("m:p", "m/label:c"), "m:p", "m/label:c"),  # a parent's end, then its child's row
    ],
)
def test_a_renewal_skips_a_row_a_commit_holds_and_the_commit_goes_on(
    postgres_url: str, stored: tuple[str, str], first: str, then: str
) -> None:
    store = Store(postgres_url)
    raw_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        machine = store.put_state_machine("m", DEFINITION)
        for name in stored:
            store.create_execution(
                execution_id=name,
                name=name.replace(":", "-").replace("/", "-"),
                machine=machine,
                input="{}",
                start_date=T0,
                trace_id="0" * 32,
                first_event=Event(1, 0, "ExecutionStarted", T0, {}),
            )
        assert len(store.claim_due("w", limit=2, lease_seconds=60, now=T0)) == 2
        renewed: list[set[str]] = []
        later = T0 + timedelta(seconds=30)
        with psycopg.connect(raw_url) as commit:
            commit.execute("SET lock_timeout = '20s'")
            commit.execute("SELECT 1 FROM work_queue WHERE execution_id = %s FOR UPDATE", (first,))
            renewal = threading.Thread(
                target=lambda: renewed.append(
                    store.renew("w", list(stored), lease_seconds=60, now=later)
                )
            )
            renewal.start()
            renewal.join(60)
            assert not renewal.is_alive(), "the renewal waited for the commit's row"
            # The stand-in commit takes its next row: the renewal holds none.
            commit.execute("SELECT 1 FROM work_queue WHERE execution_id = %s FOR UPDATE", (then,))
            commit.commit()
        assert renewed == [set(stored)]  # both still held
        with psycopg.connect(raw_url) as look:
            expiry = dict(
                look.execute("SELECT execution_id, lease_expires_at FROM work_queue").fetchall()
            )
        assert expiry[then] == later + timedelta(seconds=60)  # renewed
        assert expiry[first] == T0 + timedelta(seconds=60)  # skipped: renewed next time
        assert store.renew("w", list(stored), lease_seconds=60, now=later) == set(stored)
    finally:
        store.close()
