"""The Engine's Map Run calls: DescribeMapRun, ListMapRuns, UpdateMapRun, a run's children.

`MapRunApi` is a mixin of `engine.Engine` (which supplies its store, clock,
lifecycle and lease keeper); the CLI (``stepwise map-runs``) and the HTTP API
use it and render with `map_run_description` / `map_run_list_item`, AWS's
shapes (camelCase, ``itemCounts`` and ``executionCounts``). It also keeps
`Engine.run` whole for a Distributed Map: the execution ``run`` drives is on
a private queue no worker serves, so while it waits on a Map Run this
process claims and runs that queue's due work — its children
(`_wait_running_children`). A child that its redriven run holds until
MaxConcurrency has room for it is shown ``PENDING_REDRIVE``, as AWS shows
it (`with_pending_redrive`), though its row keeps the status it ended with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio

from engine.mixins import EngineParts
from engine.store import CommitConflict, ExecutionRecord, LeaseLost
from engine.store.map_run_hook import is_child
from engine.store.map_runs import PENDING_REDRIVE, MapRunRecord, MapRunRedriveCounts
from engine.worker import LeaseKeeper
from statemachine.timestamps import format_timestamp

__all__ = ["PENDING_REDRIVE", "MapRunApi", "map_run_description", "map_run_list_item"]

_CLAIM_BATCH = 8
_ENDED_UNSUCCESSFULLY = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})


def _counts(
    record: MapRunRecord, items: dict[str, int] | None, redrive: tuple[int, int]
) -> dict[str, int]:
    if items is None:
        values = {
            "pending": record.pending,
            "running": record.running,
            "succeeded": record.succeeded,
            "failed": record.failed,
            "timedOut": record.timed_out,
            "aborted": record.aborted,
            "total": record.total,
        }
    else:
        values = {
            "pending": items.get("PENDING", 0),
            "running": items.get("RUNNING", 0),
            "succeeded": items.get("SUCCEEDED", 0),
            "failed": items.get("FAILED", 0),
            "timedOut": items.get("TIMED_OUT", 0),
            "aborted": items.get("ABORTED", 0),
            "total": sum(items.values()),
        }
    values["resultsWritten"] = (
        record.results_written
        if items is None
        else (values["total"] if record.results_written else 0)
    )
    values["failuresNotRedrivable"], values["pendingRedrive"] = redrive
    return values


def map_run_description(
    record: MapRunRecord,
    item_counts: dict[str, int],
    redrive: MapRunRedriveCounts | None = None,
) -> dict[str, Any]:
    """DescribeMapRun's answer for `record`.

    `item_counts` are items by child status; `redrive` the run's
    ``pendingRedrive`` and ``failuresNotRedrivable`` (none: both 0).
    """
    redrive = redrive or MapRunRedriveCounts()
    described: dict[str, Any] = {
        "mapRunArn": record.arn,
        "executionArn": record.execution_id,
        "status": record.status,
        "startDate": format_timestamp(record.start_date),
    }
    if record.stop_date is not None:
        described["stopDate"] = format_timestamp(record.stop_date)
    described.update(
        {
            "maxConcurrency": record.max_concurrency,
            "toleratedFailurePercentage": float(record.tolerated_failure_percentage or 0.0),
            "toleratedFailureCount": int(record.tolerated_failure_count or 0),
            "itemCounts": _counts(
                record,
                item_counts,
                (redrive.failures_not_redrivable_items, redrive.pending_redrive_items),
            ),
            "executionCounts": _counts(
                record, None, (redrive.failures_not_redrivable, redrive.pending_redrive)
            ),
            "redriveCount": record.redrive_count,
        }
    )
    if record.redrive_date is not None:
        described["redriveDate"] = format_timestamp(record.redrive_date)
    return described


def map_run_list_item(record: MapRunRecord) -> dict[str, Any]:
    """One entry of ListMapRuns."""
    labelled = record.arn.replace(":mapRun:", ":stateMachine:", 1).rsplit(":", 1)[0]
    item: dict[str, Any] = {
        "executionArn": record.execution_id,
        "mapRunArn": record.arn,
        "stateMachineArn": labelled,
        "startDate": format_timestamp(record.start_date),
    }
    if record.stop_date is not None:
        item["stopDate"] = format_timestamp(record.stop_date)
    return item


class MapRunApi(EngineParts):
    """Mixin for `Engine`: Map Runs by ARN (needs `.store`, `.clock`, `.lifecycle`, `_keeper`)."""

    _keeper: LeaseKeeper

    async def describe_map_run(self, map_run: str) -> dict[str, Any]:
        """DescribeMapRun: the run's AWS shape. Raises ResourceNotFound."""
        run_db = self.lifecycle.run_db
        record = await run_db(self.store.get_map_run, map_run)
        items = await run_db(self.store.map_run_item_counts, record.map_run_id)
        redrive = await run_db(
            self.store.map_run_redrive_counts, record.map_run_id, now=self.clock.now()
        )
        return map_run_description(record, items, redrive)

    async def list_map_runs(self, execution: str | ExecutionRecord) -> list[MapRunRecord]:
        """ListMapRuns: the execution's Map Runs, newest first. Raises ExecutionDoesNotExist."""
        parent = await self.lifecycle.describe(execution)
        runs: list[MapRunRecord] = await self.lifecycle.run_db(
            self.store.list_map_runs, parent.execution_id
        )
        return runs

    async def update_map_run(
        self,
        map_run: str,
        *,
        max_concurrency: int | None = None,
        tolerated_failure_percentage: float | None = None,
        tolerated_failure_count: int | None = None,
    ) -> MapRunRecord:
        """UpdateMapRun. Raises ValueError for out-of-range values, ResourceNotFound, and
        MapRunUpdateRefused for a run that has ended."""
        if max_concurrency is not None and max_concurrency < 0:
            raise ValueError("maxConcurrency must be at least 0")
        if tolerated_failure_count is not None and tolerated_failure_count < 0:
            raise ValueError("toleratedFailureCount must be at least 0")
        if tolerated_failure_percentage is not None and not (
            0 <= tolerated_failure_percentage <= 100
        ):
            raise ValueError("toleratedFailurePercentage must be between 0 and 100")
        record: MapRunRecord = await self.lifecycle.run_db(
            self.store.update_map_run,
            map_run,
            now=self.clock.now(),
            max_concurrency=max_concurrency,
            tolerated_failure_percentage=tolerated_failure_percentage,
            tolerated_failure_count=tolerated_failure_count,
        )
        return record

    async def list_map_run_executions(self, map_run: str) -> list[ExecutionRecord]:
        """The Map Run's started children, in item order, as AWS shows them.

        Raises ResourceNotFound.
        """
        ids = await self.lifecycle.run_db(self.store.list_map_run_children, map_run)
        return await self.with_pending_redrive(
            [await self.lifecycle.describe(execution_id) for execution_id in ids]
        )

    async def with_pending_redrive(self, records: list[ExecutionRecord]) -> list[ExecutionRecord]:
        """`records` with the Map Run children waiting to be redriven shown ``PENDING_REDRIVE``.

        A redriven run puts its children that did not succeed back to
        PENDING and reopens them as MaxConcurrency makes room; until then
        each has ended (FAILED, TIMED_OUT or ABORTED) and is AWS's
        ``PENDING_REDRIVE``. A child that ended so is read again with its
        place in the run (`MapRunStore.children_as_shown`): one read, and
        only for such a child.
        """
        ended = [
            record.execution_id
            for record in records
            if record.status in _ENDED_UNSUCCESSFULLY and is_child(record.execution_id)
        ]
        if not ended:
            return records
        shown = await self.lifecycle.run_db(self.store.children_as_shown, ended)
        return [shown.get(record.execution_id, record) for record in records]

    # -- Engine.run of a Distributed Map ----------------------------------------------
    async def _wait_running_children(self, execution_id: str, due: datetime | None) -> None:
        """Until `execution_id` is due, run the due work of its queue here (its children)."""
        run_db = self.lifecycle.run_db
        parent = await self.lifecycle.describe(execution_id)
        while True:
            queued, due_at = await run_db(self.store.work_due_at, execution_id)
            now = self.clock.now()
            if not queued or (due_at is not None and due_at <= now):
                return
            runs = await run_db(self.store.list_map_runs, execution_id)
            if not any(run.status == "RUNNING" for run in runs) or not await self._run_due(
                parent.queue
            ):
                wake = due_at if due_at is not None else due
                step = 0.2 if wake is None else min(0.2, (wake - now).total_seconds())
                await anyio.sleep(max(step, 0.0))

    async def _run_due(self, queue: str) -> bool:
        """Claim and run a few due executions of `queue` here; False when none was due."""
        runtime = self._keeper.runtime
        claimed = await runtime.run_db(
            runtime.store.claim_due,
            runtime.worker_id,
            limit=_CLAIM_BATCH,
            lease_seconds=runtime.lease_seconds,
            now=runtime.clock.now(),
            queue=queue,
        )
        if not claimed:
            return False

        async def run(execution_id: str, scope: anyio.CancelScope) -> None:
            try:
                await self._keeper.run_one(execution_id, scope, leased=True)
            except (LeaseLost, CommitConflict):
                pass  # another worker has it now; the store kept what was recorded

        async with anyio.create_task_group() as group:
            for execution_id, _due in claimed:
                scope = self._keeper.reserve(execution_id)
                if scope is not None:
                    group.start_soon(run, execution_id, scope)
        return True
