"""The benchmark's Task handler for `stepwise worker --activities benchmarks.bench_activities`.

Registers `increment` (``{"v": n}`` → ``{"v": n + 1}``, the handler every
workload uses) under the workloads' Resource name in the default registry,
so worker subprocesses run the same Tasks as the in-process workloads.
"""

from __future__ import annotations

from activities import activity
from benchmarks.workloads import RESOURCE, increment

__all__ = ["increment"]

activity(RESOURCE)(increment)
