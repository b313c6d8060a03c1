"""Where a sync handler's thread hop spends its wall, timed inside a real W1 run.

``python benchmarks/hop_legs.py [--db ADMIN_URL] [--workload W1|W1i] [--execs N]``
runs the workload's body from `benchmarks/workloads.py` once (after one
warm-up execution) on a fresh PostgreSQL database — on the server at
``--db``, else on a durable throwaway server started for it — and prints
one JSON line: steps/s, process CPU and voluntary context switches a step
(all threads), the same per thread (``/proc/self/task``: the loop thread,
the handler threads), and for W1 each leg of the handler's hop, p50 and
p90 in µs over every hop of the run:

- ``submit_to_park``: the call handed to a thread → the loop parks in
  ``select`` (the thread cannot take the GIL before);
- ``park_to_start``: → the thread starts the call;
- ``call``: the handler itself;
- ``end_to_wake``: the call returns → the loop wakes from ``select``;
- ``wake_to_settle``: → the answer is settled on the loop;
- ``settle_to_resume``: → the waiting coroutine runs again;
- ``total``: submit → resumed.

It wraps the pool's and asyncio's internals (`HandlerThreads.run`, the
module's `_settle`, `EpollSelector.select`) for the one run, so it reads
any tree put first on ``PYTHONPATH`` (a `git archive` of another commit
with the same venv) — alternate trees run by run to compare them. Each
timestamp costs ~0.1 µs; the figures are for comparing, not absolute.
See PROFILE.md, s19b.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LEGS = (
    "submit_to_park",
    "park_to_start",
    "call",
    "end_to_wake",
    "wake_to_settle",
    "settle_to_resume",
    "total",
)


class Hop:
    """One hop's timestamps (ns): submit, start, end, settle, resume; the loop's parks and wakes."""

    __slots__ = ("end", "parks", "resume", "settle", "start", "submit", "wakes")

    def __init__(self) -> None:
        self.submit = self.start = self.end = self.settle = self.resume = 0
        self.parks: list[int] = []
        self.wakes: list[int] = []

    def legs(self) -> dict[str, int] | None:
        """Each leg's ns, or None for a hop whose loop never parked (its answer came first)."""
        park = next((t for t in self.parks if self.submit < t < self.start), 0)
        wake = next((t for t in self.wakes if t > self.end), 0)
        if not (park and wake and wake <= self.settle):
            return None
        return {
            "submit_to_park": park - self.submit,
            "park_to_start": self.start - park,
            "call": self.end - self.start,
            "end_to_wake": wake - self.end,
            "wake_to_settle": self.settle - wake,
            "settle_to_resume": self.resume - self.settle,
            "total": self.resume - self.submit,
        }


@contextmanager
def timing_hops() -> Iterator[list[Hop]]:
    """Wrap the hop's stages for the duration; yields the list each finished hop lands in."""
    import anyio.lowlevel

    from activities import handler_threads

    hops: list[Hop] = []
    current: list[Hop | None] = [None]
    now = time.perf_counter_ns
    settle = handler_threads._settle
    run = handler_threads.HandlerThreads.run
    select = selectors.EpollSelector.select

    def timed_settle(future: Any, ok: bool, value: Any) -> None:
        hop = getattr(future, "_hop", None)
        if hop is not None:
            hop.settle = now()
        settle(future, ok, value)

    async def timed_run(
        self: Any, fn: Callable[[], Any], loop: Any = None
    ) -> Any:  # HandlerThreads.run, timed
        await anyio.lowlevel.checkpoint_if_cancelled()
        hop = Hop()

        def call() -> Any:
            hop.start = now()
            try:
                return fn()
            finally:
                hop.end = now()

        hop.submit = now()
        thread_call = self.submit(call, loop)
        thread_call.future._hop = hop
        current[0] = hop
        try:
            return await thread_call.future
        finally:
            current[0] = None
            hop.resume = now()
            hops.append(hop)

    def timed_select(self: Any, timeout: float | None = None) -> Any:
        hop = current[0]
        if hop is not None:
            hop.parks.append(now())
        ready = select(self, timeout)
        if hop is not None:
            hop.wakes.append(now())
        return ready

    handler_threads._settle = timed_settle
    handler_threads.HandlerThreads.run = timed_run  # type: ignore[method-assign]
    selectors.EpollSelector.select = timed_select  # type: ignore[method-assign]
    try:
        yield hops
    finally:
        handler_threads._settle = settle
        handler_threads.HandlerThreads.run = run  # type: ignore[method-assign]
        selectors.EpollSelector.select = select  # type: ignore[method-assign]


