"""The PostgreSQL server the benchmarks start: durable by default, its settings reported.

Every figure on PostgreSQL is measured on a server that keeps PostgreSQL's
own defaults for durability — `fsync=on`, `synchronous_commit=on`,
`full_page_writes=on` — so a commit waits for its WAL flush as it would in
production. (The test suite's throwaway server in `tests/engine/pg.py`
turns all three off to run faster; a benchmark on it flatters every figure
and hides the commit path.) `start(fsync=False)` still exists for
`run.py --fsync-off`, and every line printed from such a run says
`fsync=off`. `settings(admin_url)` reads what a server really runs with, so
the SERVER line reports the server's word, not ours.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.engine.pg import PostgresServer

__all__ = ["REPORTED_SETTINGS", "format_server", "settings", "start"]

REPORTED_SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes")
_BIN_DIRS = ("/usr/local/bin", "/usr/lib/postgresql/15/bin")
_OS_USERS = ("postgres", "stepwise-pg")


def _bin(name: str) -> str:
    for directory in _BIN_DIRS:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
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


def _as(user: str) -> list[str]:
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(*, fsync: bool = True, max_connections: int = 200) -> PostgresServer:
    """Start a private PostgreSQL on 127.0.0.1 and return it (stop() removes its files).

    With `fsync` (the default) the durability settings are PostgreSQL's
    defaults; without it fsync, synchronous_commit and full_page_writes are
    off, as on the test suite's server. Raises RuntimeError with
    PostgreSQL's own words when it cannot start.
    """
    user = _os_user()
    root = Path(tempfile.mkdtemp(prefix="stepwise-bench-pg-"))
    record = pwd.getpwnam(user)
    os.chown(root, record.pw_uid, record.pw_gid)
    os.chmod(root, 0o700)
    data_dir = root / "data"
    init = subprocess.run(
        [*_as(user), _bin("initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust",
         "-E", "UTF8", "--locale=C"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
    durability = [] if fsync else [
        "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
    ]  # fmt: skip
    last_error = ""
    for _attempt in range(3):
        port = _free_port()
        options = " ".join(
            [f"-p {port}", "-h 127.0.0.1", f"-k {root}", *durability,
             f"-c max_connections={max_connections}", "-c shared_buffers=128MB"]
        )  # fmt: skip
        started = subprocess.run(
            [*_as(user), _bin("pg_ctl"), "-D", str(data_dir), "-o", options,
             "-l", str(root / "log"), "-w", "-t", "60", "start"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if started.returncode == 0:
            admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            return PostgresServer(admin, data_dir=data_dir, os_user=user, options=options)
        log = root / "log"
        last_error = (log.read_text() if log.exists() else "") or started.stderr
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"PostgreSQL did not start: {last_error.strip()[-2000:]}")


def settings(admin_url: str) -> dict[str, str]:
    """The server's own values of REPORTED_SETTINGS (what SHOW says)."""
    url = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in REPORTED_SETTINGS
        }


def format_server(values: dict[str, str]) -> str:
    """The SERVER line: one key=value per reported setting, the version's first word."""
    fields = {**values, "server_version": values.get("server_version", "?").split()[0]}
    return "SERVER backend=postgres " + " ".join(f"{k}={fields[k]}" for k in REPORTED_SETTINGS)
