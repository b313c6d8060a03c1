"""Database fixtures shared by every test: a fresh empty database per test, on both stores.

`db_url` runs a test once on SQLite (a file in the test's tmp_path) and once
on PostgreSQL (a database created for the test on the session's server and
dropped after it); `sqlite_url` and `postgres_url` give one backend only.
The PostgreSQL server comes from tests/engine/pg.py: $STEPWISE_TEST_DATABASE_URL
if set, else a private server started once per session — once per xdist
worker, since the suite runs in parallel (pyproject's addopts) and each
worker is a session of its own. A server that cannot start fails the tests
that need it; it never skips them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import pg


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg.PostgresServer]:
    """The session's PostgreSQL server (started on first use, stopped at the end)."""
    try:
        server = pg.server()
    except Exception as exc:
        pytest.fail(f"PostgreSQL is required and could not start: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: pg.PostgresServer) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh, empty PostgreSQL database, dropped after the test."""
    url, name = pg.fresh_database_url()
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL of a fresh SQLite file in the test's tmp_path."""
    return f"sqlite:///{tmp_path / 'stepwise.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh empty database URL; the test runs once per store."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two fresh empty databases of one kind (the test's indirect parameter: sqlite or postgres).

    For the fast/careful comparisons: (for the fast path, for the careful path).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fast.db'}", f"sqlite:///{tmp_path / 'careful.db'}"
        return
    request.getfixturevalue("postgres_server")
    (fast, fast_name), (careful, careful_name) = pg.fresh_database_url(), pg.fresh_database_url()
    yield fast, careful
    for name in (fast_name, careful_name):
        pg.server().drop_database(name)
