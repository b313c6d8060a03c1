"""The tests' PostgreSQL servers do not outlive the process that started them.

A subprocess starts a server through `tests.engine.pg.start_server` (as a
pytest-xdist worker does) and is SIGKILLed: no atexit hook runs. The
server must be gone, and its folder deleted, within a bounded wait — by
its watchdog, or, when the watchdog was killed too, by the sweep the next
`start_server` makes. Each test uses a prefix of its own, outside the
default ``stepwise-pg-*`` that every other process's `start_server`
sweeps, so only the watchdog and the test's own sweeps can stop the test's
servers (a pass never comes from another pytest-xdist worker's sweep).
"""

from __future__ import annotations

import json
import os
import pwd
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine import pg

ROOT = Path(__file__).resolve().parents[2]

_OWNER = """
import json, sys, time
from tests.engine import pg
server = pg.start_server(prefix=sys.argv[1])
root = server._data_dir.parent
print(json.dumps({"url": server.admin_url, "root": str(root)}), flush=True)
time.sleep(3600)
"""


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_until(condition: Any, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


class _Owner:
    """A subprocess that started a server and sleeps; its server's folder and postmaster."""

    def __init__(self, prefix: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _OWNER, prefix],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 120)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            self.process.kill()
            _out, err = self.process.communicate()
            raise AssertionError(f"the owner did not start a server: {err.decode()[-2000:]}")
        started = json.loads(line)
        self.url: str = started["url"]
        self.root = Path(started["root"])
        self.postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        self.watchdog = int((self.root / "watchdog.pid").read_text())

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate()  # reaps it and closes its pipes

    def clean_up(self) -> None:
        """Whatever the test found, leave no server of ours running."""
        if self.process.poll() is None:
            self.kill()
        if _alive(self.watchdog):
            os.kill(self.watchdog, signal.SIGKILL)
        if _alive(self.postmaster):
            os.kill(self.postmaster, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
        _wait_until(lambda: not _alive(self.postmaster), timeout=30)
        subprocess.run(["rm", "-rf", str(self.root)], check=False)


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"stepwise-pgwatch-{os.getpid()}-{time.monotonic_ns()}-"
    assert not name.startswith("stepwise-pg-")  # outside the default sweep
    yield name
    pg.sweep_orphans(name)


@pytest.mark.slow
def test_a_killed_owner_leaves_no_server_running(prefix: str) -> None:
    owner = _Owner(prefix)
    try:
        assert _alive(owner.postmaster) and _alive(owner.watchdog)
        owner.kill()
        assert _wait_until(lambda: not _alive(owner.postmaster)), "the server outlived its owner"
        assert _wait_until(lambda: not owner.root.exists()), "its folder was left behind"
        assert _wait_until(lambda: not _alive(owner.watchdog))
    finally:
        owner.clean_up()


@pytest.mark.slow
def test_the_next_start_sweeps_a_server_whose_owner_and_watchdog_died(prefix: str) -> None:
    owner = _Owner(prefix)
    try:
        os.kill(owner.watchdog, signal.SIGKILL)
        assert _wait_until(lambda: not _alive(owner.watchdog))
        owner.kill()
        assert _alive(owner.postmaster)  # nobody watches it now: an orphan
        neighbour = _Owner(prefix)  # the next start under the prefix sweeps it
        try:
            assert _wait_until(lambda: not _alive(owner.postmaster)), "the orphan still runs"
            assert not owner.root.exists()
            # A server whose owner lives is never swept.
            assert pg.sweep_orphans(prefix) == []
            assert _alive(neighbour.postmaster) and neighbour.root.exists()
        finally:
            neighbour.clean_up()
    finally:
        owner.clean_up()


def test_a_stopped_server_takes_its_watchdog_with_it(prefix: str) -> None:
    server = pg.start_server(prefix=prefix)
    assert server._data_dir is not None
    root = server._data_dir.parent
    watchdog = int((root / "watchdog.pid").read_text())
    postmaster = int((root / "data" / "postmaster.pid").read_text().split()[0])
    server.stop()
    assert not _alive(watchdog) and not _alive(postmaster)
    assert not root.exists()


def test_the_sweep_never_signals_a_process_a_stale_pid_file_names(prefix: str) -> None:
    """A reused pid in an orphan's postmaster.pid: its process survives, the folder goes."""
    user = pg._os_user()
    record = pwd.getpwnam(user)
    # Not a postmaster, but owned by the servers' user, so pg_ctl could signal it.
    victim = subprocess.Popen(["sleep", "600"], user=record.pw_uid if os.geteuid() == 0 else None)
    try:
        root = Path(tempfile.mkdtemp(prefix=prefix))
        data = root / "data"
        data.mkdir()
        (data / "PG_VERSION").write_text("15\n")
        (data / "postmaster.pid").write_text(f"{victim.pid}\n{data}\n{int(time.time())}\n5432\n")
        owner = {"pid": os.getpid(), "started": "not this process's start", "user": user}
        (root / "owner.json").write_text(json.dumps(owner))
        for path in (root, data, data / "PG_VERSION", data / "postmaster.pid"):
            os.chown(path, record.pw_uid, record.pw_gid)
        assert pg.sweep_orphans(prefix) == [root]  # pg_ctl, had it run, has signalled by now
        assert not root.exists()
        assert victim.poll() is None and _alive(victim.pid), "the sweep signalled the victim"
    finally:
        victim.kill()
        victim.wait()
