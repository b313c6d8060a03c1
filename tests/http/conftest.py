"""One `stepwise serve` subprocess per module and store, shared by that module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import pg
from tests.http.support import Server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A running server with a worker on a fresh database (SQLite file or PostgreSQL)."""
    folder = tmp_path_factory.mktemp(f"serve-{request.param}")
    tokens = folder / "tokens.txt"
    tokens.touch()
    dropped: str | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'stepwise.db'}"
    else:
        postgres = request.getfixturevalue("postgres_server")
        url, dropped = pg.fresh_database_url()
    instance = Server(
        url,
        folder / "server.log",
        "--activities",
        "tests.http.handlers",
        "--activity-poll-seconds",
        "1",
        env={"STEPWISE_TEST_TOKENS": str(tokens)},
    )
    instance.tokens = tokens  # type: ignore[attr-defined]
    instance.start()
    yield instance
    instance.stop()
    # Whatever the tests sent, no traceback (or SQL) reached the log at INFO.
    log = (folder / "server.log").read_text()
    assert "Traceback" not in log
    assert "SELECT" not in log
    if dropped is not None:
        postgres.drop_database(dropped)


def read_tokens(server: Server) -> list[str]:
    path: Path = server.tokens  # type: ignore[attr-defined]
    return [line for line in path.read_text().splitlines() if line]
