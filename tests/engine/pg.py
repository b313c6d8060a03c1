"""A throwaway PostgreSQL server for tests, benchmarks and crash tests.

`server()` returns the process-wide server: the one named by
$STEPWISE_TEST_DATABASE_URL (an admin URL; nothing is started), else a
private PostgreSQL 15 started on 127.0.0.1 on a free port, with trust auth
and fsync off, run as an unprivileged OS user because PostgreSQL refuses to
run as root. It stops when the process exits. `fresh_database_url()` creates
an empty database on it, named by this process's pid and a counter. Under
pytest-xdist every worker is a process of its own, so each worker starts
its own server (a free port, its own temporary folder) or, with
$STEPWISE_TEST_DATABASE_URL set, all workers share that one server and
never each other's databases. `start_server()` starts a private one, which a
test may crash-restart (`restart`, immediate mode) or stop and start again
on the same port (`halt`, `resume`) without disturbing the session's
server. Subprocesses get plain URLs, so they need nothing from here;
`python -m tests.engine.pg` starts a server, prints its admin URL and keeps
it up until interrupted, for benchmarks run by hand.

A server never outlives the process that started it (its owner), even one
killed without running its atexit hooks (a SIGKILLed pytest-xdist worker,
an interrupted run): each server gets a watchdog, a tiny process in a
session of its own that waits on the owner's pidfd and, when the owner is
gone, stops the server in immediate mode and deletes its folder. The folder
records its owner (``owner.json``: pid, the pid's start time, the OS user),
so should the watchdog die too, the next `start_server` with the same
prefix sweeps the server whose owner is gone (`sweep_orphans`). Folders
without that record (servers started by older code) are left alone.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

__all__ = [
    "PostgresServer",
    "fresh_database_url",
    "private_server",
    "server",
    "start_server",
    "sweep_orphans",
]

_PG_BIN_CANDIDATES = ("/usr/local/bin", "/usr/lib/postgresql/15/bin")
_OS_USERS = ("postgres", "stepwise-pg")
_counter = itertools.count(1)
_lock = threading.Lock()
_server: PostgresServer | None = None


class PostgresServer:
    """A PostgreSQL server reachable at `admin_url`; `stop()` ends it if we started it."""

    def __init__(
        self,
        admin_url: str,
        *,
        data_dir: Path | None = None,
        os_user: str = "",
        options: str = "",
        watchdog: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.admin_url = admin_url
        self._data_dir = data_dir
        self._os_user = os_user
        self._options = options
        self._watchdog = watchdog

    def _pg_ctl(self, *args: str) -> None:
        if self._data_dir is None:
            raise RuntimeError("only a server this process started can be restarted or stopped")
        log = self._data_dir.parent / "log"
        done = _run_as(
            self._os_user,
            [_bin("pg_ctl"), "-D", str(self._data_dir), "-l", str(log), "-w", "-t", "60", *args],
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {done.stderr or done.stdout}")

    def restart(self) -> None:
        """Crash-restart: stop in immediate mode (no checkpoint, clients cut off), start again."""
        self._pg_ctl("-m", "immediate", "-o", self._options, "restart")

    def halt(self) -> None:
        """Stop the server in immediate mode (a crash, as clients see it); `resume` starts it."""
        self._pg_ctl("-m", "immediate", "stop")

    def resume(self) -> None:
        """Start a halted server again, on the same port."""
        self._pg_ctl("-o", self._options, "start")

    def url_for(self, database: str) -> str:
        """A SQLAlchemy URL for `database` on this server."""
        base = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        user = base.get("user", "postgres")
        password = f":{base['password']}" if base.get("password") else ""
        host = base.get("host", "127.0.0.1")
        port = base.get("port", 5432)
        return f"postgresql+psycopg://{user}{password}@{host}:{port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """Stop the server if this process started it, and delete its files."""
        if self._data_dir is None:
            return
        data_dir, self._data_dir = self._data_dir, None
        if self._watchdog is not None:  # the owner stops it: the watchdog has nothing to do
            self._watchdog.kill()
            self._watchdog.wait()
        subprocess.run(
            [*_as_user(self._os_user), _bin("pg_ctl"), "-D", str(data_dir), "-m", "fast", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def _bin(name: str) -> str:
    for directory in _PG_BIN_CANDIDATES:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (looked in {_PG_BIN_CANDIDATES})")
    return found


def _os_user() -> str:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    for name in _OS_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _OS_USERS[1]],
        check=True,
        capture_output=True,
    )
    return _OS_USERS[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_user(user: str) -> list[str]:
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _run_as(user: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_as_user(user), *argv], capture_output=True, text=True, check=False)


# The watchdog: argv is owner pid, the server's folder, then the pg_ctl stop command.
# It runs with -I -S (nothing imported but the standard library) in a session of its
# own, so a Ctrl-C or a kill of the owner's process group does not reach it.
_WATCHDOG = """
import os, select, shutil, subprocess, sys, time
owner, root, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
data = os.path.join(root, "data")
try:
    pidfd = os.pidfd_open(owner)
except (AttributeError, OSError):
    pidfd = None
