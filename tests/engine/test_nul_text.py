"""A NUL character (U+0000) in an error name or cause is stored and read back exactly.

PostgreSQL's text cannot hold NUL; AWS's error names and causes can. The
payload codec stores payload text holding one as its JSON string, and the
columns kept in clear — an execution's error, a requested stop's error, a
delivery's last error — are escaped the same way (`escape_clear`). On both
stores: a Fail state, a handler's `ActivityError`, `SendTaskFailure`, a
stop, a redrive (its client token too), a Distributed Map child's failure and an alert's failed
delivery end as written — never `States.Runtime`, never an outage — and
describe, history and the alert's event give back the very text.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from typing import Any

import anyio
import pytest

from activities import ActivityContext, ActivityError, Registry
from engine import Engine
from engine.callbacks import send_task_failure
from engine.store.codec import PayloadCodec, escape_clear, generate_key, unescape_clear
from engine.store.outbox import DeliveryState
from engine.worker import outage_of
from tests.engine.test_distributed_map_children import processor_map

ERROR = "My\x00Error"
CAUSE = "the\x00cause"
FAIL = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": ERROR, "Cause": CAUSE}}}
RAISES = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "raises", "End": True}}}
ASKS = {
    "StartAt": "T",
    "States": {"T": {"Type": "Task", "Resource": "asks.waitForTaskToken", "End": True}},
}
WAITS = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}


def test_fail_state_handler_callback_and_stop_keep_a_nul_on_both_stores(db_url: str) -> None:
    tokens: list[str] = []
    asked = threading.Event()
    registry = Registry()

    def raises(value: Any) -> Any:
        raise ActivityError(ERROR, CAUSE)

    def asks(value: Any, context: ActivityContext) -> Any:
        assert context.task_token is not None
        tokens.append(context.task_token)
        asked.set()
        return None

    registry.register("raises", raises)
    registry.register("asks", asks)
    with Engine(db_url, registry=registry) as engine:
        for name, definition in [("fail", FAIL), ("raises", RAISES), ("asks", ASKS)]:
            engine.create_state_machine_sync(name, definition)
        engine.create_state_machine_sync("waits", WAITS)
        fail = engine.start_sync("fail", {})
        raised = engine.start_sync("raises", {})
        callback = engine.start_sync("asks", {})
        assert asked.wait(60)
        # The token is durable once the task is submitted; answer it then.
        deadline = time.monotonic() + 60
        while "TaskSubmitted" not in [e.type for e in engine.history_sync(callback)]:
            assert time.monotonic() < deadline, "the callback task was never submitted"
            time.sleep(0.05)
        send_task_failure(engine.store, tokens[0], error="Cb\x00Error", cause="cb\x00cause")
        waiting = engine.start_sync("waits", {})
        stopped = engine.stop_sync(waiting, error="Stop\x00Error", cause="stop\x00cause")
        ended = [engine.wait_sync(x, timeout=60) for x in (fail, raised, callback)]
        described = [engine.describe_sync(x) for x in (fail, raised, callback, waiting)]
        last = [engine.history_sync(x)[-1] for x in (fail, raised, callback, waiting)]
        outages = outage_of(engine.runtime.store).outages
    expected = [
        ("FAILED", ERROR, CAUSE),
        ("FAILED", ERROR, CAUSE),
        ("FAILED", "Cb\x00Error", "cb\x00cause"),
        ("ABORTED", "Stop\x00Error", "stop\x00cause"),
    ]
    assert [(r.status, r.error, r.cause) for r in [*ended, stopped]] == expected
    assert [(r.status, r.error, r.cause) for r in described] == expected
    assert [(e.details["error"], e.details["cause"]) for e in last] == [
        (error, cause) for _, error, cause in expected
    ]
    assert [e.type for e in last] == ["ExecutionFailed"] * 3 + ["ExecutionAborted"]
    assert outages == 0


def test_a_redrive_with_a_nul_in_its_token_fails_again_as_written(db_url: str) -> None:
    token = "client\x00token"  # kept in clear, as the token a repeat is compared with
    with Engine(db_url) as engine:
        engine.create_state_machine_sync("fail", FAIL)
        failed = engine.wait_sync(engine.start_sync("fail", {}), timeout=60)
    assert (failed.status, failed.error, failed.cause) == ("FAILED", ERROR, CAUSE)
    with Engine(db_url, worker=False) as client:  # no worker: it stays RUNNING meanwhile
        redriven = client.redrive_sync(failed, client_token=token)
        repeated = client.redrive_sync(failed, client_token=token)  # the same redrive
    assert (redriven.status, redriven.redrive_count) == ("RUNNING", 1)
    assert (repeated.status, repeated.redrive_count) == ("RUNNING", 1)
    with Engine(db_url) as engine:
        again = engine.wait_sync(failed, timeout=60)
        types = [e.type for e in engine.history_sync(again)]
    assert (again.status, again.error, again.cause, again.redrive_count) == (
        "FAILED",
        ERROR,
        CAUSE,
        1,
    )
    assert types.count("ExecutionFailed") == 2 and types.count("ExecutionRedriven") == 1


def test_a_distributed_map_child_failure_with_a_nul_reaches_the_output(db_url: str) -> None:
    definition = processor_map(MaxConcurrency=1, ToleratedFailureCount=1)
    processor = definition["States"]["M"]["ItemProcessor"]["States"]
    processor["Boom"] = {"Type": "Fail", "Error": ERROR, "Cause": CAUSE}
    with Engine(db_url, worker=False) as engine:
        record = engine.run_sync(definition, [{"fail": False}, {"fail": True}])
    assert record.status == "SUCCEEDED", (record.error, record.cause)
    assert json.loads(record.output or "") == [{"fail": False}, {"Error": ERROR, "Cause": CAUSE}]


RECEIVED: list[dict[str, Any]] = []


def refuse_once(event: dict[str, Any]) -> None:
    """An alert target (``python:tests.engine.test_nul_text:refuse_once``)."""
    RECEIVED.append(event)
    if len(RECEIVED) == 1:
        raise ValueError("refused \x00 here")


def test_an_alert_carries_a_nul_error_and_keeps_a_nul_delivery_error(db_url: str) -> None:
    RECEIVED.clear()

    async def main() -> list[tuple[str, int, str | None]]:
        async with Engine(db_url) as engine:
            assert engine.alert_deliverer is not None
            engine.alert_deliverer.retry_base_seconds = 3600.0  # no retry in this test
            engine.alert_deliverer.poll_seconds = 0.05
            await engine.create_state_machine("fail", FAIL)
            await engine.alerts.create(
                "pager", statuses=["FAILED"], python="tests.engine.test_nul_text:refuse_once"
            )
            await engine.wait(await engine.start("fail", {}), timeout=60)
            deadline = time.monotonic() + 60
            while not (deliveries := await engine.alerts.deliveries())[0].attempts:
                assert time.monotonic() < deadline, "the alert was never attempted"
                await anyio.sleep(0.05)
            return [(d.state, d.attempts, d.last_error) for d in deliveries]

    deliveries = anyio.run(main)
    assert deliveries == [(DeliveryState.PENDING, 1, "ValueError: refused \x00 here")]
    detail = RECEIVED[0]["detail"]
    assert (detail["status"], detail["error"], detail["cause"]) == ("FAILED", ERROR, CAUSE)


@pytest.mark.parametrize("text", ["a\x00b", "\x00", 'swenc:n:"x"', "swenc:1:k:abc", "plain"])
@pytest.mark.parametrize("keys", [False, True])
def test_clear_text_is_never_encrypted_and_reads_back_exactly(text: str, keys: bool) -> None:
    codec = PayloadCodec([base64.b64decode(generate_key())] if keys else [])
    stored = escape_clear(text)
    assert stored is not None and "\x00" not in stored
    assert stored == PayloadCodec().seal(text)  # the plain codec's form, keys or not
    assert unescape_clear(stored) == text
    assert codec.open(stored) == text  # a payload reader reads it too
    assert escape_clear(None) is None and unescape_clear(None) is None


def test_a_legacy_value_that_looks_escaped_reads_as_it_is_and_never_fails(tmp_path: Any) -> None:
    # Error names as a release before the escape stored them (verbatim).
    url = f"sqlite:///{tmp_path}/legacy.db"
    fail = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "c"}}}
    with Engine(url) as engine:
        engine.create_state_machine_sync("m", fail)
        ids = [engine.start_sync("m", {}).execution_id for _ in range(2)]
        for execution_id in ids:
            engine.wait_sync(execution_id, timeout=30)
    legacy = ["swenc:n:Custom", "swenc:n:7"]
    with sqlite3.connect(f"{tmp_path}/legacy.db") as conn:
        for execution_id, error in zip(ids, legacy, strict=True):
            conn.execute(
                "UPDATE executions SET error=? WHERE execution_id=?", (error, execution_id)
            )
    with Engine(url, worker=False) as engine:
        assert [engine.describe_sync(i).error for i in ids] == legacy
        listed = {e.execution_id: e for e in engine.list_executions_sync(machine="m")}
        assert len(listed) == 2
    assert unescape_clear('swenc:n:"x\\u0000"') == "x\x00"  # the escape itself still reads
