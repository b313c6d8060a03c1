"""SQLite: a start batch and a commit group handed to the store thread together go as one call.

On SQLite the store has one thread, and W3's lone caller hands it an
execution's ending commit and the next start within the same turn of the
event loop, nearly every time (s19a measured 999 of 1,000). Each went as a
store call and a write transaction of its own. Here both callers — the
`StartBatcher` and the `Committer` — hand their part to the store's
`WritePairs` instead of calling `run_db` themselves: the first part with
nothing pending hands the thread a *drain* (its caller leads); a part that
arrives while that drain has not started yet joins it and waits. When the
thread starts the drain it takes every part joined so far: a start batch
and a commit group are written in one transaction
(`engine/store/sqlitejoint.py`), any other part by its usual call after
them, in the order handed over. Nothing waits that would not have waited
anyway but the drain's leader, answered once the part that joined it is
written too: so only small parts pair (`takes_start`, `takes_commit`: at
most 8 starts and 64 K characters of input, at most 8 checkpoints, as the
PostgreSQL loop paths bound theirs), and a start by version or alias never
does (its fast path hands it to the careful one: a joint transaction would
only be rolled back). Nothing is held back for a partner: a part alone
goes alone.

Cancellation keeps the store threads' rules (`engine/storethreads.py`): a
part whose drain has not started leaves it when its caller is cancelled
(nothing of it written); once its drain has started, its outcome is waited
for first. A leader cancelled before its drain started (the drain then
never runs) hands the drain's other parts back to lead again. PostgreSQL
never comes here (its starts and commits go on connections of their own).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from engine.store import Checkpoint, CommitResult, ExecutionRecord, Store
from engine.store.starts import StartRequest, StartResult

if TYPE_CHECKING:
    from engine.store.sqlitecommit import HeldSqlite

__all__ = ["WritePairs", "commit_and_read", "read_committed"]

RunDb = Callable[..., Awaitable[Any]]
# The largest parts that pair (a leader waits for what joined it).
PAIR_STARTS_MAX = 8
PAIR_INPUT_MAX = 64 * 1024  # characters of input, summed over the batch
PAIR_CHECKPOINTS_MAX = 8
_Committed = tuple[list[CommitResult], dict[str, ExecutionRecord]]


class _Part:
    """One caller's write handed over: its usual store call, and its outcome once known."""

    __slots__ = ("answered", "failure", "outcome")

    def __init__(self) -> None:
        self.answered = False
        self.outcome: Any = None
        self.failure: BaseException | None = None

    def solo(self, store: Store) -> Any:
        raise NotImplementedError

    def settle(self, store: Store) -> None:
        """On the store thread: run the usual call, keeping its answer or its error."""
        try:
            self.outcome = self.solo(store)
        except Exception as failure:
            self.failure = failure
        self.answered = True


class _Start(_Part):
    __slots__ = ("requests",)

    def __init__(self, requests: Sequence[StartRequest]) -> None:
        super().__init__()
        self.requests = requests

    def solo(self, store: Store) -> list[StartResult]:
        return store.start_executions(self.requests)


class _Commit(_Part):
    __slots__ = ("checkpoints", "now", "read_back", "worker_id")

    def __init__(
        self, checkpoints: list[Checkpoint], read_back: list[str], worker_id: str, now: datetime
    ) -> None:
        super().__init__()
        self.checkpoints = checkpoints
        self.read_back = read_back
        self.worker_id = worker_id
        self.now = now

    def solo(self, store: Store) -> _Committed:
        return commit_and_read(
            store, self.checkpoints, self.read_back, worker_id=self.worker_id, now=self.now
        )


class _Drain:
    """One store call taking the parts joined to it by the time it starts."""

    __slots__ = ("done", "finished", "orphaned", "parts", "started")

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self.started = False
        # Set by the store thread once every part taken is answered (or the call
        # raised). A flag, not a `threading.Event`: only `_finished`'s rare poll
        # reads it (an Event cost ~3.5 us to make on the loop and ~1 us to set
        # on the thread, every drain). The loop reads the parts' answers after
        # seeing it set: that ordering rests on the GIL (CPython 3.11-3.13);
        # a free-threaded build would need an Event again.
        self.finished = False
        # The drain will never run (its leader was cancelled first): its parts lead again.
        self.orphaned = False
        self.done = anyio.Event()


