"""History blocks (migration 18): a commit's events of one execution as one row, read merged.

The hot writers store the events one commit writes for one execution as one
`history_blocks` row; rows written before (older versions) and by cold
writers (a start's ExecutionStarted, a redrive, Map Run hooks) stay in
`history_events`. Every reader goes through the store's two readers, which
merge both tables by event id: the whole history, and the keyset pages of
GetExecutionHistory (forward and reverse, any page size), each in one
snapshot. Both stores write blocks: SQLite's commits from migration 18,
PostgreSQL's from 19 (its commit function `stepwise_commit_v3`; the careful
path too); a database opened unmigrated below that writes rows.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from engine.store import Checkpoint, CommitResult, Event, Finish, Store, blocks, schema
from engine.store.blocks import block_row
from engine.store.checkpoints import event_row
from engine.store.codec import ENCRYPTED_PREFIX, PayloadCodec
from engine.store.schema import executions, history_blocks, history_events

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
MACHINE = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
SECRET = "hunter2-the-secret"
KEY_A = base64.b64encode(b"a" * 32).decode()
KEY_B = base64.b64encode(b"b" * 32).decode()

# How the test history is stored: ExecutionStarted is the start's row, then
# legacy rows, blocks, a row between blocks, a one-event block, the last block.
LAYOUT: list[tuple[str, list[int]]] = [
    ("rows", [2, 3, 4]),
    ("block", [5, 6, 7, 8, 9]),
    ("block", [10]),
    ("rows", [11]),
    ("block", list(range(12, 21))),
]


def _event(event_id: int) -> Event:
    """Event `event_id`: its own type, a time with microseconds and a secret in its details."""
    return Event(
        event_id,
        event_id - 1,
        f"Type{event_id}",
        T0 + timedelta(seconds=event_id, microseconds=event_id * 1001),
        {"n": event_id, "secret": SECRET, "nested": {"list": [event_id, "é\x01"]}},
    )


def _codec(*keys: str) -> PayloadCodec:
    return PayloadCodec([base64.b64decode(k) for k in keys])


def _started(store: Store, execution_id: str = "e1") -> None:
    machine = store.put_state_machine("M", json.dumps(MACHINE))
    store.create_execution(
        execution_id=execution_id,
        name=execution_id,
        machine=machine,
        input="{}",
        start_date=T0,
        trace_id="0" * 32,
        first_event=_event(1),
    )


def _write_layout(store: Store, codec: PayloadCodec, execution_id: str = "e1") -> None:
    """The layout's rows and blocks after the start's row, as the writers would store them."""
    with store._engine.begin() as conn:
        for kind, ids in LAYOUT:
            events = [_event(i) for i in ids]
            if kind == "rows":
                conn.execute(
                    sa.insert(history_events), [event_row(execution_id, e, codec) for e in events]
                )
            else:
                conn.execute(sa.insert(history_blocks), block_row(execution_id, events, codec))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store(db_url)
    try:
        yield opened
    finally:
        opened.close()


def _counts(store: Store, execution_id: str = "e1") -> tuple[int, int]:
    with store._engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(
                sa.select(sa.func.count()).where(table.c.execution_id == execution_id)
            ).scalar_one()
            for table in (history_events, history_blocks)
        )


def test_rows_and_blocks_read_back_merged_event_for_event(store: Store) -> None:
    _started(store)
    _write_layout(store, PayloadCodec())
    assert _counts(store) == (5, 3)
    assert store.history("e1") == [_event(i) for i in range(1, 21)]
    assert store.history_page("e1", limit=1000) == [_event(i) for i in range(1, 21)]
    assert store.history_page("e1", limit=1000, reverse=True) == [
        _event(i) for i in range(20, 0, -1)
    ]


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 7, 19, 20, 21])
def test_paging_across_rows_and_blocks_gives_every_event_once(store: Store, limit: int) -> None:
    _started(store)
    _write_layout(store, PayloadCodec())
    for reverse in (False, True):
        seen: list[int] = []
        for page in store.iter_history("e1", page_size=limit, reverse=reverse):
            assert 0 < len(page) <= limit
            seen.extend(e.event_id for e in page)
        expected = list(range(1, 21))
        assert seen == (expected[::-1] if reverse else expected)
    # A page may start inside a block, forward and reversed.
    assert [e.event_id for e in store.history_page("e1", after=6, limit=3)] == [7, 8, 9]
    assert [e.event_id for e in store.history_page("e1", after=14, limit=4, reverse=True)] == [
        13,
        12,
        11,
        10,
    ]
    assert store.history_page("e1", after=20) == []
    assert store.history_page("e1", after=1, reverse=True) == []


def _blocks_of_ten(store: Store, count: int) -> None:
    """Events 2 .. `count` + 1 of e1 as blocks of ten."""
    with store._engine.begin() as conn:
        conn.execute(
            sa.insert(history_blocks),
            [
                block_row("e1", [_event(i) for i in range(first, first + 10)], PayloadCodec())
                for first in range(2, count + 2, 10)
            ],
        )


def test_a_page_reads_about_the_blocks_it_returns(store: Store) -> None:
    """A page of a long history decodes the blocks it needs, not the whole history."""
    _started(store)
    _blocks_of_ten(store, 2000)
    opened: list[int] = []
    real = blocks.open_block

    def counting(text: str, codec: PayloadCodec) -> list[Event]:
        opened.append(1)
        return real(text, codec)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(blocks, "open_block", counting)
        page = store.history_page("e1", after=1000, limit=25)
    assert [e.event_id for e in page] == list(range(1001, 1026))
    assert len(opened) <= 2 * blocks._BLOCKS_PER_READ


def test_blocks_are_sealed_per_event_and_read_back_under_encryption(db_url: str) -> None:
    codec = _codec(KEY_A)
    sealed = Store(db_url, codec=codec)
    try:
        _started(sealed)
        _write_layout(sealed, codec)
        assert sealed.history("e1") == [_event(i) for i in range(1, 21)]
        with sealed._engine.connect() as conn:
            texts = conn.execute(sa.select(history_blocks.c.events)).scalars().all()
        for text in texts:
            assert SECRET not in text
            assert all(event[4].startswith(ENCRYPTED_PREFIX) for event in json.loads(text))
    finally:
        sealed.close()


def test_plain_blocks_hold_details_as_a_plain_codec_seals_them(store: Store) -> None:
    # Without keys a block's details skip `seal`: JSON text never holds a raw
    # NUL nor starts with the codec's marker, so sealing would not change it.
    tricky = [
        Event(2, 1, "T", T0, {"s": "swenc:1:abcd:xyz", "nul": "a\x00b"}),
        Event(3, 2, "T", T0, {"p": "swenc:p:x", "n": 'swenc:n:"\\u0000"'}),
    ]
    plain = PayloadCodec()
    values = blocks.block_values(tricky, plain)
    assert [v[4] for v in values] == [plain.seal(v[4]) for v in values]
    assert [json.loads(v[4]) for v in values] == [e.details for e in tricky]
    _started(store)
    with store._engine.begin() as conn:
        conn.execute(sa.insert(history_blocks), block_row("e1", tricky, plain))
        conn.execute(sa.update(executions).values(last_event_id=3))
    assert store.history("e1")[1:] == tricky


def test_key_rotation_reseals_blocks(db_url: str) -> None:
    old = Store(db_url, codec=_codec(KEY_A))
    try:
        _started(old)
        _write_layout(old, _codec(KEY_A))
    finally:
        old.close()
    rotator = Store(db_url, codec=_codec(KEY_B, KEY_A))
    try:
        counts = rotator.rotate_keys(batch_size=2)
        assert counts["history_blocks"] == 15 and counts["history_events"] == 5
        assert rotator.rotate_keys()["history_blocks"] == 0
    finally:
        rotator.close()
    new_only = Store(db_url, codec=_codec(KEY_B))
    try:
        assert new_only.history("e1") == [_event(i) for i in range(1, 21)]
    finally:
        new_only.close()


def test_a_duplicate_block_is_refused(store: Store) -> None:
    _started(store)
    with store._engine.begin() as conn:
        conn.execute(sa.insert(history_blocks), block_row("e1", [_event(2)], PayloadCodec()))
    with pytest.raises(sa_exc.IntegrityError), store._engine.begin() as conn:
        conn.execute(
            sa.insert(history_blocks),
            block_row("e1", [_event(2), _event(3)], PayloadCodec()),
        )
    assert store.history("e1") == [_event(1), _event(2)]


def test_purge_leaves_no_block(store: Store) -> None:
    _started(store)
    with store._engine.begin() as conn:
        conn.execute(sa.insert(history_blocks), block_row("e1", [_event(2)], PayloadCodec()))
    assert store.claim_due("w", limit=10, lease_seconds=3600, now=T0)
    end = T0 + timedelta(seconds=30)
    done = Checkpoint(
        "e1",
        events=[_event(3), _event(4)],
        finish=Finish("SUCCEEDED", end, output="{}"),
        last_event_id=2,
    )
    assert store.commit([done], worker_id="w", now=T0) == [CommitResult.OK]
    assert store.history("e1") == [_event(i) for i in range(1, 5)]
    assert store.purge_executions(stopped_before=end + timedelta(days=1)) == ["e1"]
    with store._engine.connect() as conn:
        for table in (history_events, history_blocks):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0


def test_a_database_from_before_blocks_reads_its_rows_merged_with_new_blocks(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written at schema 17 stay rows; blocks written after migration 18 merge with them."""
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:17])
        patched.setattr(schema, "SCHEMA_VERSION", 17)
        old = Store(db_url)
        try:
            _started(old)
            with old._engine.begin() as conn:
                assert not sa.inspect(conn).has_table("history_blocks")
                conn.execute(
                    sa.insert(history_events),
                    [event_row("e1", _event(i), PayloadCodec()) for i in (2, 3, 4)],
                )
        finally:
            old.close()
    upgraded = Store(db_url)  # opening it migrates
    try:
        assert upgraded.schema_version() == schema.SCHEMA_VERSION
        assert upgraded.history("e1") == [_event(i) for i in range(1, 5)]
        with upgraded._engine.begin() as conn:
            conn.execute(
                sa.insert(history_blocks),
                block_row("e1", [_event(i) for i in range(5, 9)], PayloadCodec()),
            )
        assert upgraded.history("e1") == [_event(i) for i in range(1, 9)]
        assert [e.event_id for e in upgraded.history_page("e1", after=3, limit=3)] == [4, 5, 6]
    finally:
        upgraded.close()


