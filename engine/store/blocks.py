"""History blocks: the events one commit writes for one execution, stored as one row.

Every history event was its own `history_events` row; a commit's per-row
cost (SQLite's B-tree inserts, PostgreSQL's per-row work and WAL, the
client's binding) was a large share of it (`benchmarks/PROFILE.md`, s11d;
`PROFILE_STORE.md`, s12rows). Since migration 18 the hot writers store a
commit's events of one execution as one `history_blocks` row: `events` is a
JSON array of `[event_id, previous_event_id, type, timestamp, details]`,
the timestamp the naive UTC text SQLite stores for a time, the details
sealed by the codec exactly as a row's (so encryption and key rotation
work per event). Cold writers (a start's ExecutionStarted, a redrive's
reopen, Map Run hooks) and every database written before keep rows, so
the readers here read both tables and merge them by event id; nothing
outside this module reads either table's events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from heapq import merge
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.store.codec import PayloadCodec
from engine.store.records import Checkpoint, Event
from engine.store.schema import history_blocks, history_events

__all__ = [
    "BLOCK_BYTES",
    "BLOCK_EVENTS",
    "block_pieces",
    "block_row",
    "block_text",
    "block_values",
    "commit_blocks",
    "commit_progress",
    "grouped_events",
    "history_events_of",
    "history_page_of",
    "open_block",
    "stamp",
    "stamps",
]

# Blocks read per query while a page is filled: most pages need one or two.
_BLOCKS_PER_READ = 32
# A block holds at most this many events and (past its first event) about
# this much sealed details text: a commit's events of one execution beyond
# either go out as consecutive blocks, so a page, or key rotation's batch,
# decodes a bounded amount whatever one commit wrote (an inline Map's end).
BLOCK_EVENTS = 256
BLOCK_BYTES = 1 << 20
# A details dict's JSON text, as `rows.encode_details` writes it.
_DETAILS = msgspec.json.Encoder()


def stamp(value: datetime) -> str:
    """A block's text of an aware time: naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff` (SQLite's form)."""
    zone = value.tzinfo
    if zone is None:
        raise ValueError(f"naive datetime {value!r}: the store only takes aware UTC times")
    if zone is not UTC:
        value = value.astimezone(UTC)
    # Formatted field by field: `isoformat` of an aware time costs several
    # times as much (it formats and then drops the offset), and every
    # event of a commit has a time of its own (`benchmarks/PROFILE.md`, s15a).
    return _STAMP % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


_STAMP = "%04d-%02d-%02d %02d:%02d:%02d.%06d"
_MINUTE = "%04d-%02d-%02d %02d:%02d:"
_SECOND = "%s%02d.%06d"


def stamps(values: Iterable[datetime]) -> list[str]:
    """`stamp` of each of `values`, the text of a minute formatted once per run of its times.

    A commit's events come microseconds apart (W3's end: 41 times, nearly
    always in one minute), so each time after the first of its minute costs
    two fields formatted, not seven (`benchmarks/PROFILE_STORE.md`, s18a).
    The prefix lives in this call alone: nothing is shared between threads.
    """
    texts: list[str] = []
    append = texts.append
    minute: tuple[int, int, int, int, int] | None = None
    prefix = ""
    for value in values:
        zone = value.tzinfo
        if zone is not UTC:
            if zone is None:
                raise ValueError(f"naive datetime {value!r}: the store only takes aware UTC times")
            value = value.astimezone(UTC)
        # The least stable field first: a mismatch is found at once.
        key = (value.minute, value.hour, value.day, value.month, value.year)
        if key != minute:
            minute = key
            prefix = _MINUTE % (value.year, value.month, value.day, value.hour, value.minute)
        append(_SECOND % (prefix, value.second, value.microsecond))
    return texts


def block_values(events: Sequence[Event], codec: PayloadCodec) -> list[list[Any]]:
    """The JSON array items of a block of `events` (ascending ids), details sealed by `codec`."""
    encode = _DETAILS.encode
    times = stamps([e.timestamp for e in events])
    details = [encode(e.details).decode() for e in events]
    if codec.encrypting:
        # Without keys `seal` is the identity on JSON text (no raw NUL, never
        # the codec's marker first): ~40 calls an execution's end saved.
        seal = codec.seal
        details = [seal(text) for text in details]
    return [
        [e.event_id, e.previous_event_id, e.type, when, text]
        for e, when, text in zip(events, times, details, strict=True)
    ]


def block_text(events: Sequence[Event], codec: PayloadCodec) -> str:
    """The `events` column of a block of `events`."""
    return msgspec.json.encode(block_values(events, codec)).decode()


def block_row(execution_id: str, events: Sequence[Event], codec: PayloadCodec) -> dict[str, Any]:
    """The history_blocks row of one execution's `events` of one commit (ascending ids)."""
    return {
        "execution_id": execution_id,
        "first_event_id": events[0].event_id,
        "last_event_id": events[-1].event_id,
        "events": block_text(events, codec),
    }