def thread_counters() -> dict[str, list[int]]:
    """Per thread name (numbers dropped): [CPU ns, voluntary switches]; "process" for all."""
    names = {t.native_id: t.name.rstrip("0123456789 ") for t in threading.enumerate()}
    counters: dict[str, list[int]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            cpu = int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
            status = Path(f"/proc/self/task/{tid}/status").read_text()
        except OSError:
            continue  # ended while listed
        switches = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
        entry = counters.setdefault(names.get(int(tid), "other"), [0, 0])
        entry[0] += cpu
        entry[1] += switches
    usage = resource.getrusage(resource.RUSAGE_SELF)
    counters["process"] = [time.process_time_ns(), usage.ru_nvcsw]
    return counters


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000, 1)


def measure(workload: str, url: str, execs: int) -> dict[str, Any]:
    """Run `workload` on the empty database at `url`; its figures (see the module docstring)."""
    import anyio

    from benchmarks import workloads
    from engine import Engine

    body = workloads._ENGINE_WORKLOADS[workload]
    registry = workloads._registry(inline=workload in workloads.INLINE_WORKLOADS)

    async def main() -> dict[str, Any]:
        async with Engine(url, registry=registry, concurrency=workloads.CONCURRENCY) as engine:
            await body(engine, 1)  # warm: the machine, the threads, the connections
            with timing_hops() as hops:
                before = thread_counters()
                measurement = await body(engine, execs)
                after = thread_counters()
        steps = measurement.steps
        figures: dict[str, Any] = {
            "workload": workload,
            "steps_per_s": round(steps / measurement.wall_s, 1),
            "load": os.getloadavg()[0],
            "per_step": {
                name: {
                    "cpu_us": round((cpu - before.get(name, [0, 0])[0]) / 1000 / steps, 1),
                    "voluntary_switches": round((vcs - before.get(name, [0, 0])[1]) / steps, 2),
                }
                for name, (cpu, vcs) in after.items()
                if cpu > before.get(name, [0, 0])[0]
            },
        }
        legs = [timed for hop in hops if (timed := hop.legs()) is not None]
        if legs:
            figures["hops"] = {"timed": len(legs), "all": len(hops)}
            figures["legs_us"] = {
                leg: {
                    "p50": percentile([t[leg] for t in legs], 0.5),
                    "p90": percentile([t[leg] for t in legs], 0.9),
                }
                for leg in LEGS
            }
        return figures

    return anyio.run(main)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="an admin URL of a PostgreSQL server (else one is started)")
    parser.add_argument("--workload", choices=("W1", "W1i"), default="W1")
    parser.add_argument("--execs", type=int, default=200)
    args = parser.parse_args(argv)
    from benchmarks import pgserver
    from tests.engine.pg import PostgresServer

    started = None if args.db else pgserver.start()
    server = started or PostgresServer(args.db.replace("postgresql+psycopg://", "postgresql://"))
    name = f"stepwise_hop_legs_{os.getpid()}"
    url = server.create_database(name)
    try:
        print(json.dumps(measure(args.workload, url, args.execs)), flush=True)
    finally:
        server.drop_database(name)
        if started is not None:
            started.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