def test_deleting_an_execution_deletes_its_blocks_whoever_deletes_it(store: Store) -> None:
    """SQLite by the foreign key's cascade, PostgreSQL by migration 18's trigger function."""
    _started(store)
    _write_layout(store, PayloadCodec())
    with store._engine.begin() as conn:  # an operator's DELETE, on purpose
        conn.execute(sa.delete(executions).where(executions.c.execution_id == "e1"))
    assert _counts(store) == (0, 0)


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "careful"])
def test_a_group_commit_writes_one_block_per_execution(db_url: str, fast: bool) -> None:
    """The fast commit (SQLite's raw one, PostgreSQL's v3 call) and the careful path alike."""
    store = Store(db_url, codec=_codec(KEY_A))
    store.raw_commit_writes = fast
    try:
        ids = ["e1", "e2", "e3"]
        for execution_id in ids:
            _started(store, execution_id)
        assert len(store.claim_due("w", limit=10, lease_seconds=3600, now=T0)) == 3
        group = [
            Checkpoint(execution_id, journal=[("A#0", "1")], events=[_event(i) for i in (2, 3)])
            for execution_id in ids
        ]
        assert store.commit(group, worker_id="w", now=T0) == [CommitResult.OK] * 3
        end = T0 + timedelta(seconds=30)
        last = Checkpoint(
            "e2",
            events=[_event(i) for i in range(4, 9)],
            finish=Finish("SUCCEEDED", end, output="{}"),
            last_event_id=3,
        )
        assert store.commit([last], worker_id="w", now=T0) == [CommitResult.OK]
        assert [_counts(store, execution_id) for execution_id in ids] == [(1, 1), (1, 2), (1, 1)]
        assert store.history("e1") == store.history("e3") == [_event(i) for i in (1, 2, 3)]
        assert store.history("e2") == [_event(i) for i in range(1, 9)]
        assert store.get_execution("e2").last_event_id == 8
        # The same events again (another writer resuming from the same point) are refused.
        again = Checkpoint("e1", events=[_event(4)], last_event_id=3)
        assert store.commit([again], worker_id="w", now=T0) == [CommitResult.OK]
        assert store.commit([again], worker_id="w", now=T0) == [CommitResult.CONFLICT]
        assert store.history("e1") == [_event(i) for i in range(1, 5)]
    finally:
        store.close()


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "careful"])
def test_a_store_on_an_unmigrated_database_writes_and_reads_rows(
    db_url: str, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    """Opened without migrating a database at schema 17, commits write one row per event.

    On PostgreSQL at 18 too: history_blocks is there but not its commit function v3.
    """
    old = 18 if db_url.startswith("postgresql") else 17
    with monkeypatch.context() as patched:
        patched.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:old])
        patched.setattr(schema, "SCHEMA_VERSION", old)
        Store(db_url).close()
    store = Store(db_url, auto_migrate=False)
    store.raw_commit_writes = fast
    try:
        assert store.schema_version() == old
        _started(store)
        assert store.claim_due("w", limit=10, lease_seconds=3600, now=T0)
        group = [Checkpoint("e1", events=[_event(i) for i in (2, 3, 4)], last_event_id=1)]
        assert store.commit(group, worker_id="w", now=T0) == [CommitResult.OK]
        with store._engine.connect() as conn:
            count = sa.select(sa.func.count()).select_from(history_events)
            assert conn.execute(count).scalar_one() == 4
        assert store.history("e1") == [_event(i) for i in range(1, 5)]
        assert store.history_page("e1", after=2, limit=1, reverse=True) == [_event(1)]
    finally:
        store.close()


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "careful"])
def test_events_already_recorded_are_refused_whatever_block_holds_them(
    db_url: str, fast: bool
) -> None:
    """The blocks' safety net: a commit of recorded events is CONFLICT, not a second copy.

    With rows every event id was a key; a block's key is its first id, so a
    re-commit of a batch whose outcome was lost (`Journal.restore`) or a
    stale writer's overlapping events would pass it: the progress
    compare-and-set refuses them, on the fast paths (SQLite's raw commit,
    PostgreSQL's v3 call) and the careful path.
    """
    store = Store(db_url)
    store.raw_commit_writes = fast
    try:
        _started(store)
        assert store.claim_due("w", limit=10, lease_seconds=3600, now=T0)
        first = Checkpoint("e1", journal=[("A#0", "1")], events=[_event(2), _event(3)])
        second = Checkpoint("e1", events=[_event(4), _event(5)], last_event_id=3)
        # Two checkpoints of one execution in one group: one block, both OK.
        assert store.commit([first, second], worker_id="w", now=T0) == [CommitResult.OK] * 2
        assert _counts(store) == (1, 1)
        # The second again, its outcome lost: inside the group's block, at another first id.
        assert store.commit([second], worker_id="w", now=T0) == [CommitResult.CONFLICT]
        # A stale writer resumed after event 4: overlaps event 5.
        stale = Checkpoint("e1", events=[_event(5), _event(6)], last_event_id=4)
        assert store.commit([stale], worker_id="w", now=T0) == [CommitResult.CONFLICT]
        # In one group with a checkpoint of another execution, only the collision is refused.
        _started(store, "e2")
        assert store.claim_due("w", limit=10, lease_seconds=3600, now=T0)
        fresh = Checkpoint("e2", events=[_event(2)], last_event_id=1)
        assert store.commit([fresh, stale], worker_id="w", now=T0) == [
            CommitResult.OK,
            CommitResult.CONFLICT,
        ]
        # Overlapping events in one group (event 7 twice): the later one is refused.
        after = Checkpoint("e1", events=[_event(6), _event(7)], last_event_id=5)
        again = Checkpoint("e1", events=[_event(7)], last_event_id=6)
        assert store.commit([after, again], worker_id="w", now=T0) == [
            CommitResult.OK,
            CommitResult.CONFLICT,
        ]
        assert store.history("e1") == [_event(i) for i in range(1, 8)]
        assert store.history("e2") == [_event(1), _event(2)]
        assert store.get_execution("e1").last_event_id == 7
    finally:
        store.close()


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "careful"])
def test_an_end_over_recorded_events_is_refused_and_ends_nothing(db_url: str, fast: bool) -> None:
    """The compare-and-set holds for a finishing checkpoint too (SQLite's raw commit makes
    it in the end's own UPDATE): a stale end is CONFLICT, the execution stays RUNNING."""
    store = Store(db_url)
    store.raw_commit_writes = fast
    try:
        _started(store)
        assert store.claim_due("w", limit=10, lease_seconds=3600, now=T0)
        done = Checkpoint("e1", events=[_event(2), _event(3)], last_event_id=1)
        assert store.commit([done], worker_id="w", now=T0) == [CommitResult.OK]
        # A stale writer's end, resumed after event 2: overlaps event 3.
        end = Finish("SUCCEEDED", T0 + timedelta(seconds=1), output='{"stale":true}')
        stale = Checkpoint("e1", events=[_event(3), _event(4)], finish=end, last_event_id=2)
        assert store.commit([stale], worker_id="w", now=T0) == [CommitResult.CONFLICT]
        record = store.get_execution("e1")
        assert (record.status, record.output, record.stop_date) == ("RUNNING", None, None)
        assert record.last_event_id == 3
        assert store.history("e1") == [_event(i) for i in range(1, 4)]
        # The right end: recorded, the execution ended.
        right = Checkpoint("e1", events=[_event(4)], finish=end, last_event_id=3)
        assert store.commit([right], worker_id="w", now=T0) == [CommitResult.OK]
        record = store.get_execution("e1")
        assert (record.status, record.output, record.last_event_id) == (
            "SUCCEEDED",
            '{"stale":true}',
            4,
        )
        assert store.history("e1") == [_event(i) for i in range(1, 5)]
    finally:
        store.close()