class WritePairs:
    """A store's waiting start batch and commit group, drained together (the module docstring)."""

    def __init__(self, store: Store, held: HeldSqlite, run_db: RunDb) -> None:
        from engine.store.sqlitejoint import start_and_commit  # loads sqlite3: SQLite only

        self._start_and_commit = start_and_commit
        self._store = store
        self._held = held
        self._run_db = run_db
        # Guards `_next` and each drain's parts and `started` (the thread and the loop).
        self._lock = threading.Lock()
        self._next: _Drain | None = None
        self._users: set[str] = set()
        # Drains that took a start batch and a commit group (`tried`), and
        # those that wrote both in one transaction (`joint`): observables.
        self.tried = 0
        self.joint = 0

    @classmethod
    def of(cls, store: Store, run_db: RunDb, user: str) -> WritePairs | None:
        """The pairs of `store`'s writes made through `run_db`, `user` one of its two users.

        None where writes are never paired (only SQLite's raw paths pair,
        `sqlitejoint.joint_held`). The `Committer` ("commit") and the
        `StartBatcher` ("start") of one engine share one; it pairs once both
        have joined it (`paired`): one user alone (a test's committer on a
        `run_db` of its own) keeps its usual store calls.
        """
        if store.dialect != "sqlite":
            return None  # and PostgreSQL never loads sqlite3
        from engine.store.sqlitejoint import joint_held

        held = joint_held(store)
        if held is None:
            return None
        pairs: WritePairs | None = store.write_pairs.get(run_db)
        if pairs is None:
            pairs = store.write_pairs[run_db] = cls(store, held, run_db)
        pairs._users.add(user)
        return pairs

    @property
    def paired(self) -> bool:
        """Whether both users have joined: their writes go through `start` and `commit`."""
        return len(self._users) == 2

    def takes_start(self, requests: Sequence[StartRequest]) -> bool:
        """Whether this start batch goes through `start`: paired, small, no version or alias."""
        return (
            self.paired
            and len(requests) <= PAIR_STARTS_MAX
            and sum(len(request.input) for request in requests) <= PAIR_INPUT_MAX
            and all(request.qualifier is None for request in requests)
        )

    def takes_commit(self, checkpoints: Sequence[Checkpoint]) -> bool:
        """Whether this commit group goes through `commit`: paired and small."""
        return self.paired and len(checkpoints) <= PAIR_CHECKPOINTS_MAX

    async def start(self, requests: Sequence[StartRequest]) -> list[StartResult]:
        """`Store.start_executions(requests)`, paired with a waiting commit group if any."""
        answer: list[StartResult] = await self._run(_Start(requests))
        return answer

    async def commit(
        self, checkpoints: list[Checkpoint], read_back: list[str], *, worker_id: str, now: datetime
    ) -> _Committed:
        """`commit_and_read`, paired with a waiting start batch if there is one."""
        answer: _Committed = await self._run(_Commit(checkpoints, read_back, worker_id, now))
        return answer

    async def _run(self, part: _Part) -> Any:
        while True:
            with self._lock:
                drain = self._next
                lead = drain is None
                if drain is None:
                    drain = self._next = _Drain()
                drain.parts.append(part)
            if lead:
                await self._lead(drain, part)
            else:
                await self._follow(drain, part)
            if not drain.orphaned:
                break
        if not part.answered:  # the drain's call ended with no answer (raised past its parts)
            raise RuntimeError("a store call ended without answering its write")
        if part.failure is not None:
            raise part.failure
        return part.outcome

    async def _lead(self, drain: _Drain, part: _Part) -> None:
        try:
            await self._run_db(self._drain, drain)
        except BaseException:
            with self._lock:
                started = drain.started
                if not started:  # never will: a call cancelled before a thread took it
                    if self._next is drain:
                        self._next = None
                    drain.orphaned = True
            if started:
                # asyncio's cancellation, delivered again, can end the store
                # call's wait while the thread still writes: the parts that
                # joined must not wake before their answers are in.
                await _finished(drain)
            drain.done.set()
            raise
        drain.done.set()

    async def _follow(self, drain: _Drain, part: _Part) -> None:
        try:
            await drain.done.wait()
        except BaseException:
            with self._lock:
                taken = drain.started
                if not taken:
                    drain.parts.remove(part)  # nothing of it written
            if not taken:
                raise
            # In a drain under way: its outcome first, however often cancelled.
            with anyio.CancelScope(shield=True):
                while not drain.done.is_set():
                    try:
                        await drain.done.wait()
                    except anyio.get_cancelled_exc_class():
                        continue
            raise

    def _drain(self, drain: _Drain) -> None:
        """On the store thread: the parts joined so far; a start and a commit in one transaction."""
        try:
            self._drain_parts(drain)
        finally:
            drain.finished = True

    def _drain_parts(self, drain: _Drain) -> None:
        with self._lock:
            drain.started = True
            if self._next is drain:
                self._next = None
            parts = list(drain.parts)
        store = self._store
        start = next((p for p in parts if isinstance(p, _Start)), None)
        commit = next((p for p in parts if isinstance(p, _Commit)), None)
        if start is not None and commit is not None:
            self.tried += 1
            try:
                started, committed = self._start_and_commit(
                    store,
                    self._held,
                    start.requests,
                    commit.checkpoints,
                    commit.read_back,
                    worker_id=commit.worker_id,
                    now=commit.now,
                )
            except Exception as failure:  # the transaction's own: both parts'
                for both in (start, commit):
                    both.failure, both.answered = failure, True
            else:
                if started is not None:
                    start.outcome, start.answered = started, True
                if committed is not None:
                    results, read = committed
                    records = read_committed(
                        store, commit.checkpoints, results, read, commit.read_back
                    )
                    commit.outcome, commit.answered = (results, records), True
                if started is not None and committed is not None:
                    self.joint += 1
        for part in parts:
            if not part.answered:
                part.settle(store)


