"""A start's walk begun while its transaction is still in flight, and the gate every write waits at.

A start handed to this process's worker (engine/handoff.py) used to begin
its walk only once the start's commit answered, although everything up to
the walk's first checkpoint is computed in memory. On the loop's start
path the machine is resolved before the write is sent (`StartRequest.prepare`
sees it), so the execution the start will create is known then: the walk
begins at once and runs alongside the start's round trip (a cold W2: the
Map's set-up and its 100 iterations up to their scheduling checkpoint,
benchmarks/PROFILE.md s19d).

Checkpoint before effect still holds, one step earlier: nothing of such a
walk leaves the process before the start is durable. Its `StartGate` is
waited at by every checkpoint of the activation and by every store call
its states make (`gated_services`: `run_db` and `commit`, the walk's only
ways to the store); a Task's handler runs only after its scheduling
checkpoint, so after the gate. When the start's answer comes, the gate
opens if the start created exactly the execution the walk runs (the same
record and machine version); otherwise (an error, an outcome unknown, a
machine revised between the read and the write) the walk is abandoned:
its run is cancelled, whatever waits at the gate raises `StartNotDurable`,
and nothing it computed is written — a start that failed leaves no walk
running and no history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import anyio

from engine.errors import LeaseLost
from engine.store import Checkpoint, LoadedExecution
from engine.store.records import Event
from engine.store.startplan import Resolved, Resolver, StartRequest, plan_start
from engine.walk import Services

__all__ = ["StartGate", "StartNotDurable", "gated_services", "planned_execution"]


class StartNotDurable(LeaseLost):
    """The start an early walk ran ahead of did not create its execution: nothing may be written.

    A LeaseLost: the worker holds no lease on a row that does not exist
    (or, after a machine's revision, is another walk's to run).
    """


class StartGate:
    """Whether the start of an early walk is durable: pending, then open or refused, once."""

    __slots__ = ("_settled", "durable", "ended", "on_open", "release_until", "scope", "waits")

    def __init__(self) -> None:
        self._settled = anyio.Event()
        self.durable = False
        # Called once when the gate opens: what counts the run as handed
        # over (a claim's telemetry), only once its start is known written.
        self.on_open: Callable[[], None] | None = None
        # The run's cancel scope (set by the worker that runs it), and whether
        # that run has ended (before the gate settled, it wrote nothing).
        self.scope: anyio.CancelScope | None = None
        self.ended = False
        # Writes (checkpoints, store calls) that waited here for the answer.
        self.waits = 0
        # Refused with an outcome that may have committed the start (leased
        # to this worker until then): the run releases that lease as it ends.
        self.release_until: datetime | None = None

    @property
    def settled(self) -> bool:
        return self._settled.is_set()

    @property
    def refused(self) -> bool:
        return self._settled.is_set() and not self.durable

    def open(self) -> None:
        """The start committed the execution the walk runs: its writes may go."""
        self.durable = True
        self._settled.set()
        on_open, self.on_open = self.on_open, None
        if on_open is not None:
            on_open()

    def refuse(self, release_until: datetime | None = None) -> None:
        """The walk must write nothing: its run is cancelled.

        `release_until`: the start may have committed the execution leased
        to this worker until then; the run releases that lease as it ends
        (due now, for a claim to run it as any other work).
        """
        self.release_until = release_until
        self._settled.set()
        if self.scope is not None:
            self.scope.cancel()

    async def passed(self) -> None:
        """Return once the start is durable; raises StartNotDurable when it was refused."""
        if not self._settled.is_set():
            self.waits += 1
            await self._settled.wait()
        if not self.durable:
            raise StartNotDurable("the start this walk ran ahead of created no execution for it")


def gated_services(services: Services, gate: StartGate) -> Services:
    """`services` whose store calls (`run_db`) and commits (`commit`) wait for `gate` first."""
    run_db = services.run_db

    async def gated_run_db(call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        await gate.passed()
        return await run_db(call, *args, **kwargs)

    fields = {f.name: getattr(services, f.name) for f in dataclasses.fields(Services)}
    fields["run_db"] = gated_run_db
    return _GatedServices(**fields, gate=gate)


@dataclass(frozen=True)
class _GatedServices(Services):
    """Services whose `commit` waits at the gate (its `run_db` is the gated one)."""

    gate: StartGate | None = None

    async def commit(self, checkpoint: Checkpoint, what: str) -> None:
        if self.gate is not None:
            await self.gate.passed()
        await super().commit(checkpoint, what)


class _Known:
    """A resolver that answers with the machine a start's `prepare` was given."""

    def __init__(self, resolved: Resolved) -> None:
        self._resolved = resolved

    def resolve(self, name: str, qualifier: str | None, draw: Callable[[], float]) -> Resolved:
        return self._resolved


def planned_execution(
    request: StartRequest, resolved: Resolved, execution_id: str, first: Event
) -> LoadedExecution:
    """What the start of `request`, resolved to `resolved`, creates: its record and empty journal.

    Built by the store's own planning (`plan_start`), so it equals the
    record the start answers with when the start created it.
    """
    known = dataclasses.replace(request, prepare=lambda _resolved: (execution_id, first))
    planned = plan_start(0, known, cast(Resolver, _Known(resolved)))
    return LoadedExecution(
        record=planned.record,
        machine=planned.machine,
        journal={},
        last_event_id=planned.record.last_event_id,
    )