def test_a_large_commit_is_stored_as_capped_blocks_and_paged_a_block_at_a_time(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inline Map's end commits its iterations' events at once: consecutive capped blocks.

    One block per commit would hold the whole Map (thousands of events, MBs),
    decoded whole by every page and key rotation's batch; capped (here at 50
    events or 20 KB of details, as at 256 events or 1 MB in production) a
    one-event page decodes one block.
    """
    from engine import Engine

    monkeypatch.setattr(blocks, "BLOCK_EVENTS", 50)
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 20_000)
    pad = "p" * 1000
    iterator = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Result": pad, "Next": "B"},
            "B": {"Type": "Pass", "End": True},
        },
    }
    machine = {
        "StartAt": "Each",
        "States": {
            "Each": {"Type": "Map", "ItemsPath": "$.items", "Iterator": iterator, "End": True}
        },
    }
    with Engine(db_url) as engine:
        record = engine.run_sync(machine, {"items": list(range(120))})
    assert record.status == "SUCCEEDED"
    store = Store(db_url)
    try:
        history = store.history(record.execution_id)
        assert [e.event_id for e in history] == list(range(1, len(history) + 1))
        assert len(history) > 120 * 5
        with store._engine.connect() as conn:
            stored = conn.execute(
                sa.select(history_blocks.c.first_event_id, history_blocks.c.last_event_id)
                .where(history_blocks.c.execution_id == record.execution_id)
                .order_by(history_blocks.c.first_event_id)
            ).all()
        assert len(stored) > len(history) // 50
        assert all(last - first < 50 for first, last in stored)
        # Consecutive: each block starts right after the one before.
        assert all(b[0] == a[1] + 1 for a, b in pairwise(stored))
        opened: list[int] = []
        real = blocks.open_block

        def counting(text: str, codec: PayloadCodec) -> list[Event]:
            opened.append(1)
            return real(text, codec)

        monkeypatch.setattr(blocks, "open_block", counting)
        middle = len(history) // 2
        for reverse in (False, True):
            opened.clear()
            page = store.history_page(record.execution_id, after=middle, limit=1, reverse=reverse)
            assert [e.event_id for e in page] == [middle - 1 if reverse else middle + 1]
            assert len(opened) == 1
    finally:
        store.close()


def test_a_forward_page_finds_its_blocks_by_the_keys_range(sqlite_url: str) -> None:
    """A page after event N reads blocks by (execution, first id) ranges, never every earlier one.

    No index holds a block's last event id: a query on it walks every block
    of the execution before the page. The plans of the page's block queries
    must each search the primary key's range on the first event id.
    """
    store = Store(sqlite_url)
    try:
        _started(store)
        _blocks_of_ten(store, 500)
        sent: list[tuple[str, Any]] = []

        def capture(*args: Any) -> None:
            statement, parameters = args[2], args[3]
            if "history_blocks" in statement:
                sent.append((statement, parameters))

        sa.event.listen(store._engine, "before_cursor_execute", capture)
        try:
            page = store.history_page("e1", after=255, limit=20)
        finally:
            sa.event.remove(store._engine, "before_cursor_execute", capture)
        assert [e.event_id for e in page] == list(range(256, 276))
        assert sent
        with store._engine.connect() as conn:
            for statement, parameters in sent:
                plan = " ".join(
                    row[-1]
                    for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                )
                assert re.search(r"\(execution_id=\? AND first_event_id[<>]=?\?\)", plan), (
                    statement,
                    plan,
                )
    finally:
        store.close()


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "careful"])
def test_a_commit_without_events_never_moves_last_event_id_back(db_url: str, fast: bool) -> None:
    """A checkpoint with no events carries the walk's last id, which may lag the stored one.

    Both paths' plain progress update is monotone, so a later block's
    compare-and-set still refuses events at or below the recorded ones.
    """
    store = Store(db_url)
    store.raw_commit_writes = fast
    try:
        _started(store)
        assert store.claim_due("w", limit=10, lease_seconds=3600, now=T0)
        ahead = Checkpoint("e1", events=[_event(i) for i in (2, 3, 4, 5)], last_event_id=1)
        assert store.commit([ahead], worker_id="w", now=T0) == [CommitResult.OK]
        behind = Checkpoint("e1", journal=[("late#0", "1")], last_event_id=3)
        assert store.commit([behind], worker_id="w", now=T0) == [CommitResult.OK]
        assert store.get_execution("e1").last_event_id == 5
        # Events 4 and 5 again, from the lagging point: still refused.
        stale = Checkpoint("e1", events=[_event(4), _event(5)], last_event_id=3)
        assert store.commit([stale], worker_id="w", now=T0) == [CommitResult.CONFLICT]
        forward = Checkpoint("e1", journal=[("next#0", "1")], last_event_id=9)
        assert store.commit([forward], worker_id="w", now=T0) == [CommitResult.OK]
        assert store.get_execution("e1").last_event_id == 9
        assert store.history("e1") == [_event(i) for i in range(1, 6)]
    finally:
        store.close()


def test_a_history_read_sees_one_snapshot_of_rows_and_blocks(db_url: str) -> None:
    """A commit between the read of the rows and the read of the blocks is not half seen.

    Another connection commits a row (event 21) and a block (22-23) right
    after the reader's first statement: without one snapshot the reader
    would see the block but not the row (event 21 missing from its history
    and skipped by the pages after it).
    """
    store = Store(db_url)
    other = Store(db_url)
    try:
        _started(store)
        _write_layout(store, PayloadCodec())
        done: list[int] = []

        def commit_meanwhile(*args: Any) -> None:
            if done or "FROM history_events" not in args[2]:
                return  # after the read of the rows, the first of the reads
            done.append(1)
            with other._engine.begin() as conn:
                conn.execute(sa.insert(history_events), event_row("e1", _event(21), PayloadCodec()))
                conn.execute(
                    sa.insert(history_blocks),
                    block_row("e1", [_event(22), _event(23)], PayloadCodec()),
                )

        for read in (
            lambda: store.history("e1"),
            lambda: store.history_page("e1", after=15, limit=100),
            lambda: store.history_page("e1", limit=100, reverse=True)[::-1],
        ):
            done.clear()
            with other._engine.begin() as conn:
                conn.execute(sa.delete(history_events).where(history_events.c.event_id > 20))
                conn.execute(sa.delete(history_blocks).where(history_blocks.c.first_event_id > 20))
            sa.event.listen(store._engine, "after_cursor_execute", commit_meanwhile)
            try:
                events = read()
            finally:
                sa.event.remove(store._engine, "after_cursor_execute", commit_meanwhile)
            assert done
            ids = [e.event_id for e in events]
            assert ids == list(range(ids[0], 21)), ids
            assert [e.event_id for e in store.history("e1")] == list(range(1, 24))
    finally:
        other.close()
        store.close()


def test_postgres_without_commit_function_v3_commits_blocks_on_the_careful_path(
    postgres_url: str,
) -> None:
    """A database at 19 whose v3 is missing (dropped; a role that could not create it).

    The first call finds it missing; the group, and every one after it,
    goes to the careful path, which writes blocks with their
    compare-and-set: a group sent again after its block committed (a lost
    answer) is refused, never written a second time as rows.
    """
    store = Store(postgres_url)
    try:
        with store._engine.begin() as conn:
            conn.exec_driver_sql("DROP FUNCTION stepwise_commit_v3(text, timestamptz, text)")
        _started(store)
        assert store.claim_due("w", limit=10, lease_seconds=3600, now=T0)
        first = Checkpoint("e1", events=[_event(2), _event(3)], last_event_id=1)
        store.raw_commit_writes = False  # the careful path first: a block
        assert store.commit([first], worker_id="w", now=T0) == [CommitResult.OK]
        store.raw_commit_writes = True  # the one call finds v3 missing: the careful path again
        assert store.commit([first], worker_id="w", now=T0) == [CommitResult.CONFLICT]
        held = store._backend._held  # type: ignore[attr-defined]
        assert held.careful_only and held.function_version == 3
        assert store._backend.block_writes
        second = Checkpoint("e1", events=[_event(4)], last_event_id=3)
        assert store.commit([second], worker_id="w", now=T0) == [CommitResult.OK]
        assert store.history("e1") == [_event(i) for i in range(1, 5)]
        assert store.commit([second], worker_id="w", now=T0) == [CommitResult.CONFLICT]
        assert store.history("e1") == [_event(i) for i in range(1, 5)]
    finally:
        store.close()


def test_commit_blocks_one_pass_agrees_with_the_merging_path() -> None:
    """The one-pass build of the usual group gives what grouping and merging give."""
    codec = PayloadCodec()
    groups = [
        [Checkpoint("a", events=[_event(2), _event(3)], last_event_id=1)],
        [
            Checkpoint("a", journal=[("k", "1")], events=[_event(4)], last_event_id=3),
            Checkpoint("b", journal=[("k", "1")], last_event_id=7),
            Checkpoint("c", last_event_id=0),
            Checkpoint("d", events=[_event(i) for i in range(2, 300)], last_event_id=9),
        ],
    ]
    for group in groups:
        assert blocks.commit_blocks(group, codec) == blocks._merged_blocks(group, codec)
    # An execution twice, or its events out of order: the merging path decides.
    twice = [
        Checkpoint("a", events=[_event(2)], last_event_id=1),
        Checkpoint("a", events=[_event(3)], last_event_id=2),
    ]
    built = blocks.commit_blocks(twice, codec)
    assert built is not None and built[1:] == ([("a", 3, 2)], [])
    assert [(p[1], p[2]) for p in built[0]] == [(2, 3)]
    clash = [Checkpoint("a", events=[_event(3), _event(3)], last_event_id=2)]
    assert blocks.commit_blocks(clash, codec) is None
