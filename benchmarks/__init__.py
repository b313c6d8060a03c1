"""Benchmarks: Stepwise's throughput measured against the database's own INSERT+COMMIT pace.

`benchmarks.run` is the command (``python benchmarks/run.py --help``);
`benchmarks.workloads` holds the workloads W1, W1c, W2, W3 and the ceiling.
"""

__all__: list[str] = []
