"""`Engine.wait` on an execution that already ended here: answered from the end's own commit.

Both stores. An Engine that starts executions keeps each SUCCEEDED end it
commits (read back with the finishing commit) until a wait takes it: the
record is exactly what a describe reads. A FAILED end is not kept (a
redrive may change it): its wait describes. An Engine that never starts
anything keeps nothing. An end this process's retention purges is no
longer kept. The kept records are bounded in number and size.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import msgspec
import pytest

from engine import Engine
from engine.errors import ExecutionDoesNotExist
from engine.runner import KeptEnds
from engine.store import ExecutionRecord, Store
from engine.worker import Retention
from tests.engine.test_retention import _age

PASSES = {
    "StartAt": "A",
    "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}},
}
FAILS = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "c"}}}


async def _ended(engine: Engine, record: ExecutionRecord) -> None:
    """Poll until `record`'s execution has ended and its run here has unwound.

    The end is durable (a describe sees it) a moment before the run's
    checkpoint resumes on the loop and keeps the record: the run leaving the
    lease keeper's `held` comes after both. A liveness bound, not a timing.
    """
    held = engine._keeper.held
    with anyio.fail_after(60):
        while (await engine.describe(record)).status == "RUNNING" or record.execution_id in held:
            await anyio.sleep(0.01)


def test_a_wait_after_a_succeeded_end_gets_the_kept_record_a_describe_would_read(
    db_url: str,
) -> None:
    async def main() -> None:
        async with Engine(db_url, poll_seconds=0.1) as engine:
            await engine.create_state_machine("m", PASSES)
            records = [await engine.start("m", {"n": n}) for n in range(5)]
            for record in records:
                await _ended(engine, record)
            kept = engine.runtime.kept_ends
            assert len(kept) == 5
            for record in records:
                waited = await engine.wait(record)
                assert waited == await engine.describe(record)
                assert waited.status == "SUCCEEDED"
                assert waited.output == record.input  # two Pass states
            assert len(kept) == 0
            # Taken once: a second wait describes.
            assert (await engine.wait(records[0])) == await engine.describe(records[0])

    anyio.run(main)


def test_a_failed_end_is_not_kept_and_its_wait_describes(db_url: str) -> None:
    async def main() -> None:
        async with Engine(db_url, poll_seconds=0.1) as engine:
            await engine.create_state_machine("f", FAILS)
            record = await engine.start("f")
            await _ended(engine, record)
            assert len(engine.runtime.kept_ends) == 0
            assert (await engine.wait(record)).status == "FAILED"

    anyio.run(main)


def test_an_engine_that_starts_nothing_keeps_no_end(db_url: str) -> None:
    async def main() -> None:
        async with Engine(db_url, worker=False) as client:
            await client.create_state_machine("m", PASSES)
            record = await client.start("m", {"n": 1})
        async with Engine(db_url, poll_seconds=0.1) as worker:
            await _ended(worker, record)
            assert len(worker.runtime.kept_ends) == 0
            assert (await worker.wait(record)).status == "SUCCEEDED"

    anyio.run(main)


def test_an_end_purged_by_this_processs_retention_is_no_longer_kept(db_url: str) -> None:
    async def main() -> None:
        async with Engine(db_url, poll_seconds=0.1) as engine:
            await engine.create_state_machine("m", PASSES)
            record = await engine.start("m", {"n": 1})
            await _ended(engine, record)
            assert len(engine.runtime.kept_ends) == 1
            _age(db_url, [record.execution_id], days=91)
            assert await Retention(engine.runtime, days=90).sweep() == 1
            assert len(engine.runtime.kept_ends) == 0
            with pytest.raises(ExecutionDoesNotExist):
                await engine.wait(record)

    anyio.run(main)


def _record(execution_id: str, output: str, status: str = "SUCCEEDED") -> ExecutionRecord:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    fields: dict[str, Any] = {
        "execution_id": execution_id,
        "name": execution_id,
        "machine": "m",
        "version": 1,
        "status": status,
        "input": "{}",
        "output": output,
        "error": None,
        "cause": None,
        "start_date": now,
        "stop_date": now,
        "trace_id": "0" * 32,
        "stop_requested": False,
        "stop_requested_error": None,
        "stop_requested_cause": None,
        "last_event_id": 3,
    }
    return ExecutionRecord(**fields)


@pytest.mark.parametrize("bound", ["records", "chars"])
def test_kept_ends_are_bounded_the_oldest_dropped_first(bound: str) -> None:
    kept = (
        KeptEnds(max_records=3)
        if bound == "records"
        else KeptEnds(max_chars=16 * 30)  # a record here is 2 + 20 characters
    )
    for n in range(30 if bound == "chars" else 5):
        kept.keep(_record(f"e{n}", "x" * 20))
    expected = 3 if bound == "records" else (16 * 30) // 22
    assert len(kept) == expected
    total = 30 if bound == "chars" else 5
    assert kept.take(_record(f"e{total - expected - 1}", "")) is None  # dropped
    assert kept.take(_record(f"e{total - 1}", "")) is not None  # the newest stays
    assert len(kept) == expected - 1


def test_kept_ends_keep_only_succeeded_records_of_a_bounded_size() -> None:
    kept = KeptEnds(max_chars=16 * 100)
    kept.keep(_record("failed", "null", status="FAILED"))
    kept.keep(_record("large", "x" * 100))  # over a sixteenth of max_chars
    kept.keep(_record("small", "x" * 10))
    assert kept.take(_record("failed", "")) is None
    assert kept.take(_record("large", "")) is None
    assert kept.take(_record("small", "")) is not None
    assert kept.take(_record("small", "")) is None


def test_a_kept_end_answers_only_the_same_incarnation_and_only_while_fresh() -> None:
    kept = KeptEnds()
    kept.keep(_record("e", "1"))
    later = msgspec.structs.replace(_record("e", ""), start_date=datetime(2030, 1, 2, tzinfo=UTC))
    assert kept.take(later) is None  # a new execution under the purged one's name
    assert len(kept) == 0  # and the stale record is gone
    stale = KeptEnds(max_age=-1.0)
    stale.keep(_record("e", "1"))
    assert stale.take(_record("e", "")) is None  # past its age: the wait describes
    # A later end of the same id (a FAILED one is never read back) drops it.
    kept.keep(_record("e", "1"))
    kept.drop("e")
    assert kept.take(_record("e", "")) is None


def test_map_run_children_are_not_kept() -> None:
    kept = KeptEnds()
    child = "arn:aws:states:us-east-1:000000000000:execution:m/run-label:child-1"
    kept.keep(_record(child, "1"))
    assert len(kept) == 0


CHOOSES = {
    "StartAt": "C",
    "States": {
        "C": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "StringEquals": "new", "Next": "F"}],
            "Default": "P",
        },
        "F": {"Type": "Fail", "Error": "E", "Cause": "c"},
        "P": {"Type": "Pass", "End": True},
    },
}


def test_a_name_started_again_after_another_processs_purge_is_waited_on_afresh(
    db_url: str,
) -> None:
    """The kept end of a purged execution never answers for the new one under its name."""

    async def main() -> None:
        async with Engine(db_url, poll_seconds=0.1) as engine:
            await engine.create_state_machine("m", CHOOSES)
            old = await engine.start("m", {"n": "old"}, name="order-42")
            await _ended(engine, old)
            assert len(engine.runtime.kept_ends) == 1
            other = Store(db_url)  # the CLI's purge, or another worker's retention
            try:
                other.purge_executions(
                    stopped_before=datetime.now(UTC) + timedelta(seconds=1), limit=100
                )
            finally:
                other.close()
            new = await engine.start("m", {"n": "new"}, name="order-42")
            assert new.execution_id == old.execution_id
            waited = await engine.wait(new)
            assert (waited.status, waited.input) == ("FAILED", '{"n":"new"}')
            assert waited == await engine.describe(new)

    anyio.run(main)