async def _finished(drain: _Drain) -> None:
    """Wait, shielded from every cancellation, until the store thread has answered `drain`'s parts.

    A poll: only a leader whose store call's wait ended early (cancelled
    twice by asyncio while the thread wrote) comes here, for the rest of
    one store call.
    """
    with anyio.CancelScope(shield=True):
        while not drain.finished:
            try:
                await anyio.sleep(0.001)
            except anyio.get_cancelled_exc_class():
                continue


def commit_and_read(
    store: Store,
    checkpoints: list[Checkpoint],
    read_back: list[str],
    *,
    worker_id: str,
    now: datetime,
    carefully: bool = False,
) -> _Committed:
    """`Store.commit_reading`, then `Store.get_execution` of what it did not read back.

    One call on the store's thread: the records are what a describe returns
    once the commit is durable (on PostgreSQL's one-call commit, read in the
    commit's own round trip). A read that fails is left out (its caller
    describes later); it never turns a committed checkpoint into an error.
    `carefully`: on the careful path alone (`Store.commit_carefully`), for
    a group the one call refused.
    """
    if carefully:
        results = store.commit_carefully(checkpoints, worker_id=worker_id, now=now)
        read: dict[str, ExecutionRecord] = {}
    else:
        results, read = store.commit_reading(checkpoints, read_back, worker_id=worker_id, now=now)
    return results, read_committed(store, checkpoints, results, read, read_back)


def read_committed(
    store: Store,
    checkpoints: list[Checkpoint],
    results: list[CommitResult],
    read: dict[str, ExecutionRecord],
    read_back: list[str],
) -> dict[str, ExecutionRecord]:
    """`read`'s records of committed checkpoints, and `get_execution`'s of those it lacks."""
    committed = {
        c.execution_id for c, r in zip(checkpoints, results, strict=True) if r is CommitResult.OK
    }
    records = {eid: record for eid, record in read.items() if eid in committed}
    for execution_id in read_back:
        if execution_id in committed and execution_id not in records:
            try:
                records[execution_id] = store.get_execution(execution_id)
            except Exception:  # the commit is durable: the waiter describes later
                pass
    return records
