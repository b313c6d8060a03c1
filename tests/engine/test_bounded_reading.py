"""`history` and `trace` of a very large execution stay within bounded memory.

A 100,000-event history (an inline Map of 25,000 iterations, 2 KB of payload
per state event: about 100 MB of history text, several times that as Python
objects if read at once) is written straight into a real SQLite store; each
command then runs in its own process, and its peak RSS (the process image's
own high-water mark, VmHWM; `resource.getrusage`'s maxrss is also recorded,
but Linux carries it over from the parent) must stay within a generous bound
of what the same process needs to describe the execution, however long the
history is. Reading the whole history at once takes about 335 MB here (a
growth of about 285 MB over `describe`'s 50 MB, well past the bound); the
paged commands grow by 6-10 MB (`history`) and about 33 MB (`trace`). The
history's size in bytes is what an unpaged reader would hold, so it is kept;
its event count is halved (twice the payload per event) because the commands'
CPU goes per event.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from engine import Engine
from engine.store import Store
from engine.store.schema import executions, history_blocks, history_events
from tests.engine.processes import ROOT

ITERATIONS = 25_000
PAD = "p" * 2000
# Over what `describe` of the same execution takes: one page of events, the open spans.
BOUND_KB = 120 * 1024


def _events(execution_id: str, start: datetime) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(kind: str, previous: int, details: dict[str, Any]) -> int:
        event_id = len(rows) + 1
        rows.append(
            {
                "execution_id": execution_id,
                "event_id": event_id,
                "previous_event_id": previous,
                "type": kind,
                "timestamp": start + timedelta(milliseconds=event_id),
                "details": msgspec.json.encode(details).decode(),
            }
        )
        return event_id

    started = add("ExecutionStarted", 0, {"input": "{}"})
    entered = add("MapStateEntered", started, {"name": "Each", "input": "{}"})
    map_started = add("MapStateStarted", entered, {"length": ITERATIONS})
    last = map_started
    for index in range(ITERATIONS):
        begun = add("MapIterationStarted", map_started, {"name": "Each", "index": index})
        state = add("PassStateEntered", begun, {"name": "One", "input": json.dumps(PAD)})
        left = add("PassStateExited", state, {"name": "One", "output": json.dumps(PAD)})
        last = add("MapIterationSucceeded", left, {"name": "Each", "index": index})
    done = add("MapStateSucceeded", last, {})
    exited = add("MapStateExited", done, {"name": "Each", "output": "[]"})
    add("ExecutionSucceeded", exited, {"output": "[]"})
    return rows


def _large_execution(url: str) -> str:
    machine = {"StartAt": "Each", "States": {"Each": {"Type": "Pass", "End": True}}}
    with Engine(url, worker=False) as engine:
        record = engine.run_sync(machine)
    rows = _events(record.execution_id, record.start_date)
    db = sa.create_engine(url)
    try:
        with db.begin() as conn:
            # The run's own events: its start's row and, on SQLite, its commit's block.
            for table in (history_events, history_blocks):
                conn.execute(sa.delete(table).where(table.c.execution_id == record.execution_id))
            for start in range(0, len(rows), 5000):
                conn.execute(sa.insert(history_events), rows[start : start + 5000])
            conn.execute(
                sa.update(executions)
                .where(executions.c.execution_id == record.execution_id)
                .values(last_event_id=len(rows), stop_date=datetime.now(UTC))
            )
    finally:
        db.dispose()
    store = Store(url)
    try:  # the history read is the one written, each event once
        page = store.history_page(record.execution_id, limit=5)
        assert [e.event_id for e in page] == list(range(1, 6))
    finally:
        store.close()
    return record.execution_id


def _peak_kb(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> int:
    out = tmp_path / "rss.json"
    subprocess.run(
        [sys.executable, "-m", "tests.engine.peak_rss", str(out), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=1800,
    )
    result = json.loads(out.read_text())
    assert result["code"] in (0, None), (args, result)
    return int(result["hwm_kb"])


def test_history_and_trace_of_a_huge_execution_stay_within_bounded_memory(
    sqlite_url: str, tmp_path: Path
) -> None:
    execution_id = _large_execution(sqlite_url)
    base = _peak_kb(tmp_path, "describe", execution_id, "--db", sqlite_url)
    # history: both renderings, both orders, a page at a time.
    for extra in ([], ["-o", "json"], ["--reverse", "-o", "json"]):
        peak = _peak_kb(tmp_path, "history", execution_id, "--db", sqlite_url, *extra)
        assert peak - base < BOUND_KB, (extra, peak, base)
    # trace: exported a page of history at a time, spans forgotten once sent.
    peak = _peak_kb(
        tmp_path,
        "trace",
        execution_id,
        "--db",
        sqlite_url,
        env={"OTEL_TRACES_EXPORTER": "console"},
    )
    assert peak - base < BOUND_KB, (peak, base)


def test_paged_history_prints_what_the_whole_history_would(db_url: str) -> None:
    from click.testing import CliRunner

    from engine.cli import cli
    from engine.history import history_to_aws

    loop = {
        "StartAt": "Spin",
        "States": {
            "Spin": {"Type": "Pass", "Next": "Again"},
            "Again": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.spin", "BooleanEquals": True, "Next": "Spin"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }
    with Engine(db_url, worker=False, max_history_events=2500) as engine:
        record = engine.run_sync(loop, {"spin": True})
        events = engine.history_sync(record.execution_id)
    assert len(events) > 2 * 1000  # three pages
    for reverse in (False, True):
        flags = ["--reverse"] if reverse else []
        result = CliRunner().invoke(
            cli, ["history", record.execution_id, "--db", db_url, "-o", "json", *flags]
        )
        assert result.exit_code == 0, result.output
        expected = json.dumps(history_to_aws(events, reverse=reverse), indent=2, ensure_ascii=False)
        assert result.stdout == expected + "\n"
    table = CliRunner().invoke(cli, ["history", record.execution_id, "--db", db_url])
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "TIMESTAMP", "TYPE", "DETAILS"]
    assert len(lines) == len(events) + 1
    assert [int(line.split()[0]) for line in lines[1:]] == [e.event_id for e in events]