def owner_alive():
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
while os.path.isdir(data):
    if pidfd is not None:
        if select.select([pidfd], [], [], 1.0)[0]:
            break
    elif not owner_alive():
        break
    else:
        time.sleep(0.5)
else:
    sys.exit(0)
subprocess.run(stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
shutil.rmtree(root, ignore_errors=True)
"""
_OWNER_FILE = "owner.json"
_WATCHDOG_FILE = "watchdog.pid"


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields follow the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def _stop_command(user: str, data_dir: Path) -> list[str]:
    return [*_as_user(user), _bin("pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"]


def _watch(root: Path, user: str) -> subprocess.Popen[bytes]:
    """Record this process as the server's owner and start its watchdog."""
    owner = {"pid": os.getpid(), "started": _start_time(os.getpid()), "user": user}
    (root / _OWNER_FILE).write_text(json.dumps(owner))
    watchdog = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(os.getpid()), str(root),
         *_stop_command(user, root / "data")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    (root / _WATCHDOG_FILE).write_text(str(watchdog.pid))
    return watchdog


def _runs_postmaster(data_dir: Path) -> bool:
    """Whether the pid in `data_dir`'s postmaster.pid is that directory's postmaster.

    A stale postmaster.pid may name a pid since reused by an unrelated
    process (pids wrap), which pg_ctl would signal: the process must run
    in `data_dir` (the postmaster's working directory) to count.
    """
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        return os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(data_dir)
    except (OSError, ValueError, IndexError):
        return False


def sweep_orphans(prefix: str = "stepwise-pg-") -> list[Path]:
    """Stop the servers under `prefix` whose owner is gone and delete their folders.

    Only folders that record their owner are considered, and one whose
    owner (the same pid with the same start time) still runs is left alone.
    A server is stopped only when its postmaster.pid names a process that
    runs in its data directory; otherwise the folder is just deleted.
    Returns the folders swept.
    """
    swept = []
    for root in sorted(Path(tempfile.gettempdir()).glob(f"{prefix}*")):
        try:
            owner = json.loads((root / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        started = _start_time(int(owner["pid"]))
        if started is not None and started == owner.get("started"):
            continue
        if _runs_postmaster(root / "data"):
            stop = _stop_command(str(owner["user"]), root / "data")
            subprocess.run(stop, capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
        swept.append(root)
    return swept


def start_server(
    *,
    durable: bool = False,
    max_connections: int = 400,
    shared_buffers: str = "64MB",
    prefix: str = "stepwise-pg-",
) -> PostgresServer:
    """Start a private PostgreSQL on 127.0.0.1; raise RuntimeError with its own words if it fails.

    The tests' server is not `durable`: fsync, synchronous_commit and
    full_page_writes are off, to run faster. The benchmarks' server
    (`benchmarks/pgserver.py`) is, keeping PostgreSQL's defaults.
    """
    user = _os_user()
    sweep_orphans(prefix)
    root = Path(tempfile.mkdtemp(prefix=prefix))
    data_dir = root / "data"
    record = pwd.getpwnam(user)
    os.chown(root, record.pw_uid, record.pw_gid)
    os.chmod(root, 0o700)
    init = _run_as(
        user,
        [_bin("initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
         *([] if durable else ["--no-sync"]), "--locale=C"],
    )  # fmt: skip
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
    # Watched from before it starts: an owner killed mid-start leaves nothing behind either.
    watchdog = _watch(root, user)
    durability = [] if durable else [
        "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
    ]  # fmt: skip
    last_error = ""
    for _attempt in range(3):
        port = _free_port()
        options = " ".join(
            [f"-p {port}", "-h 127.0.0.1", f"-k {root}", *durability,
             f"-c max_connections={max_connections}", f"-c shared_buffers={shared_buffers}"]
        )  # fmt: skip
        started = _run_as(
            user,
            [_bin("pg_ctl"), "-D", str(data_dir), "-o", options, "-l", str(root / "log"),
             "-w", "-t", "60", "start"],
        )  # fmt: skip
        if started.returncode == 0:
            admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            return PostgresServer(
                admin, data_dir=data_dir, os_user=user, options=options, watchdog=watchdog
            )
        log = root / "log"
        last_error = (log.read_text() if log.exists() else "") or started.stderr
    watchdog.kill()
    watchdog.wait()
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"PostgreSQL did not start: {last_error.strip()[-2000:]}")


def server() -> PostgresServer:
    """The process-wide test server: $STEPWISE_TEST_DATABASE_URL, or one started now."""
    global _server
    with _lock:
        if _server is None:
            external = os.environ.get("STEPWISE_TEST_DATABASE_URL")
            if external:
                admin = external.replace("postgresql+psycopg://", "postgresql://", 1)
                _server = PostgresServer(admin)
            else:
                _server = start_server()
                atexit.register(_server.stop)
        return _server


def fresh_database_url(prefix: str = "stepwise_test") -> tuple[str, str]:
    """Create an empty database on the test server; return (its URL, its name)."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    return server().create_database(name), name


@contextmanager
def private_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A server of the caller's own, to halt or crash-restart without disturbing other tests."""
    server = start_server(durable=durable)
    try:
        yield server
    finally:
        server.stop()


def _main() -> None:
    pg = server()
    print(pg.admin_url, flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        pg.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    _main()
