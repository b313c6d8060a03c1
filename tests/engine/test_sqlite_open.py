"""Many processes opening one brand-new SQLite file at once all get a working store.

Switching a fresh file to WAL takes an exclusive lock that SQLite may refuse
without waiting; the store retries it, so workers started together on a new
embedded database never fail with "database is locked".
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.store import Store
from engine.store.schema import SCHEMA_VERSION


def test_simultaneous_opens_of_a_fresh_file_all_succeed(tmp_path: Path) -> None:
    for round_number in range(25):
        url = f"sqlite:///{tmp_path / f'fresh-{round_number}.db'}"
        barrier = threading.Barrier(6)

        def open_and_migrate(_: int, url: str = url, barrier: threading.Barrier = barrier) -> int:
            barrier.wait(timeout=60)
            store = Store(url)
            try:
                return store.schema_version()
            finally:
                store.close()

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(open_and_migrate, range(6))) == [SCHEMA_VERSION] * 6
