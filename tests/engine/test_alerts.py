"""Alerts: the outbox row commits with the status change; a real receiver gets it, signed.

A real HTTP server on 127.0.0.1 answers 500 to the first attempts, then
204: every failed execution's alert still arrives, with a valid Standard
Webhooks signature, an EventBridge-shaped body and one stable webhook-id
across the retries. Both stores.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from engine import Engine
from engine.alerts import InvalidAlert, webhook_id
from engine.store import Store
from engine.store.outbox import DeliveryState
from engine.store.schema import alert_deliveries

SECRET = "whsec_" + base64.b64encode(b"a very secret key, 32 bytes long").decode()
FAIL = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "it broke"}}}
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


class Receiver:
    """Answers `failures` requests with 500, then 204; keeps what it got."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = len(receiver.received) <= receiver.failures
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = (
            f"http://127.0.0.1:{self.server.server_address[1]}/hooks/stepwise?token=t0ps3cret"
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(failures=3)
    yield server
    server.server.shutdown()


def verify(headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig == f"v1,{expected}" for sig in headers["webhook-signature"].split(" "))


async def until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not await predicate():
        assert time.monotonic() < deadline, what
        await anyio.sleep(0.05)


def test_failed_executions_alert_a_flaky_receiver_once_each(
    db_url: str, receiver: Receiver
) -> None:
    async def main() -> None:
        async with Engine(db_url) as engine:
            assert engine.alert_deliverer is not None
            engine.alert_deliverer.retry_base_seconds = 0.05
            engine.alert_deliverer.poll_seconds = 0.05
            await engine.create_state_machine("breaks", FAIL)
            await engine.create_state_machine("works", PASS)
            await engine.alerts.create(
                "pager",
                statuses=["FAILED", "TIMED_OUT"],
                webhook=receiver.url,
                secret=SECRET,
                headers={"x-team": "data"},
            )
            failed = [await engine.start("breaks", {"n": n}, name=f"b{n}") for n in range(3)]
            await engine.start("works", {}, name="ok")
            for record in failed:
                await engine.wait(record, timeout=60)
            await engine.wait("ok", timeout=60)

            async def all_delivered() -> bool:
                done = await engine.alerts.deliveries()
                return len(done) == 3 and all(d.state == DeliveryState.DELIVERED for d in done)

            await until(all_delivered, "every alert delivered")
            deliveries = await engine.alerts.deliveries()
            assert sum(d.attempts for d in deliveries) == 3 + 3  # three 500s were retried

            ok = [(h, b) for h, b in receiver.received if h.get("x-team") == "data"]
            assert all(verify(h, b) for h, b in ok)
            # One webhook-id per status change, stable across its retries.
            ids = {h["webhook-id"] for h, _ in ok}
            assert ids == {webhook_id(d.delivery_id) for d in deliveries}
            events = {json.loads(b)["detail"]["name"]: json.loads(b) for _, b in ok}
            assert set(events) == {"b0", "b1", "b2"}
            event = events["b0"]
            assert event["detail-type"] == "Step Functions Execution Status Change"
            assert event["source"] == "aws.states"
            assert event["resources"] == [failed[0].execution_id]
            detail = event["detail"]
            assert detail["status"] == "FAILED"
            assert (detail["error"], detail["cause"]) == ("Boom", "it broke")
            assert detail["input"] is None and detail["inputDetails"] == {"included": False}
            assert isinstance(detail["startDate"], int) and isinstance(detail["stopDate"], int)

            # Replay: delivered again with the same id, so the receiver can deduplicate.
            before = len(receiver.received)
            await engine.alerts.replay(deliveries[0].delivery_id)

            async def replayed() -> bool:
                return len(receiver.received) > before

            await until(replayed, "the replayed delivery arrived")
            assert receiver.received[-1][0]["webhook-id"] == webhook_id(deliveries[0].delivery_id)
            # The URL's token and the secret never reach the record of attempts.
            for delivery in await engine.alerts.deliveries():
                assert "t0ps3cret" not in (delivery.last_error or "")

    anyio.run(main)


def test_targets_are_checked_and_alerts_test_delivers_a_sample(sqlite_url: str) -> None:
    gone = Receiver(failures=0)

    async def main() -> None:
        async with Engine(sqlite_url) as engine:
            assert engine.alert_deliverer is not None
            engine.alert_deliverer.poll_seconds = 0.05
            for bad in (
                "http://169.254.169.254/latest/meta-data",
                "http://[fe80::1]/x",
                "ftp://example.com/x",
                "http://10.1.2.3/hook",
            ):
                with pytest.raises(InvalidAlert):
                    await engine.alerts.create("bad", statuses=["FAILED"], webhook=bad)
            with pytest.raises(InvalidAlert):
                await engine.alerts.create("bad", statuses=["RUNNING"], webhook=gone.url)
            await engine.alerts.create("checked", statuses=["FAILED"], webhook=gone.url)
            delivery = await engine.alerts.test("checked")

            async def delivered() -> bool:
                d = engine.store.get_delivery(delivery.delivery_id)
                return d.state == DeliveryState.DELIVERED

            await until(delivered, "the test delivery arrived")
            assert json.loads(gone.received[0][1])["detail"]["status"] == "FAILED"

    try:
        anyio.run(main)
    finally:
        gone.server.shutdown()


def test_a_redriven_execution_that_fails_again_is_announced_again(
    db_url: str, receiver: Receiver
) -> None:
    """Each closing of the execution is its own status change: one delivery per redrive."""

    async def main() -> None:
        async with Engine(db_url) as engine:
            assert engine.alert_deliverer is not None
            engine.alert_deliverer.retry_base_seconds = 0.05
            engine.alert_deliverer.poll_seconds = 0.05
            await engine.create_state_machine("breaks", FAIL)
            await engine.alerts.create("pager", statuses=["FAILED"], webhook=receiver.url)
            record = await engine.start("breaks", {}, name="again")
            await engine.wait(record, timeout=60)
            await engine.redrive(record)
            redriven = await engine.wait(record, timeout=60)
            assert (redriven.status, redriven.redrive_count) == ("FAILED", 1)

            async def both_delivered() -> bool:
                done = await engine.alerts.deliveries()
                return len(done) == 2 and all(d.state == DeliveryState.DELIVERED for d in done)

            await until(both_delivered, "the first failure and the redriven one both delivered")
            ids = sorted(d.delivery_id for d in await engine.alerts.deliveries())
            assert ids == [
                f"{record.execution_id}|pager|FAILED",
                f"{record.execution_id}|pager|FAILED|r1",
            ]

    anyio.run(main)


def test_a_delivery_connects_to_the_address_it_checked(
    sqlite_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers the receiver's address once, then another one.

    The deliverer resolves the webhook's host once, checks every address and
    connects to the checked one; a second lookup (which would go to
    127.0.0.2, where nothing listens) never happens.
    """
    receiver.failures = 0
    port = receiver.server.server_address[1]
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example":
            return real(next(answers, "127.0.0.2"), *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)

    async def main() -> None:
        async with Engine(sqlite_url) as engine:
            assert engine.alert_deliverer is not None
            engine.alert_deliverer.poll_seconds = 0.05
            url = f"http://rebind.example:{port}/hook"
            await engine.alerts.create("pinned", statuses=["FAILED"], webhook=url)
            delivery = await engine.alerts.test("pinned")

            async def settled() -> bool:
                d = engine.store.get_delivery(delivery.delivery_id)
                return d.state == DeliveryState.DELIVERED or d.attempts > 0

            await until(settled, "the delivery was tried")
            assert engine.store.get_delivery(delivery.delivery_id).state == DeliveryState.DELIVERED

    anyio.run(main)
    assert len(receiver.received) == 1
    assert receiver.received[0][0]["host"] == f"rebind.example:{port}"


def test_a_pending_delivery_without_a_time_does_not_hide_a_due_one(db_url: str) -> None:
    # The deliverer claims only once `next_delivery_due` has come: a PENDING
    # row no claim takes (no attempt time; SQLite sorts NULL first) must not
    # hide the due one, or no delivery would ever go out again.
    store = Store(db_url)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        store.enqueue_delivery("due", "a", "e", "FAILED", now - timedelta(seconds=5))
        store.enqueue_delivery("null", "a", "e", "FAILED", now)
        with store._write() as conn:
            conn.execute(
                sa.update(alert_deliveries)
                .where(alert_deliveries.c.delivery_id == "null")
                .values(next_attempt_at=None)
            )
        assert store.next_delivery_due() == now - timedelta(seconds=5)
    finally:
        store.close()
