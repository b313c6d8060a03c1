"""The commit path's faults: whose fault a refusal is, and what is sent again after it.

On a real PostgreSQL server: a NUL character in an error cause (which
PostgreSQL's text cannot hold, refused by psycopg itself with no SQLSTATE)
is stored and read back exactly, never taken for an outage; a value over a
program limit (54000, an OperationalError in psycopg's tree) is the data's
fault; a group split after a collision keeps what it already committed
when a later checkpoint's data is refused; the halving of a refused group
stops at a store error. On SQLite: a gatherer cancelled by asyncio's own
Task.cancel after its commit was answered OK does not send its rows again.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import anyio
import psycopg
import pytest

from activities import Registry
from engine import Engine
from engine.clock import SystemClock
from engine.committer import Committer
from engine.journal import Journal
from engine.states import run_state
from engine.store import Checkpoint, CommitResult, Event, Store
from engine.store.boundary import fault_of, mapped_errors
from engine.store.codec import PayloadCodec
from engine.store.errors import StoreUnavailable, UnstorableData
from engine.walk import Services, Walk, commit_error
from engine.worker import outage_of
from tests.engine.committing import T0, claimed
from tests.engine.test_store_faults import _checkpoint, _group_commit, _inject, _raw
from tests.engine.test_walk_durable import MACHINE

NUL_TASK = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "nul", "End": True}}}
NUL_FAIL = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "a\u0000b"}}}
QUICK = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def test_a_nul_in_a_cause_is_stored_and_read_back_on_postgres(postgres_url: str) -> None:
    calls: list[Any] = []
    registry = Registry()

    def nul(value: Any) -> Any:
        calls.append(value)
        raise ValueError("bad \x00 byte in input")

    registry.register("nul", nul)
    with Engine(postgres_url, registry=registry) as engine:
        engine.create_state_machine_sync("task", NUL_TASK)
        engine.create_state_machine_sync("fail", NUL_FAIL)
        engine.create_state_machine_sync("quick", QUICK)
        task = engine.start_sync("task", {})
        fail = engine.start_sync("fail", {})
        beside = engine.start_sync("quick", {"beside": True})
        ended = [engine.wait_sync(x, timeout=60) for x in (task, fail, beside)]
        history = engine.history_sync(ended[0])
        outages = outage_of(engine.runtime.store).outages
    assert [(r.status, r.error, r.cause) for r in ended] == [
        ("FAILED", "ValueError", "bad \x00 byte in input"),
        ("FAILED", "E", "a\x00b"),
        ("SUCCEEDED", None, None),
    ]
    assert history[-1].details["cause"] == "bad \x00 byte in input"
    assert len(calls) == 1  # the failure was recorded once, not retried as an outage
    assert outages == 0


def test_a_driver_refusal_without_sqlstate_and_a_program_limit_are_data(postgres_url: str) -> None:
    with psycopg.connect(_raw(postgres_url), autocommit=True) as conn:
        with pytest.raises(psycopg.DataError) as nul:
            conn.execute("SELECT %s::text", ("a\x00b",))
        assert nul.value.sqlstate is None  # psycopg's own, before the server
        assert fault_of(nul.value) == "data"
        with pytest.raises(UnstorableData, match="over the limit"), mapped_errors("db"):
            conn.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'over the limit'"
                " USING ERRCODE = 'program_limit_exceeded'; END $$"
            )
        # An operational error stays the store's.
        with pytest.raises(StoreUnavailable), mapped_errors("db"):
            conn.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'busy' USING ERRCODE = 'lock_not_available'; END $$"
            )


def test_a_group_split_after_a_collision_keeps_what_it_committed(postgres_url: str) -> None:
    store = Store(postgres_url)
    ids = claimed(store, 5)
    _inject(postgres_url, "22P05")
    # ids[1] collides (its event 2 is already recorded): the group goes one by one,
    # where ids[3]'s data is refused after ids[2]'s checkpoint committed.
    with psycopg.connect(_raw(postgres_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO history_events"
            " (execution_id, event_id, previous_event_id, type, timestamp, details)"
            " VALUES (%s, 2, 1, 'PassStateEntered', now(), '{}')",
            (ids[1],),
        )
        # As every writer of an event does (a history block is keyed by its
        # first event only: the compare-and-set on last_event_id refuses it).
        conn.execute("UPDATE executions SET last_event_id = 2 WHERE execution_id = %s", (ids[1],))
    checkpoints = [_checkpoint(i, "zqfault" if i == ids[3] else "fine") for i in ids]
    try:
        outcomes = _group_commit(store, checkpoints)
        histories = [[e.type for e in store.history(i)] for i in ids]
    finally:
        store.close()
    assert isinstance(outcomes[3], UnstorableData), outcomes[3]
    assert [outcomes[n] for n in (0, 1, 2, 4)] == [
        CommitResult.OK,
        CommitResult.CONFLICT,
        CommitResult.OK,
        CommitResult.OK,
    ]
    assert histories[3] == ["ExecutionStarted"]
    assert histories[2] == histories[4] == ["ExecutionStarted", "PassStateEntered"]


# Two faults by text: the data's (22P05) and the store's (25P02).
_TWO_FAULTS = """
CREATE SEQUENCE store_hits;
CREATE FUNCTION two_faults() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF to_jsonb(NEW)::text LIKE '%zqdata%' THEN
    RAISE EXCEPTION 'refused data' USING ERRCODE = '22P05';
  END IF;
  IF to_jsonb(NEW)::text LIKE '%zqstore%' THEN
    PERFORM nextval('store_hits');
    RAISE EXCEPTION 'store fault' USING ERRCODE = '25P02';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER two_faults BEFORE INSERT ON history_events
  FOR EACH ROW EXECUTE FUNCTION two_faults();
