"""Workers: claim due executions, run them, keep their leases alive.

A worker claims up to `concurrency` due executions (PostgreSQL: `FOR UPDATE
SKIP LOCKED`, so many workers on many machines never take the same one),
runs an activation for each, and renews every lease it holds a few times
per lease period. An execution whose lease could not be renewed is
cancelled locally at once: another worker may own it now, and the store
refuses any further write from this one. When nothing is due the worker
sleeps until woken (LISTEN/NOTIFY on PostgreSQL, polling on SQLite).
Stopping (SIGTERM/SIGINT in the CLI) stops claiming, cancels what runs,
and releases those leases so another worker resumes them at once.
`Retention` (when a retention period is set) purges closed executions
older than it, a small batch per short transaction.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta

import anyio

from engine import telemetry
from engine.runner import Activation, Runtime, activate
from engine.store import CommitConflict, LeaseLost

__all__ = ["LeaseKeeper", "Ran", "Retention", "StopWatcher", "Worker", "retention_setting"]

log = logging.getLogger("stepwise.worker")


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
    ) -> Ran:
        """Run one reserved execution here as far as it goes now, then unreserve it.

        `leased` says the caller already holds its lease (a `claim_due`);
        otherwise this claims it first (`claim_execution`), and returns
        Ran(claimed=False) when another worker holds it. Raises LeaseLost
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
                    activation=await activate(runtime, execution_id, hold_seconds=hold_seconds),
                )
            return Ran(claimed=True)  # the scope was cancelled: the lease is lost
        finally:
            if self.held.get(execution_id) is scope:
                del self.held[execution_id]

    async def run(self) -> None:
        interval = max(0.05, self.runtime.lease_seconds / 3)
        while True:
            await anyio.sleep(interval)
            if not self.held:
                continue
            ids = list(self.held)
            kept = await self.runtime.run_db(
                self.runtime.store.renew,
                self.runtime.worker_id,
                ids,
                lease_seconds=self.runtime.lease_seconds,
                now=self.runtime.clock.now(),
            )
            for execution_id in ids:
                if execution_id not in kept and execution_id in self.held:
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
        while True:
            await anyio.sleep(runtime.stop_poll_seconds)
            ids = list(runtime.stop_signals)
            if not ids:
                continue
            requested = await runtime.run_db(runtime.store.stop_requests, ids)
            for execution_id, (error, cause) in requested.items():
                signal = runtime.stop_signals.get(execution_id)
                if signal is not None:
                    signal.set(error, cause)


def retention_setting(days: float | None = None) -> float | None:
    """The retention period in days: `days`, else $STEPWISE_RETENTION_DAYS, else None (keep all).

    AWS keeps a closed execution 90 days; Stepwise keeps everything unless
    told. Raises ValueError for a period that is not positive.
    """
    if days is None:
        setting = os.environ.get("STEPWISE_RETENTION_DAYS", "").strip()
        if not setting:
            return None
        days = float(setting)
    if not days > 0:
        raise ValueError(f"the retention period must be a positive number of days, not {days}")
    return days


@dataclass
class Retention:
    """Purges closed executions that stopped more than `days` ago, in small batches.

    Every `interval_seconds` it deletes `batch` executions per transaction
    (`Store.purge_executions`: RUNNING ones never, rows a worker holds
    skipped) until a batch comes back short, pausing between batches so
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
    """Claims and runs executions until stopped."""

    def __init__(
        self,
        runtime: Runtime,
        keeper: LeaseKeeper,
        *,
        concurrency: int = 16,
        poll_seconds: float = 1.0,
    ) -> None:
        self.runtime = runtime
        self.keeper = keeper
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self._slot_freed = anyio.Event()
        self.finished = 0

    async def run(self) -> None:
        """Claim and run executions until cancelled; on cancellation release what is held."""
        runtime = self.runtime
        try:
            async with anyio.create_task_group() as group:
                while True:
                    free = self.concurrency - len(self.keeper.held)
                    if free <= 0:
                        await self._slot()
                        continue
                    now = runtime.clock.now()
                    claimed = await runtime.run_db(
                        runtime.store.claim_due,
                        runtime.worker_id,
                        limit=free,
                        lease_seconds=runtime.lease_seconds,
                        now=now,
                    )
                    for execution_id, due_at in claimed:
                        telemetry.record_claim(due_at, now)
                        scope = self.keeper.reserve(execution_id)
                        if scope is None:
                            continue  # this process already runs it (Engine.run)
                        group.start_soon(self._run_one, execution_id, scope)
                    if len(claimed) < free:
                        # Nothing more is due: sleep until new work is signalled
                        # (NOTIFY, or a local wake-up) or the poll interval passes.
                        await self.runtime.run_db(
                            self.runtime.store.wait_for_work,
                            min(self.poll_seconds, 0.5),
                            cancellable=True,
                            idle=True,
                        )
        finally:
            with anyio.CancelScope(shield=True):
                await self._release_all()

    async def _slot(self) -> None:
        """Wait until a running execution ends (or the poll interval passes)."""
        if len(self.keeper.held) < self.concurrency:
            return
        # Checked and armed with no await in between: a slot cannot free unseen.
        self._slot_freed = anyio.Event()
        with anyio.move_on_after(self.poll_seconds):
            await self._slot_freed.wait()

    async def _run_one(self, execution_id: str, scope: anyio.CancelScope) -> None:
        completed = False
        try:
            ran = await self.keeper.run_one(execution_id, scope, leased=True)
            if ran.activation is not None:
                completed = True
                self.finished += 1
        except (LeaseLost, CommitConflict):
            completed = True
            log.info("execution %s is owned elsewhere now", execution_id)
        except Exception:
            log.exception("activation of %s failed; its lease will expire", execution_id)
        finally:
            self._slot_freed.set()
            if not completed:
                # Cancelled (shutdown, or a renewal failed): hand it back now
                # rather than making the next worker wait for the lease to expire.
                with anyio.CancelScope(shield=True):
                    await self._release(execution_id)

    async def _release(self, execution_id: str) -> None:
        try:
            await self.runtime.run_db(
                self.runtime.store.release,
                execution_id,
                self.runtime.worker_id,
                due_at=self.runtime.clock.now(),
                now=self.runtime.clock.now(),
            )
        except Exception:  # the lease expires on its own anyway
            log.warning("could not release %s", execution_id)

    async def _release_all(self) -> None:
        for execution_id in list(self.keeper.held):
            await self._release(execution_id)
