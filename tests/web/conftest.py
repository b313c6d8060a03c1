"""A real `stepwise serve` per store and a real headless Chromium driving it.

The browser is Debian's ``chromium`` driven by Playwright (never a browser
Playwright downloads). When it is missing the tests fail, they do not skip:
`.ci/run` installs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine import pg
from tests.http.support import Server

CHROMIUM = os.environ.get("STEPWISE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A running server with a worker and the web view, on a fresh database."""
    folder = tmp_path_factory.mktemp(f"web-{request.param}")
    dropped: str | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'stepwise.db'}"
    else:
        postgres = request.getfixturevalue("postgres_server")
        url, dropped = pg.fresh_database_url()
    instance = Server(url, folder / "server.log", "--activities", "tests.web.handlers")
    instance.start()
    yield instance
    instance.stop()
    log = (folder / "server.log").read_text()
    assert "Traceback" not in log
    # Payloads never reach the log (the hostile input is one the tests send).
    assert "<script>" not in log
    if dropped is not None:
        postgres.drop_database(dropped)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Debian's package), shared by one module's tests.

    Module-scoped, not session-scoped: Playwright's sync API keeps an event
    loop running in this thread until it stops, and later tests that run
    their own loop (the CLI's) must not meet it.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", pytrace=False
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; page errors fail the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(30_000)
    yield tab
    context.close()
    assert errors == []
