"""The PostgreSQL server the benchmarks start: durable by default, its settings reported.

Every figure on PostgreSQL is measured on a server that keeps PostgreSQL's
own defaults for durability — `fsync=on`, `synchronous_commit=on`,
`full_page_writes=on` — so a commit waits for its WAL flush as it would in
production. (The test suite's throwaway server in `tests/engine/pg.py`
turns all three off to run faster; a benchmark on it flatters every figure
and hides the commit path.) `start(fsync=False)` still exists for
`run.py --fsync-off`, and every line printed from such a run says
`fsync=off`. `settings(admin_url)` reads what a server really runs with, so
the SERVER line reports the server's word, not ours.
"""

from __future__ import annotations

import psycopg

from tests.engine.pg import PostgresServer, start_server

__all__ = ["REPORTED_SETTINGS", "format_server", "settings", "start"]

REPORTED_SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes")


def start(*, fsync: bool = True, max_connections: int = 200) -> PostgresServer:
    """Start a private PostgreSQL on 127.0.0.1 and return it (stop() removes its files).

    With `fsync` (the default) the durability settings are PostgreSQL's
    defaults; without it fsync, synchronous_commit and full_page_writes are
    off, as on the test suite's server. Raises RuntimeError with
    PostgreSQL's own words when it cannot start.
    """
    return start_server(
        durable=fsync,
        max_connections=max_connections,
        shared_buffers="128MB",
        prefix="stepwise-bench-pg-",
    )


def settings(admin_url: str) -> dict[str, str]:
    """The server's own values of REPORTED_SETTINGS (what SHOW says)."""
    url = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in REPORTED_SETTINGS
        }


def format_server(values: dict[str, str]) -> str:
    """The SERVER line: one key=value per reported setting, the version's first word."""
    fields = {**values, "server_version": values.get("server_version", "?").split()[0]}
    return "SERVER backend=postgres " + " ".join(f"{k}={fields[k]}" for k in REPORTED_SETTINGS)
