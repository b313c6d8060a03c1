"""The lifecycle of executions: start, stop, describe and list, for every face.

`Lifecycle` is the one place an execution begins and the one place its
record is read for a face: `Engine`, and next the CLI's client, the HTTP
API, the scheduler and Distributed Map's child executions call it rather
than the store. Only `Lifecycle.start` builds an ``ExecutionStarted`` event.
Starting checks the execution's name, encodes and bounds its input
(`statemachine.quotas.MAX_PAYLOAD_BYTES`), resolves the machine reference
(`resolve`: ``NAME`` runs the latest revision, ``NAME:VERSION`` a published
version, ``NAME:ALIAS`` a version the alias picks by weight, and the ARNs of
all three) and records the start — with the version and alias, so the
alias's pick is made once, at the start, and never re-rolled — and the start
idempotently: the same name with the same input returns the running
execution. Every execution is on a queue (Temporal's task-queue habit,
``default`` unless the starter names one); a worker claims only its own
queue's work, so a starter that needs particular handlers names a queue
only workers with those handlers serve. Listing pages newest first as
AWS's ListExecutions does, with an opaque `next_token`. Stopping records
the stop request; a worker (or `Engine.stop`, which drives the execution
itself) carries it out. A start on the queue of this process's worker, when
it has a free slot, is handed straight to it (`hand_starts_to`,
`engine/handoff.py`): no claim. A history is read a page at a time (`history_pages`).
Redriving lives here beside `stop`: ``Lifecycle.redrive(execution)`` has
the store check (under a row lock) that the execution closed FAILED,
TIMED_OUT or ABORTED within the redrive window, and record
``ExecutionRedriven`` with its work row in one transaction, so a worker
replays it from the step that did not succeed; `redrive_status` is the same
judgement for `describe`. The collaborators — the store, a
way to call it off the event loop, the clock and the telemetry hook — are
passed in, so no Engine is needed to use it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import msgspec

from engine import telemetry
from engine.arns import InvalidArnText, parse_arn
from engine.clock import Clock
from engine.errors import (
    InvalidExecutionInput,
    InvalidName,
    InvalidToken,
    StepwiseError,
    UnstorableData,
)
from engine.handoff import EarlyStart, StartTaker, lease_end, start_handed
from engine.names import check_name
from engine.runner import execution_arn, machine_arn
from engine.start_batcher import StartBatcher
from engine.store import (
    DEFAULT_QUEUE,
    REDRIVE_WINDOW,
    Event,
    ExecutionRecord,
    ExecutionStatus,
    MachineVersion,
    StateMachineDoesNotExist,
    Store,
    redrive_status,
)
from engine.store.starts import Resolved, StartRequest, pick_route
from statemachine.jsontext import json_problem
from statemachine.quotas import MAX_PAYLOAD_BYTES

__all__ = [
    "MAX_LIST_RESULTS",
    "NO_INPUT",
    "InvalidNextToken",
    "Lifecycle",
    "Resolved",
    "RunDb",
    "StartedHook",
    "pick_route",
    "split_reference",
]

T = TypeVar("T")

# ListExecutions' maxResults range on AWS.
MAX_LIST_RESULTS = 1000


class _NoInput:
    """The absence of an execution input (which starts with ``{}``); None is JSON null."""

    def __repr__(self) -> str:
        return "NO_INPUT"


NO_INPUT: Any = _NoInput()
_ROLE_ARN = "arn:aws:iam::000000000000:role/stepwise"


class RunDb(Protocol):
    """Runs one blocking store call off the event loop and returns its result."""

    def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Awaitable[T]: ...


# Called with a newly started execution and its first event (telemetry.on_commit).
StartedHook = Callable[[ExecutionRecord, Sequence[Event]], None]


class InvalidNextToken(InvalidToken):
    """A ListExecutions `next_token` that this store did not hand out for this query.

    AWS answers a bad nextToken with ``InvalidToken``, hence the base class.
    """


class _PageToken(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a next_token carries: the last execution's sort key and the query it pages."""

    start_date: datetime
    execution_id: str
    machine: str | None
    status: str | None
    redrive: str | None = None


def split_reference(reference: str) -> tuple[str, str | None]:
    """``NAME`` or an ARN → (machine name, version number or alias name, or None)."""
    if reference.startswith("arn:"):
        try:
            parsed = parse_arn(reference)
        except InvalidArnText:
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{reference}'") from None
        if parsed.kind != "stateMachine":
            raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{reference}'")
        return parsed.resource, parsed.qualifier
    name, _, qualifier = reference.partition(":")
    return name, qualifier or None


