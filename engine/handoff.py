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
now, for any worker to take. Should the
process die instead, the start's rows are durable and the lease expires.
`StartTaker` is what the lifecycle needs of a worker (`Worker` is one);
`start_handed` is the start path that uses it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from engine.start_batcher import StartBatcher
from engine.store import LoadedExecution
from engine.store.starts import StartRequest, StartResult

__all__ = ["StartTaker", "lease_end", "start_handed"]

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

    async def give_back(self, execution_id: str, leased_until: datetime) -> None:
        """Release the lease a start took for this worker, ending at `leased_until` (due now)."""
        ...


def lease_end(start_date: datetime, taker: StartTaker) -> datetime:
    """When the lease a start made at `start_date` takes for `taker`'s worker expires.

    A request handed to `start_handed` carries it (`StartRequest.lease_expires_at`)
    with `taker.worker_id` as its `lease_owner`: one lease period.
    """
    return start_date + timedelta(seconds=taker.lease_seconds)


async def start_handed(
    starts: StartBatcher, request: StartRequest, taker: StartTaker, execution_id: str
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
    effort: else it expires).
    """
    leased_until = request.lease_expires_at
    if leased_until is None or request.lease_owner != taker.worker_id:
        # Unleased, the row would be due to every worker while this one runs it.
        raise ValueError("start_handed needs a request leased to the taker's worker")
    try:
        result = await starts.start(request)
    except BaseException:
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
