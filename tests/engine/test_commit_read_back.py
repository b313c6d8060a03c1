"""The finishing commit's read-back is the record a describe gives once the end is durable.

`Engine.wait` on an execution this process runs is answered by its
finishing commit, which reads the record back (`Committer.commit_reading`,
`Store.commit_reading`). On PostgreSQL the one-call commit sends that read
in its own round trip, after a Sync, so it runs only once the commit is
durable: the record shows the finish (a read sent before the commit would
show RUNNING) and a stop requested while the execution ran, field for
field as `get_execution` reads it, in a transaction of its own (not the
call's, before its COMMIT). When the one call hands over to the
careful path (a lease not held, a collision, a group with tokens), what the
read saw is dropped — it ran after a failed call — and the record is read
after the careful path's commit, or not at all for a checkpoint refused.
On SQLite the raw commit reads each ending execution inside its own
transaction, after its writes and before COMMIT: the write lock it holds
from BEGIN IMMEDIATE keeps every other writer out until then.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

import engine.store.fastcommit as fastcommit
from engine.clock import SystemClock
from engine.committer import Committer
from engine.store import (
    Checkpoint,
    CommitResult,
    ExecutionRecord,
    ExecutionStatus,
    Finish,
    Store,
    TokenRecord,
)
from engine.store.codec import ENCRYPTED_PREFIX, EncryptionKeyError
from engine.store.schema import executions
from tests.engine.committing import in_thread
from tests.engine.test_commit_raw_rows import LATER, T0, _event, _prepared


def _finish(execution_id: str, event_id: int = 2, **more: Any) -> Checkpoint:
    return Checkpoint(
        execution_id,
        journal=[("s/A", '{"v":1}')],
        events=[_event(event_id, "ExecutionSucceeded", output='{"out": 1}')],
        finish=Finish("SUCCEEDED", LATER, output='{"out": 1}'),
        last_event_id=event_id - 1,
        **more,
    )


def _no_second_read(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every `get_execution` the commit's caller makes after it."""
    asked: list[str] = []
    real = store.get_execution

    def recording(ref: str) -> ExecutionRecord:
        asked.append(ref)
        return real(ref)

    monkeypatch.setattr(store, "get_execution", recording)
    return asked


def _commit_reading(store: Store, checkpoint: Checkpoint) -> tuple[CommitResult, Any]:
    committer = Committer(store, worker_id="w", clock=SystemClock(), run_db=in_thread)
    return anyio.run(committer.commit_reading, checkpoint)


def _ends_with_b_lost(store: Store) -> dict[str, ExecutionRecord]:
    """a and b end in one group after b's lease was taken over; the records read back."""
    store.renew("w", ["e-a"], lease_seconds=600, now=T0)
    expired = T0 + timedelta(minutes=2)
    assert store.claim_execution("e-b", "other", lease_seconds=60, now=expired)
    results, records = store.commit_reading(
        [_finish("e-a"), _finish("e-b")], ["e-a", "e-b"], worker_id="w", now=expired
    )
    assert results == [CommitResult.OK, CommitResult.LEASE_LOST]
    return records


