"""Callback tasks (.waitForTaskToken), activity workers, heartbeats and task timeouts.

Real workers: a worker subprocess killed with SIGKILL and replaced, the
callback answered from another process through the CLI, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from activities import ActivityContext, Registry
from engine import Engine
from engine.store import InvalidToken, TaskTimedOut

ROOT = Path(__file__).resolve().parents[2]

CALLBACK = {
    "StartAt": "Ask",
    "States": {
        "Ask": {
            "Type": "Task",
            "Resource": "notify.waitForTaskToken",
            "Parameters": {"token.$": "$$.Task.Token", "who.$": "$.who"},
            "ResultPath": "$.answer",
            "End": True,
        }
    },
}


def _start_worker(url: str, tokens: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.activities.worker_proc", url, str(tokens)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI run from `cwd` (a test's tmp_path: nothing is ever written into the checkout)."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _wait_for_lines(path: Path, count: int, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = [line for line in path.read_text().splitlines() if line]
            if len(lines) >= count:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"no {count} token(s) in {path} after {timeout}s")


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()


def test_callback_survives_worker_restart_and_is_answered_from_another_process(
    db_url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    tokens = tmp_path / "tokens.txt"
    with Engine(db_url, worker=False) as client:
        client.create_state_machine_sync("approval", CALLBACK)
        record = client.start_sync("approval", {"who": "ada"}, name="e1")
        hold = Path(f"{tokens}.hold")
        hold.touch()  # the first worker's handler sends the token, then never returns
        workers.append(_start_worker(db_url, tokens))
        token = _wait_for_lines(tokens, 1)[0]
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        assert client.describe_sync(record).status == "RUNNING"
        assert "TaskSubmitted" not in [e.type for e in client.history_sync(record)]
        hold.unlink()
        # The killed worker's lease runs out; the new worker reruns the handler, which
        # must be given the same token.
        workers.append(_start_worker(db_url, tokens))
        assert _wait_for_lines(tokens, 2) == [token, token]
        done = _cli(
            "task", "success", token, "--result", '{"approved": true}', "--db", db_url, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        final = client.wait_sync(record, timeout=30)
        assert final.status == "SUCCEEDED"
        assert json.loads(final.output or "") == {"who": "ada", "answer": {"approved": True}}
        types = [e.type for e in client.history_sync(record)]
        assert types.count("TaskSucceeded") == 1
        assert types.count("TaskSubmitted") == 1 and types[-1] == "ExecutionSucceeded"
    assert tokens.read_text().splitlines() == [token, token]
    again = _cli("task", "success", token, "--result", "{}", "--db", db_url, cwd=tmp_path)
    assert again.returncode == 2
    assert "TaskTimedOut" in again.stderr
    unknown = _cli("task", "failure", "no-such-token", "--error", "E", "--db", db_url, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "InvalidToken" in unknown.stderr


def test_callback_failure_from_cli_is_caught(
    sqlite_url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    tokens = tmp_path / "tokens.txt"
    definition = json.loads(json.dumps(CALLBACK))
    definition["States"]["Ask"]["Catch"] = [{"ErrorEquals": ["Rejected"], "Next": "No"}]
    definition["States"]["No"] = {"Type": "Pass", "End": True}
    with Engine(sqlite_url, worker=False) as client:
        client.create_state_machine_sync("approval", definition)
        record = client.start_sync("approval", {"who": "bob"})
        workers.append(_start_worker(sqlite_url, tokens))
        token = _wait_for_lines(tokens, 1)[0]
        elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
        result = _cli("task", "failure", token, "--error", "R", "--db", elsewhere, cwd=tmp_path)
        assert result.returncode == 2  # another database: no such token there
        assert "InvalidToken" in result.stderr
        result = _cli(
            "task",
            "failure",
            token,
            "--error",
            "Rejected",
            "--cause",
            "nope",
            "--db",
            sqlite_url,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        final = client.wait_sync(record, timeout=30)
        assert final.status == "SUCCEEDED"
        assert json.loads(final.output or "") == {"Error": "Rejected", "Cause": "nope"}


def _token_registry(seen: list[str]) -> Registry:
    registry = Registry()

    def notify(value: Any, context: ActivityContext) -> None:
        assert context.task_token == value["token"]
        seen.append(value["token"])

    registry.register("notify", notify)
    return registry


async def _first(seen: list[str]) -> str:
    with anyio.fail_after(20):
        while not seen:
            await anyio.sleep(0.02)
    return seen[0]


def test_heartbeat_timeout_on_callback(sqlite_url: str) -> None:
    definition = json.loads(json.dumps(CALLBACK))
    ask = definition["States"]["Ask"]
    ask["HeartbeatSeconds"] = 1
    ask["Catch"] = [{"ErrorEquals": ["States.HeartbeatTimeout"], "Next": "Late"}]
    ask.pop("ResultPath")
    definition["States"]["Late"] = {"Type": "Pass", "End": True}
    seen: list[str] = []

    async def main() -> None:
        async with Engine(sqlite_url, registry=_token_registry(seen), poll_seconds=0.1) as engine:
            await engine.create_state_machine("hb", definition)
            record = await engine.start("hb", {"who": "x"})
            token = await _first(seen)
            final = await engine.wait(record, timeout=20)
            assert final.status == "SUCCEEDED"
            assert json.loads(final.output or "") == {"Error": "States.Timeout", "Cause": ""}
            types = [e.type for e in await engine.history(record)]
            assert "TaskTimedOut" in types
            with pytest.raises(TaskTimedOut):
                engine.send_task_success(token, {"late": True})

    anyio.run(main)


HEARTBEAT = 2


def test_heartbeats_keep_a_callback_alive(sqlite_url: str) -> None:
    definition = json.loads(json.dumps(CALLBACK))
    definition["States"]["Ask"]["HeartbeatSeconds"] = HEARTBEAT
    seen: list[str] = []

    async def main() -> None:
        async with Engine(sqlite_url, registry=_token_registry(seen), poll_seconds=0.1) as engine:
            await engine.create_state_machine("hb", definition)
            record = await engine.start("hb", {"who": "y"})
            token = await _first(seen)
            # Beats 20 times per HeartbeatSeconds, for more than twice HeartbeatSeconds:
            # the task outlives its heartbeat timeout only because of the beats.
            began = time.monotonic()
            while time.monotonic() - began < 2.5 * HEARTBEAT:
                await anyio.sleep(HEARTBEAT / 20)
                await anyio.to_thread.run_sync(engine.send_task_heartbeat, token)
            assert (await engine.describe(record)).status == "RUNNING"
            await anyio.to_thread.run_sync(engine.send_task_success, token, 7)
            final = await engine.wait(record, timeout=20)
            assert final.status == "SUCCEEDED"
            assert json.loads(final.output or "") == {"who": "y", "answer": 7}
            with pytest.raises(InvalidToken):
                engine.send_task_heartbeat("not-a-token")

    anyio.run(main)


def test_callback_timeout_seconds_fails_with_states_timeout(sqlite_url: str) -> None:
    definition = json.loads(json.dumps(CALLBACK))
    definition["States"]["Ask"]["TimeoutSeconds"] = 1
    seen: list[str] = []

    async def main() -> None:
        async with Engine(sqlite_url, registry=_token_registry(seen), poll_seconds=0.1) as engine:
            await engine.create_state_machine("to", definition)
            record = await engine.start("to", {"who": "z"})
            final = await engine.wait(record, timeout=20)
            assert (final.status, final.error, final.cause) == ("FAILED", "States.Timeout", None)
            with pytest.raises(TaskTimedOut):
                engine.send_task_success(seen[0], {})

    anyio.run(main)


def test_in_process_heartbeat_timeout_and_heartbeats(sqlite_url: str) -> None:
    registry = Registry()

    def silent(value: Any) -> str:
        time.sleep(3)
        return "never"

    def chatty(value: Any, context: ActivityContext) -> str:
        # Beats 20 times per HeartbeatSeconds, for longer than twice HeartbeatSeconds.
        began = time.monotonic()
        while time.monotonic() - began < 2.5 * HEARTBEAT:
            time.sleep(HEARTBEAT / 20)
            context.heartbeat()
        return "done"

    registry.register("silent", silent)
    registry.register("chatty", chatty)
    definition = {
        "StartAt": "Chatty",
        "States": {
            "Chatty": {
                "Type": "Task",
                "Resource": "chatty",
                "HeartbeatSeconds": HEARTBEAT,
                "ResultPath": "$.chatty",
                "Next": "Silent",
            },
            "Silent": {
                "Type": "Task",
                "Resource": "silent",
                "HeartbeatSeconds": 1,
                "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 0}],
                "Catch": [
                    {
                        "ErrorEquals": ["States.HeartbeatTimeout"],
                        "Next": "Caught",
                        "ResultPath": "$.e",
                    }
                ],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }

    async def main() -> None:
        async with Engine(sqlite_url, registry=registry) as engine:
            record = await engine.run(definition, {})
            assert record.status == "SUCCEEDED", record.cause
            assert json.loads(record.output or "") == {
                "chatty": "done",
                "e": {"Error": "States.Timeout", "Cause": ""},
            }

    anyio.run(main)


ACTIVITY = {
    "StartAt": "Review",
    "States": {
        "Review": {
            "Type": "Task",
            "Resource": "arn:aws:states:us-east-1:123456789012:activity:Review",
            "HeartbeatSeconds": 20,
            "End": True,
        }
    },
}


def test_activity_worker_polls_and_answers(db_url: str) -> None:
    async def main() -> None:
        async with Engine(db_url, poll_seconds=0.1) as engine:
            await engine.create_state_machine("act", ACTIVITY)
            record = await engine.start("act", {"doc": 1})
            task = await anyio.to_thread.run_sync(
                lambda: engine.get_activity_task("Review", "w1", timeout=20)
            )
            assert task is not None and json.loads(task.input) == {"doc": 1}
            # Nobody else gets the same task.
            other = await anyio.to_thread.run_sync(
                lambda: engine.get_activity_task("Review", "w2", timeout=0.3)
            )
            assert other is None
            await anyio.to_thread.run_sync(engine.send_task_heartbeat, task.taskToken)
            await anyio.to_thread.run_sync(engine.send_task_success, task.taskToken, {"ok": 1})
            final = await engine.wait(record, timeout=20)
            assert final.status == "SUCCEEDED"
            assert json.loads(final.output or "") == {"ok": 1}
            events = await engine.history(record)
            types = [e.type for e in events]
            assert types[:3] == ["ExecutionStarted", "TaskStateEntered", "ActivityScheduled"]
            assert "ActivitySucceeded" in types
            started = [e for e in events if e.type == "ActivityStarted"]
            assert [e.details["workerName"] for e in started] == ["w1"]

    anyio.run(main)


def test_activity_poll_cli_from_another_process(
    sqlite_url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    with Engine(sqlite_url, worker=False) as client:
        client.create_state_machine_sync("act", ACTIVITY)
        record = client.start_sync("act", {"doc": 2})
        workers.append(_start_worker(sqlite_url, tmp_path / "unused"))
        polled = _cli(
            "activity", "poll", "Review", "--timeout", "20", "--db", sqlite_url, cwd=tmp_path
        )
        assert polled.returncode == 0, polled.stderr
        task = json.loads(polled.stdout)
        assert json.loads(task["input"]) == {"doc": 2}
        failed = _cli(
            "task",
            "failure",
            task["taskToken"],
            "--error",
            "Bad",
            "--cause",
            "c",
            "--db",
            sqlite_url,
            cwd=tmp_path,
        )
        assert failed.returncode == 0, failed.stderr
        final = client.wait_sync(record, timeout=30)
        assert (final.status, final.error, final.cause) == ("FAILED", "Bad", "c")
        nothing = _cli(
            "activity", "poll", "Review", "--timeout", "0.2", "--db", sqlite_url, cwd=tmp_path
        )
        assert nothing.returncode == 0 and nothing.stdout == ""


def test_send_task_success_rejects_non_json_output(sqlite_url: str, tmp_path: Path) -> None:
    with Engine(sqlite_url, worker=False):
        pass  # a database with its schema, and no tokens
    result = _cli(
        "task", "success", "tok", "--result", "{not json", "--db", sqlite_url, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "stepwise: error: InvalidOutput: Invalid Output: 'not valid JSON: {not json'\n"
    )


def test_engine_run_notices_a_callback_long_before_its_timeout(sqlite_url: str) -> None:
    """Engine.run holds the execution in-process; a token answered from another thread wakes it."""
    import threading

    tokens: list[str] = []
    machine = {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::notify.waitForTaskToken",
                "TimeoutSeconds": 3600,
                "End": True,
            }
        },
    }
    with Engine(sqlite_url, worker=False) as engine:
        engine.register_activity(
            "arn:aws:states:::notify.waitForTaskToken",
            lambda value, context: tokens.append(context.task_token),
        )

        def answer() -> None:
            while not tokens:
                time.sleep(0.05)
            engine.send_task_success(tokens[0], {"approved": True})

        threading.Thread(target=answer, daemon=True).start()
        began = time.monotonic()
        record = engine.run_sync(machine, {})
        elapsed = time.monotonic() - began
    assert record.status == "SUCCEEDED", record.cause
    assert json.loads(record.output or "") == {"approved": True}
    assert elapsed < 60  # the task's own timeout is an hour
