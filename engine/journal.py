"""The journal: what makes a walk durable.

Every step that leaves the process or cannot be recomputed — a state
entered or exited, a task scheduled and its result, a timer, a random
value, a time read — is recorded under a deterministic key (the position of
the state through branches, iterations and attempts). When an execution
resumes, the walk starts again from the top and every recorded step returns
its recorded value at once; the first unrecorded step is where live work
resumes. A state's entry row whose exit row commits with it is not
written, nor are a Map iteration's or Parallel branch's inner rows that
commit with its end (`superseded_entries`): a replay reads only the exit
or the end. The commit of an execution's own SUCCEEDED end writes none of
its batch's rows (`drain(rows=False)`, the runner's checkpoint): nothing
resumes or redrives a SUCCEEDED execution, so nothing reads them.

History events are only ever produced together with a journal record and
committed in the same transaction (bar a SUCCEEDED end's commit, whose rows
nothing would read), so a replay never emits an event twice and a crash
never leaves an event without its record. A record carries the
id of the last event it produced, so `previousEventId` chains stay right
across a resume.

The journal also holds AWS's history limit (`max_events`, 25,000 by
default): a record whose events would leave no room for the execution's end
event raises `HistoryLimitReached`, and the runner ends the execution with
AWS's error (`history_limit_error`), so the end event is the last one the
limit allows.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

import msgspec

from engine import keys
from engine.clock import Clock, SystemClock
from engine.errors import InvalidSetting, NondeterminismError  # the error tree's; re-exported
from engine.store import Event
from statemachine.errors import States, StatesError
from statemachine.quotas import MAX_HISTORY_EVENTS

__all__ = [
    "MISSING",
    "HistoryLimitReached",
    "Journal",
    "NondeterminismError",
    "RowTime",
    "Suspend",
    "Thread",
    "encode_row",
    "history_event_limit",
    "history_limit_error",
    "row_time",
    "superseded_entries",
]

MISSING: Final = object()

_encode: Final = msgspec.json.Encoder().encode


def _text(entry: dict[str, Any]) -> str:
    """The text of a row recorded with `encode_later` (its `RowTime`s as `row_time` text)."""
    return _encode_later(entry).decode()


def _later_hook(value: Any) -> str:
    if isinstance(value, RowTime):
        return str(value)
    raise NotImplementedError  # msgspec's own TypeError for what it cannot encode


_encode_later: Final = msgspec.json.Encoder(enc_hook=_later_hook).encode


Events = Sequence[tuple[str, dict[str, Any]]]


def encode_row(value: Any, last_event_id: int = 0, state: str | None = None) -> str:
    """A journal row as stored: ``{"v": value, "e": last event id}``, plus ``"s"``.

    ``"s"`` names the state the step belongs to (rows recorded before it
    existed, and rows written from outside a walk, have none); a replay that
    reaches the key from another state raises NondeterminismError.
    """
    return msgspec.json.encode(_entry(value, last_event_id, state)).decode()


def _entry(value: Any, last_event_id: int, state: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"v": value, "e": last_event_id}
    if state is not None:
        entry["s"] = state
    return entry


# The last second `row_time` formatted: (its fields, its text), replaced whole,
# so threads share it safely.
_last_second: tuple[tuple[int, ...], str] = ((), "")


class RowTime:
    """A time a row records (its text `row_time`'s), formatted only when it is read or encoded.

    A state's entry row carries one: the row is encoded only when the drain
    keeps it (`Journal.record`'s `encode_later`), so the entered time of a
    state whose exit shares the commit is never formatted.
    """

    __slots__ = ("moment",)

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __str__(self) -> str:
        return row_time(self.moment)


def row_time(moment: datetime) -> str:
    """`moment.isoformat()`, with the text up to the second kept from the last call.

    Every state's entry row records its entered time this way; consecutive
    entries mostly fall in the same second, so only the microseconds are
    formatted (half the work of `isoformat`). The same text as `isoformat`
    for any time: one not in UTC is given to `isoformat` itself.
    """
    global _last_second
    if moment.tzinfo is not UTC:
        return moment.isoformat()
    second = (moment.second, moment.minute, moment.hour, moment.day, moment.month, moment.year)
    last = _last_second
    if second != last[0]:
        last = _last_second = (second, moment.replace(microsecond=0, tzinfo=None).isoformat())
    micro = moment.microsecond
    # isoformat leaves out a zero fraction.
    return f"{last[1]}.{micro:06d}+00:00" if micro else f"{last[1]}+00:00"


class Suspend(Exception):  # a control-flow signal, not an error
    """The walk must wait longer than a worker should hold it: release, wake at `due_at`.

    `due_at` None means "wake only when something external happens" (a
    callback token completes, a stop request arrives).
    """

    def __init__(self, due_at: datetime | None) -> None:
        super().__init__(due_at)
        self.due_at = due_at

    @staticmethod
    def earliest(signals: Sequence[Suspend]) -> Suspend:
        dues = [s.due_at for s in signals if s.due_at is not None]
        return Suspend(min(dues) if dues else None)


class HistoryLimitReached(Exception):  # a control-flow signal, not an ASL error
    """The execution reached its history event limit; only its end event may follow.

    Deliberately not a StatesError: no Retry or Catch sees it, it leaves
    every state and task group, and the runner turns it into the
    execution's failure (`history_limit_error`).
    """

    def __init__(self, max_events: int) -> None:
        super().__init__(max_events)
        self.max_events = max_events


def history_event_limit(value: int | None = None) -> int:
    """The history event limit to run with: `value`, else $STEPWISE_MAX_HISTORY_EVENTS, else AWS's.

    Raises InvalidSetting (a ValueError) for a limit below 2 (an execution
    needs its start and end events) or an environment value that is not an
    integer.
    """
    if value is None:
        setting = os.environ.get("STEPWISE_MAX_HISTORY_EVENTS", "").strip()
        if not setting:
            return MAX_HISTORY_EVENTS
        try:
            value = int(setting)
        except ValueError:
            value = 0
        if value < 2:
            raise InvalidSetting(
                f"STEPWISE_MAX_HISTORY_EVENTS must be an integer of at least 2, not {setting!r}"
            )
    if value < 2:
        raise InvalidSetting(f"the history event limit must be at least 2, not {value}")
    return value


def history_limit_error(max_events: int) -> StatesError:
    """AWS's failure of an execution that reached `max_events` history events.

    The error and cause are AWS's own (``States.Runtime``, "The execution
    reached the maximum number of history events (25000)."), as AWS records
    them in the ExecutionFailed event that is the history's last.
    """
    return StatesError(
        States.RUNTIME,
        f"The execution reached the maximum number of history events ({max_events}).",
    )


@dataclass
class Thread:
    """One line of events (the execution, a branch, an iteration): chains previousEventId."""

    last_event_id: int = 0


# A pending row: its text, or (recorded with `encode_later`) the entry whose
# text `drain` makes, when the row is not left out.
_Row = TypeVar("_Row")


@dataclass
class _Pending:
    journal: list[tuple[str, str | dict[str, Any]]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # What `drain` needs to leave superseded rows out without scanning every
    # row's key: the entry keys of the exits recorded in this batch (given by
    # their recorder, `Journal.record`'s `supersedes`), and whether a row lies
    # under a child (then, or for a restored batch, `superseded_entries` scans).
    exits: list[str] = field(default_factory=list)
    scan: bool = False
    # Whether a row's text is still to be made (`encode_later`).
    unencoded: bool = False

    def rows(self) -> list[tuple[str, str]]:
        """The batch's rows, as text, without those its own exits and ends supersede."""
        rows = self.journal
        if self.scan:
            rows = superseded_entries(rows)
        elif self.exits:
            superseded = {key for key, _ in rows}.intersection(self.exits)
            if superseded:
                rows = [row for row in rows if row[0] not in superseded]
        if not self.unencoded:
            return cast("list[tuple[str, str]]", rows)  # every row is text
        return [(key, row if isinstance(row, str) else _text(row)) for key, row in rows]


class Journal:
    """Recorded steps of one execution, plus what this activation recorded and not yet committed."""

    def __init__(
        self,
        execution_id: str,
        records: dict[str, str],
        *,
        last_event_id: int,
        clock: Clock,
        max_events: int = MAX_HISTORY_EVENTS,
    ) -> None:
        self.execution_id = execution_id
        self.max_events = max_events
        # Set once a record was refused for the limit; the runner then fails the execution.
        self.limit_reached = False
        self._records = records
        self._decoded: dict[str, dict[str, Any]] = {}
        self.last_event_id = last_event_id
        # The time of a record's events: `clock.now`, the system clock's read
        # without its Python frame (a C call: two reads a transition).
        self.now: Callable[[], datetime] = (
            functools.partial(datetime.now, UTC) if type(clock) is SystemClock else clock.now
        )
        self._pending = _Pending()
        # A redriven execution's ExecutionRedriven event: an event of the new
        # run whose line last ended before it (in the failed run) chains on it.
        self.chain_floor = 0

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def recorded_keys(self) -> Iterable[str]:
        """The keys of every record, committed or pending."""
        return self._records.keys()

    def replay(self, key: str, thread: Thread | None = None, *, state: str | None = None) -> Any:
        """The value recorded under `key`, or MISSING; advances `thread` past its events.

        Raises NondeterminismError when the record names a state other than `state`.
        """
        if key not in self._records:
            return MISSING
        entry = self._entry(key)
        recorded_state = entry.get("s")
        if state is not None and recorded_state is not None and recorded_state != state:
            raise NondeterminismError(
                f"execution {self.execution_id}: step {key} was recorded for state "
                f"{recorded_state!r} but the walk reached {state!r}"
            )
        if thread is not None and entry.get("e"):
            thread.last_event_id = entry["e"]
        return entry["v"]

    def event_id(self, key: str) -> int:
        """The id of the last event the record under `key` produced (0: none, or no record)."""
        if key not in self._records:
            return 0
        return int(self._entry(key).get("e") or 0)

    def _entry(self, key: str) -> dict[str, Any]:
        """The decoded row under `key` (which must be recorded).

        A row recorded by this activation is kept decoded; a loaded one is
        decoded at each read, and not kept: a resume reads each of a long
        history's rows once, and keeping tens of thousands of decoded rows
        alive only sets the garbage collector off, again and again.
        """
        entry = self._decoded.get(key)
        if entry is None:
            decoded: dict[str, Any] = msgspec.json.decode(self._records[key])
            return decoded
        return entry

    def record(
        self,
        key: str,
        value: Any,
        *,
        thread: Thread | None = None,
        events: Events = (),
        timestamp: datetime | None = None,
        state: str | None = None,
        supersedes: str | None = None,
        encode_later: bool = False,
    ) -> Any:
        """Record `value` under `key` with its history `events`; returns `value`.

        `state` names the state the step belongs to, checked on replay.
        `supersedes` is given with a state's exit: its entry's key, whose row
        `drain` leaves out when it is in the same batch (`superseded_entries`).
        `encode_later` is for a value of strings, numbers and `RowTime`s
        only (nothing that could change in place before the drain): its
        row's text is made by `drain`, and never when the batch leaves the
        row out (a state's entry whose exit shares the commit).
        Raises HistoryLimitReached when the events would leave no room under
        `max_events` for the execution's end event (which is always allowed).
        """
        last = 0
        if events:
            last = self.last_event_id
            if self.limit_reached or last + len(events) >= self.max_events:
                self._check_limit(key, len(events))  # only then can it refuse
            when = timestamp or self.now()
            pending = self._pending.events
            floor = self.chain_floor
            for kind, details in events:
                previous = thread.last_event_id if thread is not None else last
                last += 1
                # Positional: event_id, previous_event_id, type, timestamp, details.
                pending.append(
                    Event(last, previous if previous > floor else floor, kind, when, details)
                )
                if thread is not None:
                    thread.last_event_id = last
            self.last_event_id = last
        entry: dict[str, Any] = {"v": value, "e": last}
        if state is not None:
            entry["s"] = state
        batch = self._pending
        self._decoded[key] = entry  # what every read of this activation's records takes
        if encode_later:
            self._records[key] = ""  # its text is made by `drain`
            batch.journal.append((key, entry))
            batch.unencoded = True
        else:
            text = _encode(entry).decode()
            self._records[key] = text
            batch.journal.append((key, text))
        if supersedes is not None:
            batch.exits.append(supersedes)
        if "/" in key:  # a child's row: a child's end supersedes its rows
            batch.scan = True
        return value

    def record_once(
        self,
        key: str,
        produce: Callable[[], tuple[Any, Events]],
        *,
        thread: Thread | None = None,
        state: str | None = None,
        timestamp: datetime | None = None,
    ) -> Any:
        """The recorded value under `key`; if none, `produce()` (value, events) and record it.

        The one way a step is recorded or replayed: a record made for another
        state than `state` raises NondeterminismError.
        """
        found = self.replay(key, thread, state=state)
        if found is not MISSING:
            return found
        value, events = produce()
        return self.record(
            key, value, thread=thread, events=events, timestamp=timestamp, state=state
        )

    async def record_once_async(
        self,
        key: str,
        produce: Callable[[], Awaitable[tuple[Any, Events]]],
        *,
        thread: Thread | None = None,
        state: str | None = None,
        record_thread: Thread | None = None,
    ) -> Any:
        """`record_once` for a step whose value takes awaiting (a task's outcome, a child's end).

        A replay advances `thread`; a new record's events chain on
        `record_thread` when given (a child's own line of events), else `thread`.
        """
        found = self.replay(key, thread, state=state)
        if found is not MISSING:
            return found
        value, events = await produce()
        on = record_thread if record_thread is not None else thread
        return self.record(key, value, thread=on, events=events, state=state)

    def _check_limit(self, key: str, count: int) -> None:
        # AWS's cut: the execution's end event is the last the limit allows.
        if not count or key == keys.EXECUTION_END:
            return
        if self.limit_reached or self.last_event_id + count >= self.max_events:
            self.limit_reached = True
            raise HistoryLimitReached(self.max_events)

    @property
    def dirty(self) -> bool:
        """Whether rows are pending; an event never comes without a row.

        The checkpointer relies on it: a clean journal only waits for the
        early walk's gate and commits nothing.
        """
        return bool(self._pending.journal)

    def drain(self, *, rows: bool = True) -> tuple[list[tuple[str, str]], list[Event]]:
        """Hand over what is pending for a commit and start a fresh batch.

        A state's entry row (``K:in``) is left out of the batch when its exit
        row (``K:out``) is in the same batch, and a child's inner rows when
        its end row is (`superseded_entries`): every event is still handed
        over, so the history is the same. `rows` False hands over no row at
        all, only the events (the commit of the execution's SUCCEEDED end).
        """
        pending, self._pending = self._pending, _Pending()
        if not rows:
            return [], pending.events
        return pending.rows(), pending.events

    def next_batch(self) -> object:
        """The batch the next `drain` hands over: what `restore` takes back if its fate is lost."""
        return self._pending

    def restore(self, batch: object) -> None:
        """Put a drained `batch` back, before what was recorded since; nothing if never drained.

        For a commit whose outcome its caller lost (`Walk._gather`): the rows
        are committed again, and the unique keys refuse them (CONFLICT) if
        that commit had in fact made them durable.
        """
        if batch is self._pending or not isinstance(batch, _Pending):
            return
        if not batch.journal and not batch.events:
            return  # empty, or put back already (the runner's gate wait, then `Walk._gather`)
        later = self._pending
        # Rows of two batches: which supersede which is found by a full scan.
        self._pending = _Pending(
            batch.journal + later.journal,
            batch.events + later.events,
            scan=True,
            unencoded=batch.unencoded or later.unencoded,
        )
        batch.journal, batch.events = [], []


_ENTERED: Final = keys.entered("")
_EXITED: Final = keys.exited("")
# A child's prefix ends with "/" (`keys.iteration_prefix`, `keys.branch_prefix`);
# its end row is the prefix plus this.
_CHILD_END: Final = keys.child_ended("")


def superseded_entries(rows: list[tuple[str, _Row]]) -> list[tuple[str, _Row]]:
    """`rows` without the rows their batch makes unread.

    Two kinds: a state's entry row whose exit row is among them, and every
    row under a child's prefix (a Map iteration, a Parallel branch: its
    start, its states, their task records, nested children) whose end row
    is among them. Nothing reads them once that exit or end is durable: a
    replay or redrive takes a state with an exit from the exit alone
    (`run_scope`, and a redrive's older generations return on their exit
    first), a child with an end from the end alone (`run_children`, and a
    redrive's older generations reuse an ended child's output), and an
    entry is read only for a state still in flight (`enter`,
    `_record_aborted`). Committed in one transaction, they are durable
    together or not at all, so writing them is waste; an exit or end
    committed later than the rows before it leaves those written, as
    before. The exit's or end's unique key, and every history event's
    (all still written), stay the safety net against a second writer.
    """
    if len(rows) < 2:
        return rows
    exited: set[str] = set()
    ended: set[str] = set()
    for key, _ in rows:
        if key.endswith(_EXITED):
            exited.add(key[: -len(_EXITED)])
        elif key.endswith(_CHILD_END) and key[-len(_CHILD_END) - 1 : -len(_CHILD_END)] == "/":
            ended.add(key[: -len(_CHILD_END)])
    if not exited and not ended:
        return rows
    cut = len(_ENTERED)
    kept = []
    for row in rows:
        key = row[0]
        if key.endswith(_ENTERED) and key[:-cut] in exited:
            continue
        if ended and _under_ended_child(key, ended):
            continue
        kept.append(row)
    return kept


def _under_ended_child(key: str, ended: set[str]) -> bool:
    """Whether `key` lies under one of the `ended` child prefixes (other than its own end)."""
    slash = key.find("/")
    while slash != -1:
        prefix = key[: slash + 1]
        if prefix in ended and key != prefix + _CHILD_END:
            return True
        slash = key.find("/", slash + 1)
    return False
