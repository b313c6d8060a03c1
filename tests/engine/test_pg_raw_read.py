"""PostgreSQL's raw read of one execution record is the record the store returns.

`fastclaim.read_execution` reads an executions row with the driver instead
of SQLAlchemy: every field must equal `Store.get_execution`'s for the same
id — running and finished, payloads encrypted, times aware in UTC — and an
unknown id reads as None. `pgstart.any_taken`, a start batch's name check by
the driver, finds a taken (machine, name) or id, and nothing else.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import msgspec

from engine.store import Checkpoint, CommitResult, Event, Finish, Store
from engine.store.codec import PayloadCodec
from engine.store.fastclaim import read_execution
from engine.store.pgstart import any_taken
from engine.store.records import ExecutionRecord

T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
DEFINITION = '{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}'


def test_the_raw_read_is_the_stores_record(postgres_url: str) -> None:
    codec = PayloadCodec([os.urandom(32)])
    store = Store(postgres_url, codec=codec)
    try:
        machine = store.put_state_machine("m", DEFINITION)
        for name in ("a", "b"):
            store.create_execution(
                execution_id=f"e-{name}",
                name=name,
                machine=machine,
                input='{"n": "\\u00e9"}',
                start_date=T0,
                trace_id="0" * 32,
                first_event=Event(1, 0, "ExecutionStarted", T0, {"input": "{}"}),
            )
        store.claim_due("w", limit=2, lease_seconds=60, now=T0)
        finish = Finish("FAILED", T0 + timedelta(seconds=3), error="E", cause='{"why": 1}')
        done = Checkpoint("e-b", events=[Event(2, 1, "ExecutionFailed", T0, {})], finish=finish)
        assert store.commit([done], worker_id="w", now=T0) == [CommitResult.OK]
        for execution_id in ("e-a", "e-b"):
            raw = read_execution(store._engine, execution_id, codec)
            assert raw == store.get_execution(execution_id)
            assert raw is not None and raw.start_date.tzinfo is UTC
        finished = read_execution(store._engine, "e-b", codec)
        assert finished is not None
        assert (finished.status, finished.cause) == ("FAILED", '{"why": 1}')
        assert finished.stop_date == T0 + timedelta(seconds=3)
        assert read_execution(store._engine, "e-none", codec) is None
        assert read_execution(store._engine, "a", codec) is None  # ids only, not names
    finally:
        store.close()


def test_the_drivers_name_check_finds_a_taken_name_or_id(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        machine = store.put_state_machine("m", DEFINITION)
        store.put_state_machine("other", DEFINITION)
        store.create_execution(
            execution_id="e-a",
            name="a",
            machine=machine,
            input="{}",
            start_date=T0,
            trace_id="0" * 32,
            first_event=Event(1, 0, "ExecutionStarted", T0, {"input": "{}"}),
        )
        existing = store.get_execution("e-a")

        def wanted(machine: str, name: str, execution_id: str) -> ExecutionRecord:
            return msgspec.structs.replace(
                existing, machine=machine, name=name, execution_id=execution_id
            )

        def taken(*records: ExecutionRecord) -> bool:
            with store._engine.connect() as conn:
                return any_taken(conn, records)

        assert taken(wanted("m", "a", "e-new"))  # the name
        assert taken(wanted("m", "z", "e-a"))  # the id
        assert taken(wanted("m", "b", "e-b"), wanted("m", "a", "e-c"))  # one of a batch
        assert not taken(wanted("m", "b", "e-b"))
        assert not taken(wanted("other", "a", "e-other"))  # same name, another machine
        assert not taken()
    finally:
        store.close()