CREATE TRIGGER two_faults_blocks BEFORE INSERT ON history_blocks
  FOR EACH ROW EXECUTE FUNCTION two_faults();
"""


def test_halving_a_refused_group_stops_at_a_store_error(postgres_url: str) -> None:
    store = Store(postgres_url)
    ids = claimed(store, 5)
    with psycopg.connect(_raw(postgres_url), autocommit=True) as conn:
        conn.execute(_TWO_FAULTS)
    # The group after the first: [data, store, fine, fine]. Refused for the data
    # (its row first); the first half then meets the store's fault.
    details = ["fine", "zqdata", "zqstore", "fine", "fine"]
    checkpoints = [_checkpoint(i, d) for i, d in zip(ids, details, strict=True)]
    try:
        outcomes = _group_commit(store, checkpoints)
        histories = [[e.type for e in store.history(i)] for i in ids]
    finally:
        store.close()
    assert outcomes[0] is CommitResult.OK
    assert isinstance(outcomes[1], UnstorableData), outcomes[1]
    # The store failed: the rest get its error, not sent while it is failing.
    assert [type(o) for o in outcomes[2:]] == [StoreUnavailable] * 3, outcomes
    assert outcomes[3] is outcomes[2]
    assert [h[1:] for h in histories[1:]] == [[], [], [], []]


def test_a_gatherer_cancelled_after_its_commit_was_answered_ok_sends_nothing_again(
    sqlite_url: str,
) -> None:
    store = Store(sqlite_url)
    first, other = sorted(claimed(store, 2))
    release = asyncio.Event()
    calls: list[int] = []

    async def run_db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        if len(calls) == 1:
            await release.wait()  # the blocker's commit holds the committer's turn
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    clock = SystemClock()
    committer = Committer(store, worker_id="w", clock=clock, run_db=run_db)
    journal = Journal(first, {}, last_event_id=1, clock=clock)

    async def checkpoint() -> None:
        rows, events = journal.drain()
        done = Checkpoint(first, journal=rows, events=events, last_event_id=journal.last_event_id)
        result = await committer.commit(done)
        if result != CommitResult.OK:
            raise commit_error(result, "at commit")

    services = Services(
        store=store,
        run_db=run_db,
        committer=committer,
        clock=clock,
        registry=Registry(),
        worker_id="w",
        run_state=run_state,
    )
    walk = Walk(
        machine=MACHINE,
        journal=journal,
        services=services,
        execution_id=first,
        execution_name=first,
        machine_id="m",
        machine_name="m",
        execution_input={},
        start_time=datetime.now(UTC),
        checkpoint=checkpoint,
        random_source=random.random,
    )
    walk.children_running = 3
    outcome: dict[str, str] = {}

    async def child(name: str) -> None:
        walk.journal.record(name, name, events=[("PassStateEntered", {"name": name})])
        try:
            await walk.durable()
            outcome[name] = "durable"
        except asyncio.CancelledError:
            outcome[name] = "cancelled"
        except Exception as error:
            outcome[name] = type(error).__name__

    async def main() -> None:
        serving = asyncio.ensure_future(committer.run())
        blocker = asyncio.ensure_future(
            committer.commit(
                Checkpoint(
                    other,
                    journal=[("k", "1")],
                    events=[Event(2, 1, "PassStateEntered", T0, {})],
                    last_event_id=2,
                )
            )
        )
        while not calls:
            await asyncio.sleep(0)
        children = {name: asyncio.ensure_future(child(name)) for name in "abc"}
        await asyncio.sleep(0)  # each records its step; "a" gathers all three
        while journal.dirty:  # drained: its commit is queued behind the blocker
            await asyncio.sleep(0)
        children["a"].cancel()  # asyncio's own Task.cancel, not a cancel scope
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*children.values(), blocker)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving

    asyncio.run(main())
    history = [(e.event_id, e.type) for e in store.history(first)]
    store.close()
    assert outcome == {"a": "cancelled", "b": "durable", "c": "durable"}
    assert history == [(1, "ExecutionStarted")] + [(n, "PassStateEntered") for n in (2, 3, 4)]
    assert calls == [1, 1]  # the gathered commit was sent once


@pytest.mark.parametrize(
    "text", ["a\x00b", "\x00", 'swenc:n:"x"', "swenc:p:a\x00", 'line\nand \x00 quote"']
)
def test_free_text_with_a_nul_or_the_codecs_marker_reads_back_exactly(text: str) -> None:
    codec = PayloadCodec()
    stored = codec.seal(text)
    assert "\x00" not in stored  # PostgreSQL's text can hold it
    assert codec.open(stored) == text