def block_pieces(
    execution_id: str, events: Sequence[Event], codec: PayloadCodec
) -> list[tuple[str, int, int, str]]:
    """(execution, first id, last id, text) of the blocks of `events`: consecutive, capped.

    Each holds at most `BLOCK_EVENTS` events and stops at the event that
    takes its sealed details past `BLOCK_BYTES`.
    """
    values = block_values(events, codec)
    if len(values) <= BLOCK_EVENTS:
        text = msgspec.json.encode(values).decode()
        if len(text) < BLOCK_BYTES:  # a commit's usual few events: one block
            return [(execution_id, values[0][0], values[-1][0], text)]
    pieces: list[tuple[str, int, int, str]] = []
    start = size = 0
    for index, item in enumerate(values):
        size += len(item[4])
        if index + 1 - start >= BLOCK_EVENTS or size >= BLOCK_BYTES or index + 1 == len(values):
            piece = values[start : index + 1]
            text = msgspec.json.encode(piece).decode()
            pieces.append((execution_id, piece[0][0], piece[-1][0], text))
            start, size = index + 1, 0
    return pieces


def grouped_events(
    pairs: Iterable[tuple[str, Sequence[Event]]],
) -> list[tuple[str, Sequence[Event]]]:
    """The blocks of a group's checkpoints (execution, events): one per execution.

    An execution's events in one group (the committer merges plain
    checkpoints; a finish may follow) make one block in event id order,
    whatever order they were given in. If two of them share an id (two
    writers' events), the execution gets a second block, which
    `commit_progress` reports as a collision, as the rows' keys refused a
    duplicate event.
    """
    grouped: dict[str, list[Event]] = {}
    for execution_id, events in pairs:
        if events:
            before = grouped.get(execution_id)
            if before is None:
                grouped[execution_id] = list(events)
            else:
                before.extend(events)
    blocks: list[tuple[str, Sequence[Event]]] = []
    apart: list[tuple[str, Sequence[Event]]] = []
    for execution_id, events in grouped.items():
        ids = [e.event_id for e in events]
        distinct = sorted(set(ids))
        if ids != distinct:  # not strictly ascending
            events.sort(key=_event_id)
            if len(distinct) != len(ids):
                apart.append((execution_id, events[-1:]))
        blocks.append((execution_id, events))
    return [*blocks, *apart]


def _event_id(event: Event) -> int:
    return event.event_id


def commit_progress(
    checkpoints: Sequence[Checkpoint], grouped: Sequence[tuple[str, Sequence[Event]]]
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]]] | None:
    """How a commit moves its executions' `last_event_id`, given its blocks `grouped`.

    Returns (execution, last, first) for each execution with a block — set
    to `last` only while the stored last event id is below the block's
    `first`, the compare-and-set that is the blocks' unique-key safety net
    (a block overlapping events already durable at another first id would
    pass the key) — and (execution, last) for the others, set as before.
    None when an execution has two blocks (two of its events share an id):
    a collision, which the caller handles as an IntegrityError.
    """
    last_of: dict[str, int] = {}
    for c in checkpoints:
        last = max([c.last_event_id, *(e.event_id for e in c.events)])
        if last > 0:
            last_of[c.execution_id] = max(last, last_of.get(c.execution_id, 0))
    firsts: dict[str, int] = {}
    for execution_id, events in grouped:
        if execution_id in firsts:
            return None
        firsts[execution_id] = events[0].event_id
    guarded = [(eid, last_of[eid], first) for eid, first in firsts.items()]
    plain = [(eid, last) for eid, last in last_of.items() if eid not in firsts]
    return guarded, plain


Piece = tuple[str, int, int, str]


def commit_blocks(
    checkpoints: Sequence[Checkpoint], codec: PayloadCodec
) -> tuple[list[Piece], list[tuple[str, int, int]], list[tuple[str, int]]] | None:
    """A group's history blocks and how it moves `last_event_id`, for a one-statement commit.

    (the blocks as `block_pieces` gives them, then `commit_progress`'s
    guarded and plain moves); None on a collision inside the group.
    """
    pieces: list[Piece] = []
    guarded: list[tuple[str, int, int]] = []
    plain: list[tuple[str, int]] = []
    seen: set[str] = set()
    # The usual group, in one pass: each execution once, its events ascending.
    for c in checkpoints:
        eid, events = c.execution_id, c.events
        if eid in seen:
            return _merged_blocks(checkpoints, codec)
        seen.add(eid)
        if not events:
            if c.last_event_id > 0:
                plain.append((eid, c.last_event_id))
            continue
        first = previous = events[0].event_id - 1
        for e in events:
            if e.event_id <= previous:
                return _merged_blocks(checkpoints, codec)
            previous = e.event_id
        guarded.append((eid, max(c.last_event_id, previous), first + 1))
        pieces.extend(block_pieces(eid, events, codec))
    return pieces, guarded, plain


