"""Signing in to the web view of a server run with ``--auth``, in a real Chromium.

Without a session every page sends the visitor to the sign-in form; the
access key and secret of ``--auth`` (the same keys SigV4 checks) open a
session whose cookie is HttpOnly and SameSite=Strict; a wrong secret does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http.support import ACCESS_KEY, SECRET_KEY, Server


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder: Path = tmp_path_factory.mktemp("web-auth")
    keys = folder / "keys.txt"
    keys.write_text(f"{ACCESS_KEY}:{SECRET_KEY}\n")
    instance = Server(
        f"sqlite:///{folder / 'stepwise.db'}", folder / "server.log", "--auth", str(keys)
    )
    instance.start()
    yield instance
    instance.stop()
    assert SECRET_KEY not in (folder / "server.log").read_text()


def test_pages_need_a_sign_in_with_an_access_key(guarded: Server, page: Any) -> None:
    client = guarded.client()
    machine = client.create_state_machine(
        name="guarded",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/x",
    )["stateMachineArn"]
    client.start_execution(stateMachineArn=machine, name="guarded-1", input="{}")

    page.goto(guarded.url + "/ui/machines")
    assert "/ui/sign-in" in page.url
    assert page.locator("table").count() == 0

    page.fill('input[name="accessKeyId"]', ACCESS_KEY)
    page.fill('input[name="secretAccessKey"]', "not-the-secret")
    page.click('form.sign-in button[type="submit"]')
    assert page.locator("p.error").inner_text() == "Unknown access key or wrong secret."
    assert page.context.cookies() == []

    page.fill('input[name="accessKeyId"]', ACCESS_KEY)
    page.fill('input[name="secretAccessKey"]', SECRET_KEY)
    page.click('form.sign-in button[type="submit"]')
    page.wait_for_url("**/ui/machines")
    assert page.locator('a:text-is("guarded")').count() == 1
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert SECRET_KEY not in cookie["value"]

    page.goto(guarded.url + "/")
    page.wait_for_selector('table.executions a:text-is("guarded-1")')
    # A forged cookie is no session.
    page.context.clear_cookies()
    page.context.add_cookies(
        [{**cookie, "value": cookie["value"][:-4] + "0000"}]  # type: ignore[list-item]
    )
    page.goto(guarded.url + "/")
    assert "/ui/sign-in" in page.url

    # Signing out ends the session.
    page.context.clear_cookies()
    page.context.add_cookies([cookie])  # type: ignore[list-item]
    page.goto(guarded.url + "/")
    page.click("header form button")
    page.wait_for_url("**/ui/sign-in")
    assert page.context.cookies() == []
