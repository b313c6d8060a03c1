"""The web view's Schedules and Triggers-and-alerts pages, in headless Chromium, on both stores.

A user follows the navigation to a schedule, sees its next fire times and
its hostile input as text, clicks Trigger now and lands on the run it
started; on the alerts page a webhook trigger and an alert show without
their secrets, and a dead delivery (its receiver answered 410 Gone) is
replayed with its button and then delivered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest

from engine.runner import machine_arn
from tests.http.support import ROOT, Server

HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>"
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


def stepwise(server: Server, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--db", server.db_url, *args],
        cwd=ROOT,
        env={**os.environ, "STEPWISE_DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _machine(server: Server, name: str) -> None:
    server.client().create_state_machine(
        name=name, definition=json.dumps(PASS), roleArn="arn:aws:iam::123456789012:role/x"
    )


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 410 Gone first, then 200."""

    def __init__(self) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.hits += 1
                self.send_response(410 if outer.hits == 1 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=t0ps3cret"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    instance = Receiver()
    yield instance
    instance.close()


def _wait(condition: Any, what: str, deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_schedules_page_shows_next_fires_hostile_input_as_text_and_triggers_now(
    server: Server, page: Any
) -> None:
    _machine(server, "nightly-job")
    stepwise(
        server,
        "schedules",
        "create",
        "nightly",
        "--machine",
        "nightly-job",
        "--cron",
        "0 2 * * *",
        "--timezone",
        "Europe/Paris",
        "--input",
        json.dumps({"note": HOSTILE}),
    )
    page.goto(server.url + "/")
    page.click('nav a:text-is("Schedules")')
    section = page.locator('section[data-schedule="nightly"]')
    shown = section.inner_text()
    assert "0 2 * * *" in shown and "Europe/Paris" in shown and "active" in shown
    fires = section.locator("ol.fires li").all_inner_texts()
    assert len(fires) == 5 and all("02:00:00" in fire or "01:00:00" in fire for fire in fires)
    # The hostile input shows as text and never runs.
    assert HOSTILE in shown
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img").count() == 0

    section.locator('button:text-is("Trigger now")').click()
    page.wait_for_url("**/ui/executions/**")
    page.wait_for_selector("#status")
    arn = machine_arn("nightly-job")
    runs = server.client().list_executions(stateMachineArn=arn)["executions"]
    assert len(runs) == 1
    assert page.url.endswith(":" + runs[0]["name"])

    page.goto(server.url + "/ui/schedules")
    row = page.locator('section[data-schedule="nightly"] tr:has-text("triggered")')
    assert row.count() == 1
    assert runs[0]["name"] in row.inner_text()


def test_alerts_page_hides_secrets_and_replays_a_dead_delivery(
    server: Server, page: Any, receiver: Receiver
) -> None:
    _machine(server, "hooked")
    created = stepwise(
        server, "triggers", "create", "inbound", "--machine", "hooked", "--webhook", "-o", "json"
    )
    stepwise(server, "alerts", "create", "ops", "--status", "failed", "--webhook", receiver.url)
    stepwise(server, "alerts", "test", "ops")
    # The deliverer tries it; 410 Gone dead-letters it at once.
    _wait(lambda: receiver.hits >= 1, "the first delivery attempt")

    page.goto(server.url + "/")
    page.click('nav a:text-is("Triggers and alerts")')
    dead = page.locator('table.deliveries tr[data-state="DEAD"]')

    def dead_shown() -> bool:
        page.reload()
        return bool(dead.count() == 1)

    _wait(dead_shown, "the dead delivery on the page")
    main = page.inner_text("main")
    assert "inbound" in main and "webhook" in main and "ops" in main
    assert "http://127.0.0.1:" in main
    # Never a secret, nor the webhook URL's path and query.
    assert "t0ps3cret" not in page.content() and "/hook" not in main
    for value in json.loads(created).values():
        if isinstance(value, str) and value.startswith("whsec_"):
            assert value not in page.content()
    assert "HTTP 410" in dead.inner_text()

    dead.locator('button:text-is("Replay")').click()
    page.wait_for_url("**/ui/alerts")
    # PENDING again (or already delivered and gone from the failed list).
    states = page.eval_on_selector_all(
        "table.deliveries tr[data-state]", "rows => rows.map(r => r.dataset.state)"
    )
    assert states in ([], ["PENDING"])
    _wait(lambda: receiver.hits >= 2, "the replayed delivery")
    listed = json.loads(stepwise(server, "alerts", "deliveries", "-o", "json"))
    assert "DELIVERED" in json.dumps(listed)
    page.reload()
    assert page.locator("table.deliveries tr[data-state]").count() == 0


def test_trigger_now_and_replay_refuse_a_missing_csrf_token(server: Server, page: Any) -> None:
    _machine(server, "guarded-job")
    # A rate schedule fires at once when created; starting it in 2099 leaves
    # "Trigger now" as the only way a run could appear.
    stepwise(
        server,
        "schedules",
        "create",
        "guarded",
        "--machine",
        "guarded-job",
        "--rate",
        "1 day",
        "--start-date",
        "2099-01-01T00:00:00",
    )
    page.goto(server.url + "/ui/schedules")
    action = page.get_attribute('section[data-schedule="guarded"] form', "action")
    assert page.request.post(server.url + action, form={"csrf": "forged"}).status == 403
    assert page.request.post(server.url + "/ui/alerts/replay", form={}).status == 403
    arn = machine_arn("guarded-job")
    assert server.client().list_executions(stateMachineArn=arn)["executions"] == []