def _merged_blocks(
    checkpoints: Sequence[Checkpoint], codec: PayloadCodec
) -> tuple[list[Piece], list[tuple[str, int, int]], list[tuple[str, int]]] | None:
    """`commit_blocks` of a group with an execution twice or events out of order."""
    grouped = grouped_events((c.execution_id, c.events) for c in checkpoints)
    progress = commit_progress(checkpoints, grouped)
    if progress is None:
        return None
    pieces = [piece for eid, events in grouped for piece in block_pieces(eid, events, codec)]
    return pieces, progress[0], progress[1]


def open_block(text: str, codec: PayloadCodec) -> list[Event]:
    """The events of a block's `events` column, details opened by `codec`."""
    opened = codec.open
    return [
        Event(
            event_id=event_id,
            previous_event_id=previous,
            type=kind,
            timestamp=datetime.fromisoformat(when).replace(tzinfo=UTC),
            details=msgspec.json.decode(opened(details)),
        )
        for event_id, previous, kind, when, details in msgspec.json.decode(text)
    ]


def _row_event(row: Any, codec: PayloadCodec) -> Event:
    return Event(
        event_id=row.event_id,
        previous_event_id=row.previous_event_id,
        type=row.type,
        timestamp=row.timestamp,
        details=msgspec.json.decode(codec.open(row.details)),
    )


def _by_id(event: Event) -> int:
    return event.event_id


def history_events_of(
    conn: Connection, execution_id: str, codec: PayloadCodec, *, blocks: bool = True
) -> list[Event]:
    """Every event of the execution, rows and blocks merged, in event-id order.

    `blocks` False: the database is older than history_blocks (opened unmigrated).
    """
    rows = conn.execute(
        sa.select(history_events)
        .where(history_events.c.execution_id == execution_id)
        .order_by(history_events.c.event_id)
    )
    from_rows = [_row_event(row, codec) for row in rows]
    if not blocks:
        return from_rows
    texts = conn.execute(
        sa.select(history_blocks.c.events)
        .where(history_blocks.c.execution_id == execution_id)
        .order_by(history_blocks.c.first_event_id)
    ).scalars()
    from_blocks = [event for text in texts for event in open_block(text, codec)]
    if not from_blocks:
        return from_rows
    if not from_rows:
        return from_blocks
    return list(merge(from_rows, from_blocks, key=_by_id))


def history_page_of(
    conn: Connection,
    execution_id: str,
    codec: PayloadCodec,
    *,
    after: int | None,
    limit: int,
    reverse: bool,
    blocks: bool = True,
) -> list[Event]:
    """Up to `limit` events of the execution above `after` (reversed: below it), rows and blocks.

    The rows are one indexed range read, as before blocks; the blocks are
    read in key order a few at a time until they hold `limit` events past
    `after` (or run out), so a page reads about as many events as it returns.
    """
    column = history_events.c.event_id
    query = sa.select(history_events).where(history_events.c.execution_id == execution_id)
    if after is not None:
        query = query.where(column < after if reverse else column > after)
    query = query.order_by(column.desc() if reverse else column).limit(limit)
    from_rows = [_row_event(row, codec) for row in conn.execute(query)]
    if not blocks:
        return from_rows
    from_blocks = list(_block_events(conn, execution_id, codec, after, limit, reverse))
    if not from_blocks:
        return from_rows
    merged = merge(from_rows, from_blocks, key=_by_id, reverse=reverse)
    return [event for event, _ in zip(merged, range(limit), strict=False)]


def _block_events(
    conn: Connection,
    execution_id: str,
    codec: PayloadCodec,
    after: int | None,
    limit: int,
    reverse: bool,
) -> Iterator[Event]:
    """The first `limit` (or more) block events past `after` in page order, read block by block."""
    first = history_blocks.c.first_event_id
    # A block holds one event or more: `limit` events need at most `limit` + 1 blocks.
    per_read = min(_BLOCKS_PER_READ, limit + 1)
    found = 0
    if after is not None and not reverse:
        # Forward, the block holding `after` (if any) is the last to start at or
        # below it: one step of the key's range, not a walk of every earlier block.
        holding = conn.execute(
            sa.select(history_blocks.c.last_event_id, history_blocks.c.events)
            .where(history_blocks.c.execution_id == execution_id, first <= after)
            .order_by(first.desc())
            .limit(1)
        ).first()
        if holding is not None and holding.last_event_id > after:
            for event in open_block(holding.events, codec):
                if event.event_id > after:
                    found += 1
                    yield event
    cursor = after
    while found < limit:
        query = sa.select(first, history_blocks.c.events).where(
            history_blocks.c.execution_id == execution_id
        )
        if cursor is not None:
            query = query.where(first < cursor if reverse else first > cursor)
        query = query.order_by(first.desc() if reverse else first).limit(per_read)
        blocks = conn.execute(query).all()
        for first_id, text in blocks:
            if found >= limit:
                return  # the page is full: the blocks after it are not decoded
            events = open_block(text, codec)
            if reverse:
                events.reverse()
            for event in events:
                if after is None or (event.event_id < after if reverse else event.event_id > after):
                    found += 1
                    yield event
            cursor = first_id
        if len(blocks) < per_read:
            return
