"""Every AWS-recorded case in conformance/cases/local, run through the engine end to end.

Each case runs `Engine.run` on a real database — a SQLite file and a
PostgreSQL database — under trio with a mocked clock, so Waits and
timeouts of real minutes take milliseconds; the status, output, error and
cause must equal what AWS recorded, and so must the history's event types
where AWS's history was recorded (`aws_history`), save the known gaps
listed in support.py — which must still differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from trio.testing import MockClock

from engine import Engine, LoopClock
from tests.conformance.support import (
    KNOWN_HISTORY_GAPS,
    case_files,
    check_history,
    load_case,
    mismatches,
)
from tests.engine import pg

CASES = case_files("local")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def conformance_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('conformance') / 'cases.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    url, name = pg.fresh_database_url("stepwise_conformance")
    yield url
    server.drop_database(name)


@pytest.mark.parametrize("path", CASES, ids=[p.stem[:120] for p in CASES])
def test_local_case(path: Path, conformance_db: str) -> None:
    case = load_case(path)

    async def main() -> tuple[str, str | None, str | None, str | None, list[str]]:
        async with Engine(
            conformance_db, clock=LoopClock(), worker=False, inline_store=True
        ) as engine:
            record = await engine.run(case["definition"], case["input"])
            events = await engine.history(record)
            types = [event.type for event in events]
            return record.status, record.output, record.error, record.cause, types

    status, output, error, cause, types = anyio.run(
        main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )
    assert mismatches(case, status, output, error, cause) == []
    check_history(case, types)


def test_every_recorded_history_is_checked() -> None:
    """No gaps are left: all 195 recorded histories, the 9 with a Map Run among them, must match."""
    cases = [load_case(path) for path in case_files()]
    with_map_run = {c["id"] for c in cases if "MapRunStarted" in c.get("aws_history", [])}
    assert len(with_map_run) == 9
    assert KNOWN_HISTORY_GAPS == {}
    assert sum("aws_history" in c for c in cases) == 195