def test_the_one_call_reads_the_finished_record_back_in_its_round_trip(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _prepared(postgres_url, fast=True)
    try:
        store.request_stop("e-b", error="Halt", cause="from elsewhere", now=T0)
        results, records = store.commit_reading(
            [_finish("e-b"), _finish("e-c")], ["e-b", "e-c"], worker_id="w", now=T0
        )
        assert results == [CommitResult.OK] * 2
        # Read after the commit: the finish shows (RUNNING if read before it).
        assert records["e-c"].status == ExecutionStatus.SUCCEEDED
        assert records["e-c"].output == '{"out": 1}' and records["e-c"].stop_date == LATER
        assert records["e-c"].last_event_id == 2
        assert records["e-b"].stop_requested and records["e-b"].stop_requested_error == "Halt"
        assert records["e-b"].stop_requested_cause == "from elsewhere"
        assert records == {eid: store.get_execution(eid) for eid in ("e-b", "e-c")}

        # Through the committer: the record answers with no describe of its own.
        asked = _no_second_read(store, monkeypatch)
        result, record = _commit_reading(store, _finish("e-a"))
        assert result is CommitResult.OK and asked == []
        assert record == store.get_execution("e-a")
        assert record is not None and record.status == ExecutionStatus.SUCCEEDED
    finally:
        store.close()


def test_a_lost_lease_answers_nothing_from_the_read_that_ran_after_the_failed_call(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _prepared(postgres_url, fast=True)
    try:
        answers: list[object] = []
        real = fastcommit._one_call

        def spying(*args: Any, **kwargs: Any) -> bool | None:
            answer = real(*args, **kwargs)
            answers.append((answer, dict(kwargs["records"])))
            return answer

        monkeypatch.setattr(fastcommit, "_one_call", spying)
        records = _ends_with_b_lost(store)
        # The call failed: its read (which still ran, after it) answered nothing.
        assert answers == [(None, {})]
        assert records == {}  # the careful path committed a; its caller reads a itself
        assert store.get_execution("e-b").status == ExecutionStatus.RUNNING

        # Through the committer: a refused finish answers no record at all.
        result, record = _commit_reading(store, _finish("e-b", event_id=3))
        assert result is CommitResult.LEASE_LOST and record is None
    finally:
        store.close()


def test_the_careful_path_still_answers_the_durable_record(db_url: str) -> None:
    """A collision, and a finish carrying a token: the careful path commits, then reads."""
    store = _prepared(db_url, fast=True)
    try:
        store.commit([Checkpoint("e-c", journal=[("dup", "1")])], worker_id="w", now=T0)
        result, record = _commit_reading(
            store, Checkpoint("e-c", journal=[("dup", "2")], finish=Finish("FAILED", LATER))
        )
        assert result is CommitResult.CONFLICT and record is None
        assert store.get_execution("e-c").status == ExecutionStatus.RUNNING

        token = TokenRecord("tok-b", "e-b", "t/1", "A", created_at=T0)
        result, record = _commit_reading(store, _finish("e-b", tokens=[token]))
        assert result is CommitResult.OK
        assert record == store.get_execution("e-b")
        assert record is not None and record.status == ExecutionStatus.SUCCEEDED
    finally:
        store.close()


def test_the_read_is_a_transaction_of_its_own_after_the_calls(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not read inside the call's transaction (before its COMMIT), where its writes show too.

    The read is narrowed to transactions that wrote nothing: the call's own
    transaction has written the finish (it has a transaction id), a read
    after its COMMIT has not.
    """
    monkeypatch.setattr(
        fastcommit,
        "EXECUTIONS_BY_ID",
        fastcommit.EXECUTIONS_BY_ID + " AND txid_current_if_assigned() IS NULL",
    )
    store = _prepared(postgres_url, fast=True)
    try:
        results, records = store.commit_reading([_finish("e-a")], ["e-a"], worker_id="w", now=T0)
        assert results == [CommitResult.OK]
        assert records == {"e-a": store.get_execution("e-a")}
    finally:
        store.close()


def test_sqlite_reads_the_finished_record_inside_the_commits_transaction(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's raw commit reads each ending execution after its writes, before its COMMIT.

    The write lock is held from BEGIN IMMEDIATE to COMMIT, so no other
    writer comes between: the record is what a describe reads once the
    commit is done (the finish, and a stop another writer requested before
    it), with no describe, transaction or store call of its own after it.
    """
    store = _prepared(sqlite_url, fast=True)
    try:
        store.request_stop("e-b", error="Halt", cause="from elsewhere", now=T0)
        kept_reads = store.kept_reads
        asked = _no_second_read(store, monkeypatch)
        progress = Checkpoint("e-d", events=[_event(2, "PassStateEntered")], last_event_id=1)
        results, records = store.commit_reading(
            [_finish("e-b"), _finish("e-c"), progress],
            ["e-b", "e-c", "e-d"],
            worker_id="w",
            now=T0,
        )
        assert results == [CommitResult.OK] * 3
        assert asked == [] and store.kept_reads == kept_reads  # no read after the commit
        assert set(records) == {"e-b", "e-c"}  # e-d did not end here: its caller reads it
        assert records["e-c"].status == ExecutionStatus.SUCCEEDED
        assert records["e-c"].output == '{"out": 1}' and records["e-c"].stop_date == LATER
        assert records["e-c"].last_event_id == 2
        assert records["e-b"].stop_requested and records["e-b"].stop_requested_error == "Halt"
        assert records["e-b"].stop_requested_cause == "from elsewhere"
        monkeypatch.undo()
        assert records == {eid: store.get_execution(eid) for eid in ("e-b", "e-c")}

        # Through the committer: the record answers with no describe of its own.
        asked = _no_second_read(store, monkeypatch)
        result, record = _commit_reading(store, _finish("e-a"))
        assert result is CommitResult.OK and asked == []
        assert record is not None and record.status == ExecutionStatus.SUCCEEDED
        monkeypatch.undo()
        assert record == store.get_execution("e-a")
    finally:
        store.close()


def test_sqlite_answers_no_record_from_a_raw_commit_that_handed_over(sqlite_url: str) -> None:
    """A lost lease rolls the raw transaction back, its read with it: the careful path answers."""
    store = _prepared(sqlite_url, fast=True)
    try:
        records = _ends_with_b_lost(store)
        assert records == {}  # the careful path committed a; its caller reads a itself
        assert store.get_execution("e-b").status == ExecutionStatus.RUNNING
    finally:
        store.close()


def test_sqlite_a_record_that_cannot_be_opened_leaves_the_commit_ok(sqlite_url: str) -> None:
    """The read-back never turns a committed end into an error: the record is left out."""
    store = _prepared(sqlite_url, fast=True)
    try:
        # A stop cause sealed under a key this process does not have.
        with store._engine.begin() as conn:
            conn.execute(
                sa.update(executions)
                .where(executions.c.execution_id == "e-a")
                .values(stop_requested_cause=f"{ENCRYPTED_PREFIX}k9:AAAA")
            )
        results, records = store.commit_reading(
            [_finish("e-a"), _finish("e-c")], ["e-a", "e-c"], worker_id="w", now=T0
        )
        assert results == [CommitResult.OK] * 2
        assert set(records) == {"e-c"}
        with pytest.raises(EncryptionKeyError):
            store.get_execution("e-a")  # what its caller meets when it describes
    finally:
        store.close()


@pytest.mark.parametrize("fast", [False, True], ids=["careful", "raw"])
def test_sqlite_a_row_that_cannot_be_read_back_never_fails_the_group(
    tmp_path: Any, fast: bool
) -> None:
    # A stored time no processor can parse: the read-back's record is left
    # out, the group (a bystander's end among it) is committed all the same.
    store = _prepared(f"sqlite:///{tmp_path / 'r.db'}", fast=fast)
    try:
        with store._engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE executions SET start_date = 'garbage' WHERE execution_id = 'e-c'")
            )
        results, records = store.commit_reading(
            [_finish("e-b"), _finish("e-c")], ["e-b", "e-c"], worker_id="w", now=T0
        )
        assert results == [CommitResult.OK] * 2
        assert set(records) <= {"e-b"}
        with store._engine.connect() as conn:
            status = conn.execute(
                sa.select(executions.c.status).where(executions.c.execution_id == "e-c")
            ).scalar_one()
        assert status == ExecutionStatus.SUCCEEDED
    finally:
        store.close()
