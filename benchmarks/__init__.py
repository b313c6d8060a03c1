"""Benchmarks: Stepwise's speed against the database's own INSERT+COMMIT pace and against its peers.

`benchmarks.run` is the command (``python benchmarks/run.py --help``);
`benchmarks.workloads` holds the workloads W1, W1c, W2, W3 and the ceiling;
`benchmarks.pgserver` starts the durable PostgreSQL they run on;
`benchmarks.peers` (with `peer_dbos.py` and `peer_restate.py`, which run in
the peers' own virtual environments) measures DBOS Transact and Restate;
`benchmarks.startup` times whole `stepwise` commands; `benchmarks.scaling`
runs N worker processes on one PostgreSQL (`docs/SCALING.md`);
`benchmarks.table` runs what the README's table needs and prints the table.
"""

__all__: list[str] = []
