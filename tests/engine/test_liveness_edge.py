"""Commands at the edge of the store: nothing created by reads, corrupt files, silent servers.

Read commands (``list``, ``describe``, ``history``, ``trace``) never create
a database: a mistyped ``--db`` is an error naming the URL (exit 3), not an
empty listing. A file that is not a SQLite database is one line and exit 3
on every command. A server that accepts TCP but never answers costs a
command the connect timeout, not minutes, and a worker waiting on it still
stops on SIGTERM. Store failures are classified once (transient: retried;
permanent: reported at once), and the last telemetry flush to a collector
that is down is bounded and says so in one line.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
import pytest

from engine.cli.core import retry_transient
from engine.store import Store, StoreUnavailable
from engine.store.boundary import Backoff, is_transient, permanent
from engine.telemetry.export import bounded_shutdown
from tests.engine import pg

REPO = Path(__file__).resolve().parents[2]
PASS_MACHINE = '{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}'


def run_cli(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("stepwise: error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


READ_COMMANDS = [
    ["list"],
    ["describe", "x"],
    ["history", "x"],
    ["trace", "x"],
    ["machines", "list"],
]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c))
def test_a_read_command_on_a_missing_sqlite_file_is_an_error_and_creates_nothing(
    command: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "typo.db"
    result = run_cli([*command, "--db", f"sqlite:///{path}"])
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    line = one_error_line(result.stderr)
    assert "typo.db" in line and "does not exist" in line
    assert not path.exists()


def test_read_commands_on_an_empty_postgres_database_create_no_schema(postgres_url: str) -> None:
    for command in READ_COMMANDS:
        result = run_cli([*command, "--db", postgres_url])
        assert result.returncode == 3, (command, result.stderr)
        line = one_error_line(result.stderr)
        assert "no Stepwise database at" in line and postgres_url.rsplit("/", 1)[1] in line
    raw = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
    # A command that writes still creates and migrates it.
    created = run_cli(["machines", "create", "m", "examples/hello.json", "--db", postgres_url])
    assert created.returncode == 0, created.stderr
    assert run_cli(["list", "--db", postgres_url]).returncode == 0


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["describe", "x"],
        ["history", "x"],
        ["trace", "x"],
        ["start", "m"],
        ["stop", "x"],
        ["machines", "create", "m", "examples/hello.json"],
        ["run", "examples/hello.json"],
        ["db", "upgrade"],
        ["worker"],
    ],
    ids=lambda c: " ".join(c),
)
def test_a_corrupt_sqlite_file_is_one_line_and_exit_3_on_every_command(
    command: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a SQLite database, just some text " * 200)
    result = run_cli([*command, "--db", f"sqlite:///{path}"], timeout=60)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result.stderr)
    assert "corrupt.db" in line and "not a usable Stepwise database" in line


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A PostgreSQL URL whose server accepts TCP connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    try:
        yield f"postgresql+psycopg://nobody@127.0.0.1:{port}/x"
    finally:
        listener.close()


def test_a_server_that_never_answers_costs_a_command_the_connect_timeout(
    silent_endpoint: str,
) -> None:
    env = {"STEPWISE_CONNECT_TIMEOUT": "2", "STEPWISE_RETRY_SECONDS": "0"}
    # Before: 131 s per command (no connect timeout); the subprocess limit says "bounded".
    result = run_cli(["list", "--db", silent_endpoint], env=env, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "timeout" in one_error_line(result.stderr).lower()


def test_a_worker_waiting_on_a_silent_server_stops_on_sigterm(silent_endpoint: str) -> None:
    env = {**os.environ, "STEPWISE_CONNECT_TIMEOUT": "2", "STEPWISE_RETRY_SECONDS": "600"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker", "--db", silent_endpoint],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()  # after the first connect timed out
        assert "waiting for the store" in first, first
        worker.send_signal(signal.SIGTERM)
        rest = worker.communicate(timeout=60)[1]
    finally:
        worker.kill()
        worker.wait()
    assert worker.returncode == 0, first + rest
    assert "stopping on SIGTERM" in rest
    assert "Traceback" not in rest


def test_store_failures_are_classified_once(postgres_server: pg.PostgresServer) -> None:
    refused = "postgresql://nobody@127.0.0.1:1/x"
    with pytest.raises(StoreUnavailable) as down:
        Store(refused)
    assert is_transient(down.value)  # a server that is down may come back: retried
    missing = postgres_server.url_for("no_such_database_here")
    with pytest.raises(StoreUnavailable) as typo:
        Store(missing)
    assert not is_transient(typo.value)  # a configuration error: reported at once
    assert "no_such_database_here" in str(typo.value)
    for bad in ("not a url", "mysql://localhost/x", "sqlite:////no-such-dir/for/sure/s.db"):
        with pytest.raises(StoreUnavailable) as configuration:
            Store(bad)
        assert not is_transient(configuration.value), bad


def test_backoff_grows_to_its_cap_with_jitter_and_starts_over_after_a_success() -> None:
    backoff = Backoff(first=0.1, cap=2.0)
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(0 < d <= 2.0 for d in delays)
    assert all(d >= 1.0 for d in delays[6:])  # capped, and never below half the cap
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_commands_retry_transient_errors_for_a_bounded_time_only() -> None:
    calls: list[int] = []

    def flaky(number: int) -> str:
        calls.append(number)
        if number < 2:
            raise StoreUnavailable("database x is unavailable: the server is restarting")
        return "ok"

    assert retry_transient(flaky, seconds=30) == "ok"
    assert calls == [0, 1, 2]

    def configuration(_number: int) -> str:
        calls.append(-1)
        raise permanent("database x is unavailable: password authentication failed")

    calls.clear()
    with pytest.raises(StoreUnavailable):
        retry_transient(configuration, seconds=30)
    assert calls == [-1]  # never retried

    def always_down(_number: int) -> str:
        raise StoreUnavailable("database x is unavailable: connection refused")

    with pytest.raises(StoreUnavailable):
        retry_transient(always_down, seconds=0.5)


def test_the_last_telemetry_flush_is_bounded_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()

    def stuck_exporter() -> None:
        logging.getLogger("opentelemetry.exporter.test").warning("Transient error, retrying")
        release.wait()

    with caplog.at_level(logging.WARNING):
        finished = bounded_shutdown(stuck_exporter, seconds=0.2)
    release.set()
    assert not finished
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(("stepwise", "opent"))]
    assert len(lines) == 1, lines
    assert "could not deliver" in lines[0] and "Transient error" in lines[0]


def test_run_with_a_collector_that_is_down_prints_one_telemetry_warning(tmp_path: Path) -> None:
    result = run_cli(
        [
            "run",
            "examples/hello.json",
            "--activities",
            "examples.hello_activities",
            "--input",
            '{"name": "x"}',
            "--db",
            f"sqlite:///{tmp_path / 'otlp.db'}",
            "--otlp",
            "http://127.0.0.1:1",
        ],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line]
    assert len(warnings) == 1, result.stderr
    assert "telemetry: could not deliver" in warnings[0]


def test_sigterm_during_a_sync_handler_stops_the_worker_promptly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stepwise.db'}"
    log = tmp_path / "runs.jsonl"
    machine = tmp_path / "blocking.json"
    machine.write_text(
        '{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"sleep_sync","End":true}}}'
    )
    assert run_cli(["machines", "create", "blocking", str(machine), "--db", url]).returncode == 0
    assert run_cli(["start", "blocking", "--db", url]).returncode == 0
    env = {**os.environ, "STEPWISE_TEST_LOG": str(log)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "worker",
            "--db",
            url,
            "--activities",
            "tests.engine.liveness_handlers",
        ],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: log.exists() and "started" in log.read_text())
        worker.send_signal(signal.SIGTERM)
        # Before: the process waited for the handler's thread (here ten minutes).
        stderr = worker.communicate(timeout=60)[1]
    finally:
        worker.kill()
        worker.wait()
    assert worker.returncode == 0, stderr
    assert "exits without waiting for 1 sync handler" in stderr
    assert "Traceback" not in stderr
    # Its lease was released: the execution is still RUNNING, free for another worker.
    listed = run_cli(["list", "--status", "RUNNING", "-o", "json", "--db", url])
    assert len(json.loads(listed.stdout)["executions"]) == 1


def wait_for(predicate: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def test_an_outage_is_one_line_when_it_starts_one_when_it_ends_and_a_metric(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from engine import telemetry
    from engine.worker import StoreOutage

    reader = InMemoryMetricReader()
    metrics = telemetry.EngineMetrics(MeterProvider(metric_readers=[reader]))
    store = Store(sqlite_url)
    outage = StoreOutage(store)
    try:
        with caplog.at_level(logging.WARNING, logger="stepwise.worker"):
            for _ in range(2):  # two outages, each seen by many failing calls
                for _ in range(5):
                    outage.failed(StoreUnavailable("database x is unavailable: restarting"))
                assert outage.down
                outage.ok()
                outage.ok()
                assert not outage.down
        assert store.schema_version() > 0  # the pool was rebuilt, the store still works
    finally:
        store.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "stepwise.worker"]
    assert [line.split(",")[0].split(" after")[0] for line in lines] == [
        "store unavailable",
        "store available again",
        "store unavailable",
        "store available again",
    ]
    assert outage.outages == 2
    # The metrics the worker reports through (telemetry on): counted once per outage.
    metrics.outage_started()
    metrics.outage_ended(1.5)
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: metric.data.data_points[0]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert points["stepwise.store.outages"].value == 1  # type: ignore[union-attr]
    assert points["stepwise.store.unavailable"].value == 0  # type: ignore[union-attr]
    assert points["stepwise.store.outage.duration"].sum == 1.5  # type: ignore[union-attr]


def test_a_call_answered_as_the_outage_began_does_not_end_it(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A call under way when the server went away may still succeed; the outage is not over.

    When PostgreSQL stops, one loop's call fails (the listener's, say) while
    another's, sent a moment earlier, is answered: that success must not log
    "available again" and then a second outage for the same stop.
    """
    from engine.worker import StoreOutage

    store = Store(sqlite_url)
    outage = StoreOutage(store)
    try:
        with caplog.at_level(logging.WARNING, logger="stepwise.worker"):
            sent_before = time.monotonic()
            outage.failed(StoreUnavailable("lost the work listener: server closed the connection"))
            outage.ok(sent_before)  # answered just before the server went away
            assert outage.down
            outage.ok(time.monotonic())  # a call made during the outage succeeded: it is over
            assert not outage.down
    finally:
        store.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "stepwise.worker"]
    assert [line.split(",")[0].split(" after")[0] for line in lines] == [
        "store unavailable",
        "store available again",
    ]
    assert outage.outages == 1
