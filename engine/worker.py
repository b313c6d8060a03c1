"""Workers: claim due executions, run them, keep their leases alive.

A worker claims up to `concurrency` due executions of its queue
(PostgreSQL: `FOR UPDATE SKIP LOCKED`, so many workers on many machines
never take the same one), runs an activation for each, and renews every lease it holds a few times
per lease period. An execution whose lease could not be renewed is
cancelled locally at once: another worker may own it now, and the store
refuses any further write from this one. When nothing is due the worker
sleeps until woken (LISTEN/NOTIFY on PostgreSQL, polling on SQLite).
Stopping (SIGTERM/SIGINT in the CLI) stops claiming, cancels what runs,
and releases those leases so another worker resumes them at once. A start
made in this process on the worker's queue while it has a free slot skips
the claim: the start's transaction writes the work row already leased to
the worker, and the worker runs it from what the start has
(`Worker.reserve_slot`, `Worker.take_started`; see `engine/handoff.py`).

The loops survive the store: a transient store failure (see
`engine.store.boundary`) never leaves `Worker.run`, `LeaseKeeper.run` or
`StopWatcher.run`. Each loop backs off (capped exponential, jitter) and
tries again; the process's one `StoreOutage` logs one line when the
database goes away and one when it is back (with the duration), drops the
pooled connections and counts the outage in the metrics. An activation cut
short by an outage is claimed again by its own worker once the store is
back (its lease is still its own, or free); leases that could not be
renewed for a whole lease period are treated as lost and their runs
cancelled. Only a configuration error (a permanent `StoreUnavailable`)
or cancellation ends the loops.

`Retention` (when a retention period is set) purges closed executions
older than it, a small batch per short transaction.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio

from engine import telemetry
from engine.earlywalk import StartGate
from engine.errors import InvalidSetting
from engine.runner import Activation, Runtime, activate
from engine.states.childtasks import ChildTaskGroup, child_task_group
from engine.store import (
    DEFAULT_QUEUE,
    CommitConflict,
    LeaseLost,
    LoadedExecution,
    Store,
    StoreUnavailable,
)
from engine.store.boundary import Backoff, is_transient

__all__ = [
    "LeaseKeeper",
    "Ran",
    "Retention",
    "StopWatcher",
    "StoreOutage",
    "Worker",
    "outage_of",
    "retention_setting",
]

log = logging.getLogger("stepwise.worker")


class StoreOutage:
    """One process's view of its database being away: one line when it goes, one when it is back.

    Every loop that calls the store reports here: `failed` on a transient
    failure (the first one of an outage logs, counts the outage and drops
    the pooled connections), `ok` after a success (the first one after an
    outage logs how long it lasted). `pause` waits the loop's next backoff.
    """

    def __init__(self, store: Store) -> None:
        # Weakly: `_outages` is keyed weakly by the store, and a value holding
        # its key strongly would keep every Store (its SQLAlchemy engine, pool
        # and caches) alive for the life of the process.
        self._store = weakref.ref(store)
        self.down_since: float | None = None
        self.outages = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: StoreUnavailable) -> None:
        """Note a transient failure; the first of an outage logs one line."""
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        self.outages += 1
        log.warning("store unavailable, retrying with backoff: %s", error)
        metrics = _metrics()
        if metrics is not None:
            metrics.outage_started()
        store = self._store()
        try:
            if store is not None:
                store.reset_connections()
        except Exception:  # best effort: the next attempt reconnects anyway
            log.debug("could not drop pooled connections", exc_info=True)

    def ok(self, since: float | None = None) -> None:
        """Note a success; the first after an outage logs its duration.

        `since` is when the successful call began (`time.monotonic()`): a
        call already under way when the outage was noticed (answered just
        before the server went away) does not end it, or one outage would be
        reported as two.
        """
        if self.down_since is None or (since is not None and since <= self.down_since):
            return
        seconds = time.monotonic() - self.down_since
        self.down_since = None
        log.warning("store available again after %.1f s", seconds)
        metrics = _metrics()
        if metrics is not None:
            metrics.outage_ended(seconds)

    async def pause(self, error: StoreUnavailable, backoff: Backoff) -> None:
        """Note `error` (re-raised when it is not transient), then sleep the next backoff."""
        if not is_transient(error):
            raise error
        self.failed(error)
        await anyio.sleep(backoff.next_delay())


_outages: weakref.WeakKeyDictionary[Store, StoreOutage] = weakref.WeakKeyDictionary()


def outage_of(store: Store) -> StoreOutage:
    """The one `StoreOutage` of `store` in this process (shared by all its loops)."""
    outage = _outages.get(store)
    if outage is None:
        outage = _outages[store] = StoreOutage(store)
    return outage


def _store_outage_in(exc: BaseException) -> StoreUnavailable | None:
    """The transient store failure an activation ended with, even inside its task groups.

    None when anything else (a bug, a configuration error) is among the causes.
    """
    if isinstance(exc, StoreUnavailable):
        return exc if is_transient(exc) else None
    if isinstance(exc, BaseExceptionGroup):
        cancelled = anyio.get_cancelled_exc_class()
        causes = [e for e in exc.exceptions if not isinstance(e, cancelled | LeaseLost)]
        found = [_store_outage_in(e) for e in causes]
        if found and all(f is not None for f in found):
            return found[0]
    return None


def _metrics() -> telemetry.EngineMetrics | None:
    active = telemetry.active()
    return active.metrics if active is not None else None


@dataclass(frozen=True)
class Ran:
    """What `LeaseKeeper.run_one` did: whether it held the lease, and how the activation ended.

    `activation` is None when the execution was not run to a stop here: its
    lease was not ours to take, or it was lost (renewal failed) and the run
    was cancelled.
    """

    claimed: bool
    activation: Activation | None = None


@dataclass
class LeaseKeeper:
    """The leases this process holds, renewed together, and the one path from a lease to a run.

    `held` maps each execution this process runs to the cancel scope of its
    run. Every run goes through `reserve` then `run_one`, the Worker's and
    `Engine.run`'s alike, so one process never runs one execution twice.
    """

    runtime: Runtime
    held: dict[str, anyio.CancelScope] = field(default_factory=dict)

    def reserve(self, execution_id: str) -> anyio.CancelScope | None:
        """Mark `execution_id` as run by this process; None when it already is.

        Synchronous on purpose: checking and marking with no await between
        is what keeps two tasks of this process from both running it.
        """
        if execution_id in self.held:
            return None
        scope = anyio.CancelScope()
        self.held[execution_id] = scope
        return scope

    async def run_one(
        self,
        execution_id: str,
        scope: anyio.CancelScope,
        *,
        leased: bool,
        hold_seconds: float | None = None,
        loaded: LoadedExecution | None = None,
        gate: StartGate | None = None,
    ) -> Ran:
        """Run one reserved execution here as far as it goes now, then unreserve it.

        `leased` says the caller already holds its lease (a `claim_due`);
        otherwise this claims it first (`claim_execution`), and returns
        Ran(claimed=False) when another worker holds it. `loaded` is what
        that claim read under the lease (`claim_due_loaded`), so the
        activation does not load it again; `gate`: its start is still in
        flight (`activate`). Raises LeaseLost
        when the lease is lost mid-run and the store refuses a commit.
        """
        runtime = self.runtime
        try:
            if not leased and not await runtime.run_db(
                runtime.store.claim_execution,
                execution_id,
                runtime.worker_id,
                lease_seconds=runtime.lease_seconds,
                now=runtime.clock.now(),
            ):
                return Ran(claimed=False)
            with scope:
                return Ran(
                    claimed=True,
                    activation=await activate(
                        runtime, execution_id, hold_seconds=hold_seconds, loaded=loaded, gate=gate
                    ),
                )
            return Ran(claimed=True)  # the scope was cancelled: the lease is lost
        finally:
            runtime.ended.discard(execution_id)
            if self.held.get(execution_id) is scope:
                del self.held[execution_id]

    async def run(self) -> None:
        """Renew every held lease a few times per lease period, until cancelled.

        While the store is away the leases cannot be renewed: once a whole
        lease period has passed since the last renewal they may belong to
        another worker, so their runs are cancelled here.
        """
        runtime = self.runtime
        outage = outage_of(runtime.store)
        interval = max(0.05, runtime.lease_seconds / 3)
        renewed_at = time.monotonic()
        while True:
            await anyio.sleep(interval)
            # Not a walk begun ahead of its start while the start has not
            # answered (or was refused): a renewal read before the start's
            # commit and answered after its gate opened would call a healthy
            # lease lost, and one after the commit of a start then refused
            # would push out the lease its run gives back. The start's answer
            # settles those; a lease is renewed once its gate is open.
            early = runtime.early_gates
            ids = [i for i in self.held if (gate := early.get(i)) is None or gate.durable]
            if not ids:
                renewed_at = time.monotonic()
                continue
            asked = time.monotonic()
            try:
                kept = await runtime.run_db(
                    runtime.store.renew,
                    runtime.worker_id,
                    ids,
                    lease_seconds=runtime.lease_seconds,
                    now=runtime.clock.now(),
                )
            except StoreUnavailable as error:
                if not is_transient(error):
                    raise
                outage.failed(error)
                if time.monotonic() - renewed_at >= runtime.lease_seconds:
                    for execution_id in ids:
                        if execution_id in self.held:
                            self.held[execution_id].cancel()
                continue
            outage.ok(asked)
            renewed_at = time.monotonic()
            for execution_id in ids:
                if execution_id in kept or execution_id not in self.held:
                    continue
                if execution_id in runtime.ended or execution_id in runtime.finishing:
                    # Its end committed (and deleted its work row) while this
                    # renewal ran: nothing was lost, its run is unwinding. Or
                    # its end is being committed: that commit checks the lease
                    # itself, and its answer may reach the loop after this
                    # renewal's (a cancellation would not stop it).
                    continue
                log.warning("lease lost for %s; cancelling it here", execution_id)
                self.held[execution_id].cancel()


@dataclass
class StopWatcher:
    """One poll for every running activation's stop request, instead of one poll each.

    Each activation registers a StopSignal in `runtime.stop_signals`; every
    `stop_poll_seconds` this asks the store, in a single query, which of them
    have a stop requested, and signals those.
    """

    runtime: Runtime

    async def run(self) -> None:
        runtime = self.runtime
        outage = outage_of(runtime.store)
        while True:
            await anyio.sleep(runtime.stop_poll_seconds)
            ids = list(runtime.stop_signals)
            if not ids:
                continue
            asked = time.monotonic()
            try:
                requested = await runtime.run_db(runtime.store.stop_requests, ids)
            except StoreUnavailable as failure:
                if not is_transient(failure):
                    raise
                outage.failed(failure)
                continue  # asked again at the next poll
            outage.ok(asked)
            for execution_id, (error, cause) in requested.items():
                signal = runtime.stop_signals.get(execution_id)
                if signal is not None:
                    signal.set(error, cause)


def retention_setting(days: float | None = None) -> float | None:
    """The retention period in days: `days`, else $STEPWISE_RETENTION_DAYS, else None (keep all).

    AWS keeps a closed execution 90 days; Stepwise keeps everything unless
    told. Raises InvalidSetting (a ValueError) for a period that is not a
    positive number of days.
    """
    if days is None:
        setting = os.environ.get("STEPWISE_RETENTION_DAYS", "").strip()
        if not setting:
            return None
        try:
            days = float(setting)
        except ValueError:
            days = 0.0
        if not 0 < days < float("inf"):
            raise InvalidSetting(
                f"STEPWISE_RETENTION_DAYS must be a positive number of days, not {setting!r}"
            )
    if not days > 0 or days == float("inf"):
        raise InvalidSetting(f"the retention period must be a positive number of days, not {days}")
    return days


@dataclass
class Retention:
    """Purges closed executions that stopped more than `days` ago, in small batches.

    Every `interval_seconds` it deletes `batch` executions per transaction
    (`Store.purge_executions`: RUNNING ones never, and on PostgreSQL an
    execution a writer holds a row of is skipped, never waited for, and
    purged in a later round) until a batch comes back short, pausing between batches so
    the workers' own transactions keep their turn. A store error waits for
    the next round: retention is never urgent.
    """

    runtime: Runtime
    days: float
    interval_seconds: float = 600.0
    batch: int = 50
    pause_seconds: float = 0.05
    purged: int = 0

    async def sweep(self) -> int:
        """Purge everything due now, batch by batch; returns how many executions went."""
        runtime = self.runtime
        cutoff = runtime.clock.now() - timedelta(days=self.days)
        total = 0
        while True:
            ids = await runtime.run_db(
                runtime.store.purge_executions, stopped_before=cutoff, limit=self.batch
            )
            total += len(ids)
            for execution_id in ids:  # a wait must not find a purged end
                runtime.kept_ends.drop(execution_id)
            if len(ids) < self.batch:
                break
            await anyio.sleep(self.pause_seconds)
        self.purged += total
        return total

    async def run(self) -> None:
        while True:
            try:
                purged = await self.sweep()
            except Exception:
                log.warning("retention sweep failed; trying again in %ss", self.interval_seconds)
            else:
                if purged:
                    log.info("retention purged %d executions older than %s days", purged, self.days)
            await anyio.sleep(self.interval_seconds)


class Worker:
    """Claims and runs the executions of one queue (`queue`, ``default``) until stopped."""

    def __init__(
        self,
        runtime: Runtime,
        keeper: LeaseKeeper,
        *,
        concurrency: int = 16,
        poll_seconds: float = 1.0,
        queue: str = DEFAULT_QUEUE,
    ) -> None:
        self.runtime = runtime
        self.queue = queue
        self.keeper = keeper
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self._slot_freed = anyio.Event()
        self.finished = 0
        # Set while `run` can start runs: the group that `take_started` runs a start in.
        self._group: ChildTaskGroup | None = None
        # Slots promised to starts in flight (`reserve_slot`) and to the claim in flight.
        self._promised = 0
        self._claiming = 0
        self._claim_done = anyio.Event()
        self.handed_off = 0
        # Runs begun before their start answered (`take_early`), and those of
        # them whose start did not create what they walked (they wrote nothing).
        self.walked_early = 0
        self.refused_early = 0

    @property
    def worker_id(self) -> str:
        return self.runtime.worker_id

    @property
    def lease_seconds(self) -> float:
        return self.runtime.lease_seconds

    @property
    def taking_starts(self) -> bool:
        """Whether `reserve_slot` may promise slots: the worker runs and has not begun stopping."""
        return self._group is not None

    def _busy(self) -> int:
        """Slots taken: runs held, starts promised a slot, and the claim in flight."""
        return len(self.keeper.held) + self._promised + self._claiming

    async def reserve_slot(self, queue: str) -> bool:
        """Promise a start on `queue` a slot of this worker; False when it has none to give.

        None is given when the worker is not running, serves another queue,
        or has `concurrency` runs and promised starts already. A claim in
        flight holds the slots it may fill: this waits for it to end (a
        claim is one short transaction) and then counts what it took. A
        promised slot is settled by `take_started` (the start created its
        execution, leased to this worker) or `free_slot` (it did not).
        """
        if self._group is None or queue != self.queue:
            return False
        while self._claiming:
            await self._claim_done.wait()
        # Checked and promised with no await between.
        if self._group is None or self._busy() >= self.concurrency:
            return False
        self._promised += 1
        return True

    def free_slot(self) -> None:
        """Give back a slot `reserve_slot` promised, unused."""
        self._promised -= 1
        self._slot_freed.set()

    def take_started(self, loaded: LoadedExecution) -> bool:
        """Run a just-started execution whose work row the start leased to this worker.

        Settles the slot `reserve_slot` promised. The execution runs as a
        claimed one does (`LeaseKeeper.reserve`, then `_run_one` with what
        the start already has: `loaded`), with no claim and no load. True
        when it runs here (or already did, by another path of this
        process); False when this worker has stopped meanwhile: the caller
        must then give the lease back (`give_back`) so another worker takes it.
        """
        self._promised -= 1
        group = self._group
        execution_id = loaded.record.execution_id
        if group is None:
            self._slot_freed.set()
            return False
        scope = self.keeper.reserve(execution_id)
        if scope is None:
            # This process runs it already (it claimed it with our worker id).
            self._slot_freed.set()
            return True
        self._handed(loaded.record.start_date)
        group.spawn(self._run_one, execution_id, scope, loaded)
        return True

    def _handed(self, start_date: datetime) -> None:
        """Count a start handed to this worker, once it is known written (the claim it spared)."""
        telemetry.record_claim(start_date, self.runtime.clock.now())
        self.handed_off += 1

    def take_early(self, loaded: LoadedExecution, gate: StartGate) -> bool:
        """Run the execution a start in flight will create; its writes wait for `gate`.

        As `take_started`, before the start's answer (engine/earlywalk.py):
        settles the promised slot and returns True when it runs; False (the
        slot still promised) when this worker has stopped or this process
        runs that execution already. The start's answer settles `gate`; a
        run whose gate is refused ends writing nothing, and releases the
        lease the start may have taken (`StartGate.release_until`) as it ends.
        """
        group = self._group
        execution_id = loaded.record.execution_id
        if group is None:
            return False
        scope = self.keeper.reserve(execution_id)
        if scope is None:
            return False
        self._promised -= 1
        gate.scope = scope
        self.runtime.early_gates[execution_id] = gate
        # Counted as handed over only when the start answers that it wrote it.
        gate.on_open = functools.partial(self._handed, loaded.record.start_date)
        self.walked_early += 1
        group.spawn(self._run_one, execution_id, scope, loaded, gate)
        return True

    async def give_back(self, execution_id: str, leased_until: datetime) -> None:
        """Release a lease a start took for this worker that nothing here will run (due now).

        Only that lease, the one ending at `leased_until`: not one this
        worker's claim took since (its run may be about to start), and not
        while this process runs `execution_id` (by another path).
        """
        if execution_id in self.keeper.held:
            return
        with anyio.CancelScope(shield=True):
            await self._release(execution_id, leased_until)

    async def run(self) -> None:
        """Claim and run executions until cancelled; on cancellation release what is held.

        Transient store failures are retried with backoff here, forever;
        a permanent one (a configuration error) is raised.
        """
        runtime = self.runtime
        outage = outage_of(runtime.store)
        backoff = Backoff()
        try:
            # Runs start in the light group on asyncio (no anyio TaskHandle per
            # run, `engine/states/childtasks.py`): a stop still cancels them all,
            # each under the group's scope, as anyio's own group would.
            async with child_task_group() as group:
                self._group = group
                while True:
                    free = self.concurrency - self._busy()
                    if free <= 0:
                        await self._slot()
                        continue
                    now = runtime.clock.now()
                    # Promised to the claim until its executions are reserved
                    # below, so a start cannot take one of these slots meanwhile.
                    self._claiming = free
                    self._claim_done = anyio.Event()
                    asked = time.monotonic()
                    try:
                        claimed = await runtime.run_db(
                            runtime.store.claim_due_loaded,
                            runtime.worker_id,
                            limit=free,
                            lease_seconds=runtime.lease_seconds,
                            now=now,
                            queue=self.queue,
                        )
                    except StoreUnavailable as error:
                        self._claimed()
                        await outage.pause(error, backoff)
                        continue
                    except BaseException:
                        self._claimed()
                        raise
                    outage.ok(asked)
                    backoff.reset()
                    for execution_id, due_at, loaded in claimed:
                        telemetry.record_claim(due_at, now)
                        scope = self.keeper.reserve(execution_id)
                        if scope is None:
                            continue  # this process already runs it (Engine.run)
                        group.spawn(self._run_one, execution_id, scope, loaded)
                    # Reserved above with no await since the claim: now held, not promised.
                    self._claimed()
                    if len(claimed) < free:
                        # Nothing more is due: sleep until new work is signalled
                        # (NOTIFY, or a local wake-up) or the poll interval passes.
                        # A lost listener means polling until the claim above
                        # succeeds again and the next wait re-LISTENs.
                        try:
                            await self.runtime.run_db(
                                self.runtime.store.wait_for_work,
                                min(self.poll_seconds, 0.5),
                                cancellable=True,
                                idle=True,
                            )
                        except StoreUnavailable as error:
                            await outage.pause(error, backoff)
        finally:
            # No start is handed here from now on (`take_started` says so to
            # its caller, who releases); what was handed before is held, and
            # released below with the rest.
            self._group = None
            self._claimed()
            with anyio.CancelScope(shield=True):
                await self._release_all()

    def _claimed(self) -> None:
        """The claim in flight is over: its slots are held runs now, or free."""
        self._claiming = 0
        self._claim_done.set()

    async def _slot(self) -> None:
        """Wait until a running execution ends (or the poll interval passes)."""
        if self._busy() < self.concurrency:
            return
        # Checked and armed with no await in between: a slot cannot free unseen.
        self._slot_freed = anyio.Event()
        with anyio.move_on_after(self.poll_seconds):
            await self._slot_freed.wait()

    async def _run_one(
        self,
        execution_id: str,
        scope: anyio.CancelScope,
        loaded: LoadedExecution | None,
        gate: StartGate | None = None,
    ) -> None:
        completed = False
        try:
            ran = await self._run_through_outages(execution_id, scope, loaded, gate)
            if ran is None or not ran.claimed:
                completed = True  # run here by someone else in this process, or elsewhere
            elif ran.activation is not None:
                completed = True
                self.finished += 1
        except (LeaseLost, CommitConflict):
            completed = True
            if gate is not None and gate.refused:
                log.info(
                    "the start of %s did not create what its early walk ran; "
                    "the walk ended, writing nothing",
                    execution_id,
                )
            else:
                log.info("execution %s is owned elsewhere now", execution_id)
        except Exception:
            if gate is None or not gate.refused:  # a refused walk ends writing nothing
                log.exception("activation of %s failed; its lease will expire", execution_id)
        finally:
            self._slot_freed.set()
            if gate is not None:
                gate.ended = True
                self.runtime.early_gates.pop(execution_id, None)
            if gate is not None and not gate.durable:
                self.refused_early += gate.refused
                # Its start did not create it (nothing was written), or has not
                # answered yet (the start's path gives the lease back then).
                if gate.release_until is not None:
                    with anyio.CancelScope(shield=True):
                        await self._release(execution_id, gate.release_until)
            elif not completed:
                # Cancelled (shutdown, or a renewal failed): hand it back now
                # rather than making the next worker wait for the lease to expire.
                with anyio.CancelScope(shield=True):
                    await self._release(execution_id)

    async def _run_through_outages(
        self,
        execution_id: str,
        scope: anyio.CancelScope,
        loaded: LoadedExecution | None,
        gate: StartGate | None = None,
    ) -> Ran | None:
        """Run a claimed execution; when the store fails mid-run, wait for it and claim it again.

        The second claim succeeds while the lease is still ours or has
        expired unclaimed; the activation then replays what was committed.
        None when this process already runs it again some other way.
        """
        outage = outage_of(self.runtime.store)
        backoff = Backoff()
        leased = True
        while True:
            try:
                return await self.keeper.run_one(
                    execution_id, scope, leased=leased, loaded=loaded, gate=gate
                )
            except Exception as exc:
                failure = _store_outage_in(exc)
                if failure is None:
                    raise
                await outage.pause(failure, backoff)
            reserved = self.keeper.reserve(execution_id)
            if reserved is None:
                return None
            # Claimed again after an outage: what was loaded may be stale (and
            # an outage is met only after the start's gate, by a store call).
            scope, leased, loaded, gate = reserved, False, None, None

    async def _release(self, execution_id: str, leased_until: datetime | None = None) -> None:
        try:
            await self.runtime.run_db(
                self.runtime.store.release,
                execution_id,
                self.runtime.worker_id,
                due_at=self.runtime.clock.now(),
                now=self.runtime.clock.now(),
                leased_until=leased_until,
            )
        except StoreUnavailable:  # the lease expires on its own anyway
            log.debug("could not release %s", execution_id)
        except Exception:
            log.warning("could not release %s", execution_id)

    async def _release_all(self) -> None:
        for execution_id in list(self.keeper.held):
            await self._release(execution_id)
