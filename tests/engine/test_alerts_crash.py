"""No committed status change is left unannounced: a worker SIGKILLed mid-delivery.

On PostgreSQL, a worker runs an execution to FAILED (the commit writes the
alert's outbox row) and starts delivering it to a receiver that accepts the
connection but never answers; the worker is SIGKILLed there. A second
worker delivers it once the first one's hold expires: the receiver gets
the alert, with the webhook-id the outbox row fixed, and the delivery is
recorded DELIVERED.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio

from engine import Engine
from engine.alerts import webhook_id
from engine.store import Store
from engine.store.schema import alert_deliveries

REPO = Path(__file__).resolve().parents[2]
FAIL = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom"}}}


def worker(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--db", url, "--lease-seconds", "1"],
        cwd=REPO,
        env={**os.environ, "STEPWISE_DATABASE_URL": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_sigkill_between_commit_and_delivery_still_delivers(postgres_url: str) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    # Listening, but not answering yet: the first worker's attempt hangs here.
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"

    async def setup() -> None:
        async with Engine(postgres_url, worker=False) as engine:
            await engine.create_state_machine("breaks", FAIL)
            await engine.alerts.create("pager", statuses=["FAILED"], webhook=url)
            await engine.start("breaks", {}, name="doomed")

    anyio.run(setup)
    store = Store(postgres_url)
    serving = False
    first = worker(postgres_url)
    try:
        deadline = time.monotonic() + 120
        while True:  # the outbox row is committed and the first worker holds it
            with store._read() as conn:  # the lease owner is not in the record
                row = conn.execute(alert_deliveries.select()).first()
            if row is not None and row.lease_owner is not None and row.attempts == 0:
                break
            assert time.monotonic() < deadline, "the first worker never claimed the delivery"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        # Answer from now on (the dead worker's connection is answered to no one).
        threading.Thread(target=server.serve_forever, daemon=True).start()
        serving = True
        second = worker(postgres_url)
        try:
            while not received:
                assert time.monotonic() < deadline, "the alert was never delivered"
                time.sleep(0.2)
            delivery = store.list_deliveries()[0]
            while store.get_delivery(delivery.delivery_id).state != "DELIVERED":
                assert time.monotonic() < deadline, "the delivery was never recorded"
                time.sleep(0.2)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=60)
        ids = {headers["webhook-id"] for headers, _ in received}
        assert ids == {webhook_id(delivery.delivery_id)}
        assert json.loads(received[0][1])["detail"]["name"] == "doomed"
    finally:
        if first.poll() is None:
            first.kill()
        if serving:
            server.shutdown()
        server.server_close()
        store.close()
