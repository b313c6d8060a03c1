"""Start-and-claim: a start handed straight to a worker of the starting process.

When the Engine that makes a start runs a worker on the start's queue with
a free slot, the start needs no claim: its transaction writes the work row
already leased to that worker (as a claim would: owner, expiry), and the
execution goes to the worker with what the start has — the record, the
resolved machine version, an empty journal — so no wake-up, claim or load
is paid for it. The run is then exactly a claimed one's: its lease renewed
by the `LeaseKeeper`, its first checkpoint lease-checked inside its commit.
The slot is promised before the transaction (so the worker never runs more
than its concurrency) and given back when the start fails or only found
an existing execution (never adopted); when the worker stopped meanwhile,
or the start's outcome is unknown (a store failure, or its caller cancelled
by asyncio while its batch committed), the lease is released at once, due
now, for any worker to take — except for an early walk whose start is
known to have created what it walks: that run goes on here (the answer
travels with the cancellation, `start_batcher.answered_before`). Should the
process die instead, the start's rows are durable and the lease expires.
`StartTaker` is what the lifecycle needs of a worker (`Worker` is one);
`start_handed` is the start path that uses it.

On the loop's start path the walk need not wait for the start's answer:
`EarlyStart.begin`, called from the start's `prepare` once its machine is
resolved, hands the worker the execution the start will create before the
write is sent, its every write held at a `StartGate` that the start's
answer opens or refuses (engine/earlywalk.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Protocol

import anyio

from engine.earlywalk import StartGate, planned_execution
from engine.start_batcher import StartBatcher, answered_before
from engine.store import LoadedExecution
from engine.store.records import Event
from engine.store.startplan import Resolved
from engine.store.starts import StartRequest, StartResult

__all__ = ["EarlyStart", "StartTaker", "lease_end", "start_handed"]

log = logging.getLogger("stepwise.worker")


class StartTaker(Protocol):
    """A worker of this process that takes starts straight from their transaction."""

    @property
    def worker_id(self) -> str: ...

    @property
    def lease_seconds(self) -> float: ...

    async def reserve_slot(self, queue: str) -> bool:
        """Promise a start on `queue` a slot; False when there is none (start as usual)."""
        ...

    def free_slot(self) -> None:
        """Give back a promised slot, unused."""
        ...

    def take_started(self, loaded: LoadedExecution) -> bool:
        """Run the created execution (its slot settled); False when the worker has stopped."""
        ...

    def take_early(self, loaded: LoadedExecution, gate: StartGate) -> bool:
        """Run the execution a start in flight will create, its writes held at `gate`.

        True: it runs (its slot settled); False: it does not (the slot still promised).
        """
        ...

    async def give_back(self, execution_id: str, leased_until: datetime) -> None:
        """Release the lease a start took for this worker, ending at `leased_until` (due now)."""
        ...


class EarlyStart:
    """The walk of one start begun before its answer, at most once and only on the event loop.

    `begin` is called by the start's `prepare` with the resolved machine;
    where that runs in a store thread (SQLite, trio, a start the loop's
    path hands to the threads), or when the worker cannot take it, nothing
    begins and the start goes on as before.
    """

    __slots__ = ("_loop", "gate", "loaded", "taker")

    def __init__(self, taker: StartTaker, loop: asyncio.AbstractEventLoop) -> None:
        self.taker = taker
        self._loop = loop
        self.gate: StartGate | None = None
        self.loaded: LoadedExecution | None = None

    def begin(
        self, request: StartRequest, resolved: Resolved, execution_id: str, first: Event
    ) -> None:
        """Hand the worker the execution `request` creates once resolved to `resolved`."""
        if self.loaded is not None:
            return  # one walk a start (a prepare called again keeps it: the answer decides)
        try:
            if asyncio.get_running_loop() is not self._loop:
                return
        except RuntimeError:  # a store thread
            return
        loaded = planned_execution(request, resolved, execution_id, first)
        self.loaded = loaded
        gate = StartGate()
        if self.taker.take_early(loaded, gate):
            self.gate = gate

    async def settle(self, result: StartResult, leased_until: datetime) -> bool:
        """Open the gate for the execution the start created, or refuse it; False: no walk began.

        The walk goes on only when the start created exactly what it runs
        (the same record and machine version). A walk refused with its
        start's execution created (another revision of the machine was
        read for the write) releases the lease as its run ends, due now,
        so a claim runs that execution as any other.
        """
        gate, loaded = self.gate, self.loaded
        if gate is None or loaded is None:
            return False
        record = result.record
        created = result.created and record is not None
        if created and record == loaded.record and result.machine == loaded.machine:
            gate.open()
            if gate.ended:  # the worker stopped before the start answered
                await self.taker.give_back(loaded.record.execution_id, leased_until)
            return True
        await self.refuse(leased_until if created else None)
        return True

    async def refuse(self, release_until: datetime | None) -> None:
        """Refuse the walk; `release_until`: the lease the start may have committed (given back)."""
        gate, loaded = self.gate, self.loaded
        if gate is None or loaded is None:
            return
        ended = gate.ended
        gate.refuse(release_until)
        if ended and release_until is not None:
            # Its run ended before the gate settled, releasing nothing.
            await self.taker.give_back(loaded.record.execution_id, release_until)


def lease_end(start_date: datetime, taker: StartTaker) -> datetime:
    """When the lease a start made at `start_date` takes for `taker`'s worker expires.

    A request handed to `start_handed` carries it (`StartRequest.lease_expires_at`)
    with `taker.worker_id` as its `lease_owner`: one lease period.
    """
    return start_date + timedelta(seconds=taker.lease_seconds)


async def start_handed(
    starts: StartBatcher,
    request: StartRequest,
    taker: StartTaker,
    execution_id: str,
    early: EarlyStart | None = None,
) -> StartResult:
    """Record `request` leased to `taker` (a slot already promised) and hand the new execution over.

    `request` is already leased to `taker`'s worker (`lease_owner`, and
    `lease_expires_at` from `lease_end`). `execution_id` is the id the
    start creates. Only an execution this start created is handed over;
    an existing one (the idempotent repeat) or an error gives the slot
    back. Raises what `StartBatcher.start` raises; a failure there
    (StoreUnavailable: the outcome is unknown) or a cancellation of the
    caller (raised once the start's batch committed) may have committed
    the start all the same, so its lease is then given back too (best
    effort: else it expires) — unless an early walk's start is known, from
    the answer carried by the cancellation, to have created it: that walk
    goes on. With `early`, a walk its `prepare`
    began (`EarlyStart.begin`) is settled by the answer: it goes on, or
    writes nothing and gives back the lease a start that did commit took.
    """
    leased_until = request.lease_expires_at
    if leased_until is None or request.lease_owner != taker.worker_id:
        # Unleased, the row would be due to every worker while this one runs it.
        raise ValueError("start_handed needs a request leased to the taker's worker")
    try:
        result = await starts.start(request)
    except BaseException as ending:
        if early is not None and early.gate is not None:
            # Cancelled once its batch committed: the walk goes on when the
            # start created what it walks (durable, it must run). Else the
            # slot is its run's; the run releases the lease as it ends.
            answered = answered_before(ending)
            with anyio.CancelScope(shield=True):
                if answered is None or not await early.settle(answered, leased_until):
                    await early.refuse(leased_until)
            raise
        # Unknown outcome: a store failure, or a cancellation raised after the
        # batch was carried through (asyncio's own: `StartBatcher.start`).
        # Either may have committed the start leased to this worker, which
        # nothing here will run: give the lease back (shielded), so it is due
        # now, not a lease period later. Only the lease this start wrote
        # (its end, `leased_until`) is released: not one of an existing
        # execution (a repeat start), nor one this worker's claim took since.
        taker.free_slot()
        await taker.give_back(execution_id, leased_until)
        raise
    if early is not None and await early.settle(result, leased_until):
        return result
    record = result.record
    if not result.created or record is None or result.machine is None:
        taker.free_slot()
        return result
    loaded = LoadedExecution(
        record=record, machine=result.machine, journal={}, last_event_id=record.last_event_id
    )
    if not taker.take_started(loaded):
        log.debug("worker stopped before %s could run; releasing it", record.execution_id)
        await taker.give_back(record.execution_id, leased_until)
    return result