@dataclass(frozen=True)
class Lifecycle:
    """Start, stop, describe and list executions on one store."""

    store: Store
    clock: Clock
    run_db: RunDb
    on_started: StartedHook = telemetry.on_commit
    # How long after it closed an execution may be redriven (AWS: 14 days).
    redrive_window: timedelta = REDRIVE_WINDOW
    # The draw an alias's weighted pick uses (tests may pass a seeded one).
    draw: Callable[[], float] = random.random
    # Concurrent starts share a transaction (engine/start_batcher.py).
    _starts: StartBatcher = field(init=False, repr=False, compare=False)
    # This process's worker, which may take a start straight from its
    # transaction (engine/handoff.py); None: every start waits for a claim.
    _taker: StartTaker | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", StartBatcher(self.store, self.run_db))

    def hand_starts_to(self, taker: StartTaker | None) -> None:
        """Hand starts on `taker`'s queue straight to it while it has a free slot (None: stop)."""
        object.__setattr__(self, "_taker", taker)

    def send_starts_from_loop(self) -> Callable[[], Awaitable[None]]:
        """Record starts from the running event loop from now on, where the store can (PostgreSQL).

        On a connection of their own (engine/store/asyncstart.py), not the
        committer's: a start never makes a step's commit wait or go to a
        thread. Returns what closes it: the Engine calls it at exit.
        """
        return self._starts.send_from_loop()

    @property
    def starts(self) -> StartBatcher:
        """The start batcher (`transactions`, `batches_on_loop`, `queued`, `leading`: observed)."""
        return self._starts

    async def connect_starts(self) -> None:
        """Open the starts' event loop connection now (an Engine's start), if they have one."""
        await self._starts.connect()

    # -- start ---------------------------------------------------------------
    async def resolve_machine(self, reference: str) -> MachineVersion:
        """The state machine revision an execution of `reference` runs (see `resolve`)."""
        return (await self.resolve(reference)).machine

    async def resolve(self, reference: str) -> Resolved:
        """What an execution of `reference` runs, and through which version and alias.

        ``NAME`` (or its ARN): the latest revision, no version. ``NAME:N``:
        published version N. ``NAME:ALIAS``: one of the alias's versions,
        picked at random in proportion to the weights. Raises
        StateMachineDoesNotExist (also for a deleted machine none of whose
        executions still runs) and ResourceNotFound (no such version or
        alias); a DELETING machine resolves (only `start` refuses it). One
        store call.
        """
        name, qualifier = split_reference(reference)
        return await self.run_db(self.store.resolve_reference, name, qualifier, self.draw)

    async def start(
        self,
        machine: str,
        input: Any = NO_INPUT,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> ExecutionRecord:
        """Start an execution of `machine` (see `resolve_machine`) and return its record.

        Without `input` the execution's input is ``{}`` (as StartExecution's
        default); None is JSON ``null``. `name` defaults to a fresh UUID.
        The execution's work goes on `queue`: only a worker on that queue
        claims it (``stepwise run`` uses a private one). The same `name` with the same input returns
        the existing running execution (on the queue it was started on);
        with a different input, or once it has closed, it raises
        ExecutionAlreadyExists. Raises InvalidName (the name or the queue
        name breaks AWS's name rules), InvalidExecutionInput (not JSON, over
        MAX_PAYLOAD_BYTES, or refused by the database: only this start of
        its batch fails), StateMachineDoesNotExist and
        StateMachineDeleting (the machine is being deleted).

        The machine's status, the reference's resolution and the execution's
        rows are one store call and one transaction, shared with the starts
        made at the same moment (`StartBatcher`).
        """
        check_name(queue, what="queue")
        machine_name, qualifier = split_reference(machine)
        fresh_name = not name
        name = name or str(uuid.uuid4())
        # The name and the input are judged here, off the store's thread, but
        # their errors are raised after the machine's (as before batching:
        # an unknown machine is reported first).
        refused: StepwiseError | None = None
        payload = ""
        try:
            if not fresh_name:  # a drawn UUID keeps AWS's name rules
                check_name(name, what="execution")
            payload = _encode_input(input)
        except (InvalidName, InvalidExecutionInput) as error:
            refused = error
        now = self.clock.now()
        execution_name = name
        built: list[Event] = []  # the ExecutionStarted written (prepare may run again on a retry)

        def prepare(resolved: Resolved) -> tuple[str, Event]:
            if refused is not None:
                raise refused
            version = resolved.machine
            arn = machine_arn(version.name)
            details: dict[str, Any] = {
                "input": payload,
                "inputDetails": {"truncated": False},
                "roleArn": _ROLE_ARN,
                # Started by name: the revision's number, as before versions existed.
                "stateMachineVersionArn": f"{arn}:{version.version}",
            }
            if resolved.version is not None:
                details["stateMachineVersionArn"] = f"{arn}:{resolved.version}"
            if resolved.alias is not None:
                details["stateMachineAliasArn"] = f"{arn}:{resolved.alias}"
            first = Event(
                event_id=1,
                previous_event_id=0,
                type="ExecutionStarted",
                timestamp=now,
                details=details,
            )
            built.append(first)
            execution_id = execution_arn(version.name, execution_name)
            if early is not None:
                # On the loop, before the write is sent: the walk begins now.
                early.begin(request, resolved, execution_id, first)
            return execution_id, first

        taker = self._taker
        if taker is not None and (refused is not None or not await taker.reserve_slot(queue)):
            taker = None
        # A walk begun alongside its start's round trip (engine/earlywalk.py):
        # for a drawn name (a named start may find its execution existing).
        early = _early_start(taker) if fresh_name else None
        request = StartRequest(
            machine=machine_name,
            qualifier=qualifier,
            name=name,
            input=payload,
            start_date=now,
            trace_id=secrets.token_hex(16),
            queue=queue,
            draw=self.draw,
            prepare=prepare,
            # Leased to this process's worker from its first committed instant.
            lease_owner=None if taker is None else taker.worker_id,
            lease_expires_at=None if taker is None else lease_end(now, taker),
            fresh_name=fresh_name,
        )
        if taker is not None:
            started_id = execution_arn(machine_name, execution_name)
            result = await start_handed(self._starts, request, taker, started_id, early)
        else:
            result = await self._starts.start(request)
        if isinstance(result.error, UnstorableData):
            # The database refused this start's data (its input): the
            # client's error, not the store's; the starts beside it went on.
            raise InvalidExecutionInput(f"Invalid execution input: {result.error}") from None
        if result.error is not None:
            raise result.error
        assert result.record is not None
        if result.created:
            self.on_started(result.record, [built[-1]])
        return result.record

    # -- redrive -------------------------------------------------------------
    async def redrive(
        self, execution: str | ExecutionRecord, *, client_token: str | None = None
    ) -> ExecutionRecord:
        """Reopen a FAILED, TIMED_OUT or ABORTED execution from the step that did not succeed.

        Returns its record (RUNNING, `redrive_count` and `redrive_date`
        set). The execution keeps its ARN, definition version and input;
        what it finished is replayed, not run again. Repeating a call with
        the same `client_token` while that redrive runs returns the same
        record. Raises ExecutionDoesNotExist, AmbiguousExecution and
        ExecutionNotRedrivable (AWS's reason as the message).
        """
        record = await self.describe(execution)
        redriven: ExecutionRecord = await self.run_db(
            self.store.redrive_execution,
            record.execution_id,
            now=self.clock.now(),
            client_token=client_token,
            window=self.redrive_window,
        )
        return redriven

    async def redrive_status(self, record: ExecutionRecord) -> tuple[str, str | None]:
        """AWS's (redriveStatus, redriveStatusReason) of `record` now (reason None: redrivable)."""
        machine_type = await self.run_db(self.store.machine_type_of, record)
        return redrive_status(
            record, self.clock.now(), machine_type=machine_type, window=self.redrive_window
        )

    # -- stop ----------------------------------------------------------------
    async def stop(
        self,
        execution: str | ExecutionRecord,
        *,
        error: str | None = None,
        cause: str | None = None,
    ) -> ExecutionRecord:
        """Record a stop request for a running execution; returns its record as it is now.

        The worker that holds the execution aborts it (cancelling a running
        task); a suspended one is due at once, so the next claim aborts it.
        Its running Map Runs are ABORTED with it: pending children never
        start, running ones are asked to stop.
        Raises ExecutionDoesNotExist, AmbiguousExecution and
        ExecutionNotRunning.
        """
        record = await self.describe(execution)
        await self.run_db(
            self.store.request_stop,
            record.execution_id,
            error=error,
            cause=cause,
            now=self.clock.now(),
        )
        # Its Distributed Maps' children stop with it (store/map_runs.py).
        await self.run_db(self.store.abort_map_runs, record.execution_id, now=self.clock.now())
        return await self.describe(record.execution_id)

    # -- read ----------------------------------------------------------------
    async def describe(self, execution: str | ExecutionRecord) -> ExecutionRecord:
        """The execution by its executionArn or (when unambiguous) its name.

        Raises ExecutionDoesNotExist and AmbiguousExecution.
        """
        ref = execution.execution_id if isinstance(execution, ExecutionRecord) else execution
        return await self.run_db(self.store.get_execution, ref)

    async def history(self, execution: str | ExecutionRecord) -> list[Event]:
        """The execution's history events in order (see `describe` for what it raises)."""
        record = await self.describe(execution)
        return await self.run_db(self.store.history, record.execution_id)

    async def history_pages(
        self, execution: str | ExecutionRecord, *, reverse: bool = False, page_size: int = 1000
    ) -> AsyncIterator[list[Event]]:
        """The execution's history one page at a time (newest first with `reverse`).

        Each page is one keyset read of the store (`Store.history_page`), so
        a reader holds one page whatever the history's length. Raises what
        `describe` raises.
        """
        record = await self.describe(execution)
        after: int | None = None
        while True:
            page = await self.run_db(
                self.store.history_page,
                record.execution_id,
                after=after,
                limit=page_size,
                reverse=reverse,
            )
            if page:
                yield page
            if len(page) < page_size:
                return
            after = page[-1].event_id

    async def list_executions(
        self,
        *,
        machine: str | None = None,
        status: str | None = None,
        max_results: int = 100,
        next_token: str | None = None,
        redrive_filter: str | None = None,
    ) -> tuple[list[ExecutionRecord], str | None]:
        """One page of executions, newest first, and the token of the next page (or None).

        As AWS's ListExecutions: `max_results` is 1 to 1000; pass the
        returned token back with the same `machine` and `status` to get the
        next page; every execution appears once across the pages.
        `redrive_filter` REDRIVEN or NOT_REDRIVEN keeps only executions
        redriven at least once, or never. Raises ValueError for a
        `max_results` out of range, an unknown `status` or `redrive_filter`,
        InvalidNextToken for a token this query did not hand out, and
        StateMachineDoesNotExist for an unknown `machine`.
        """
        if not 1 <= max_results <= MAX_LIST_RESULTS:
            raise ValueError(f"max_results must be 1 to {MAX_LIST_RESULTS}, not {max_results}")
        if status is not None:
            status = ExecutionStatus(status).value
        if redrive_filter not in (None, "REDRIVEN", "NOT_REDRIVEN"):
            raise ValueError(
                f"redrive_filter must be REDRIVEN or NOT_REDRIVEN, not {redrive_filter}"
            )
        after = None
        if next_token is not None:
            token = _decode_token(next_token)
            if (token.machine, token.status, token.redrive) != (machine, status, redrive_filter):
                raise InvalidNextToken(
                    "Invalid Token: the nextToken belongs to a listing with other filters"
                )
            after = (token.start_date, token.execution_id)
        # One more than asked says whether a next page exists.
        machine_name, qualifier = (None, None) if machine is None else split_reference(machine)
        rows = await self.run_db(
            self.store.list_executions,
            machine=machine_name,
            published_version=int(qualifier) if qualifier and qualifier.isdigit() else None,
            alias=qualifier if qualifier and not qualifier.isdigit() else None,
            status=status,
            limit=max_results + 1,
            after=after,
            redriven=None if redrive_filter is None else redrive_filter == "REDRIVEN",
        )
        page = rows[:max_results]
        if len(rows) <= max_results:
            return page, None
        last = page[-1]
        return page, _encode_token(
            _PageToken(last.start_date, last.execution_id, machine, status, redrive_filter)
        )


def _early_start(taker: StartTaker | None) -> EarlyStart | None:
    """An `EarlyStart` for a start handed to `taker` (asyncio); else None."""
    if taker is None:
        return None
    try:
        return EarlyStart(taker, asyncio.get_running_loop())
    except RuntimeError:  # trio
        return None


def _encode_input(input: Any) -> str:
    """The execution input as JSON text; InvalidExecutionInput when it is not JSON or too big.

    Not JSON includes a string holding a lone surrogate and nesting deeper
    than `MAX_JSON_DEPTH` (see `statemachine.jsontext`).
    """
    value = {} if input is NO_INPUT else input
    problem = json_problem(value)
    if problem is not None:
        raise InvalidExecutionInput(f"Invalid execution input: {problem}")
    try:
        payload = msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidExecutionInput(f"Invalid execution input: {exc}") from None
    size = len(payload.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidExecutionInput(
            f"Invalid execution input: {size} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    return payload


def _encode_token(token: _PageToken) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(token)).decode().rstrip("=")


def _decode_token(text: str) -> _PageToken:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        token = msgspec.json.decode(raw, type=_PageToken)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidNextToken(f"Invalid Token: '{text[:40]}' is not a nextToken") from None
    if token.start_date.tzinfo is None:
        raise InvalidNextToken(f"Invalid Token: '{text[:40]}' is not a nextToken")
    return token
