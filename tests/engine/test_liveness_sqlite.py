"""A worker on SQLite outlives a full disk, and a read-only database is an outage too.

The SQLite file sits on a small tmpfs of its own (tests run as root here
and in CI). A `stepwise worker` is running when the disk fills up: the
executions' Waits fall due, every write fails with "database or disk is
full", and the worker logs one line, backs off and keeps trying; once
there is room again it logs one more line and finishes every execution.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import Engine
from engine.store import Store, StoreUnavailable
from engine.store.boundary import is_transient
from tests.engine.liveness import (
    OUTAGE_ENDED,
    OUTAGE_STARTED,
    WorkerProcess,
    all_records,
    assert_one_key_per_step,
    machine,
    running_count,
    wait_until,
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for this test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write zeros to `path` until the filesystem has no room left."""
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as filler:
        while True:
            try:
                filler.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    # Whatever a partial block left, take it too.
    with path.open("ab", buffering=0) as filler:
        for size in (4096, 512, 1):
            while True:
                try:
                    filler.write(b"\0" * size)
                except OSError:
                    break


def test_a_worker_outlives_a_full_disk_and_finishes_once_there_is_room(
    small_disk: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{small_disk / 'stepwise.db'}"
    log = tmp_path / "runs.jsonl"
    waiting = {
        "StartAt": "Pause",
        "States": {
            "Pause": {"Type": "Wait", "Seconds": 2, "Next": "T0"},
            **machine(5)["States"],
        },
    }
    with Engine(url, worker=False) as engine:
        engine.create_state_machine_sync("waits", waiting)
        for i in range(20):
            engine.start_sync("waits", {"v": 0}, name=f"e{i}")
    worker = WorkerProcess(url, log, tmp_path / "worker.err")
    try:
        worker.wait_started()
        filler = small_disk / "filler"
        _fill(filler)  # the Waits fall due with no room to record anything
        wait_until(lambda: worker.lines(OUTAGE_STARTED) or not worker.alive(), timeout=120)
        assert worker.alive(), worker.stderr
        assert "full" in worker.lines(OUTAGE_STARTED)[0], worker.stderr
        filler.unlink()
        wait_until(lambda: running_count(url) == 0, timeout=300)
        wait_until(lambda: worker.lines(OUTAGE_ENDED), timeout=60)
        assert worker.alive(), worker.stderr
        records = all_records(url)
        assert len(records) == 20
        assert all(r.status == "SUCCEEDED" for r in records), [(r.error, r.cause) for r in records]
        assert_one_key_per_step(log)
        assert len(worker.lines(OUTAGE_STARTED)) == 1, worker.stderr
        assert len(worker.lines(OUTAGE_ENDED)) == 1, worker.stderr
        assert "Traceback" not in worker.stderr
    finally:
        code = worker.stop()
    assert code == 0, worker.stderr


def test_a_read_only_database_is_a_transient_outage_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "stepwise.db"
    Store(f"sqlite:///{path}").close()
    read_only = Store(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(StoreUnavailable) as refused:
            read_only.put_state_machine(
                "m", '{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}'
            )
    finally:
        read_only.close()
    assert "readonly" in str(refused.value)
    assert is_transient(refused.value)  # a remount or a fixed permission brings it back
