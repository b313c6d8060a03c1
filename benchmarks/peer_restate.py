"""Restate running Stepwise's W1 and W2, for `run.py --peers` (one run per process).

Runs inside the Restate virtual environment `run.py --peers` creates
(`benchmarks/.peers/restate-venv`: PyPI's `restate-sdk` and `hypercorn`),
against the server binary npm's `@restatedev/restate-server` ships
(installed under `benchmarks/.peers/restate`). It imports nothing of
Stepwise. Restate keeps its journal in its own log and RocksDB (WAL fsync
on, its defaults), not in PostgreSQL. The service is what a Restate user
would write, each step durable (`ctx.run`, journaled before the handler
goes on):

- W1: handler `Bench/w1` runs 10 sequential `ctx.run` steps of `increment`;
  200 invocations one after another through the ingress (one HTTP client,
  keep-alive, each request waits for the result).
- W2: handler `Bench/w2` starts 100 `ctx.run` steps at once and gathers
  them (`restate.gather`); one invocation.

`main()` starts a fresh restate-server (its own temporary base directory,
ports chosen free), the service under hypercorn, registers the deployment,
times the invocations, checks every output, stops both, and prints one line
`CHILD {json}` like `run.py`'s children; peak RSS is the server's plus the
service's (`VmHWM`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import restate

TASK_CHAIN_LENGTH = 10
MAP_ITEMS = 100
HERE = Path(__file__).resolve().parent
SERVER_BIN = (
    HERE / ".peers/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"
)

bench = restate.Service("Bench")


def increment(value: dict[str, Any]) -> dict[str, Any]:
    return {"v": value["v"] + 1}


@bench.handler()
async def w1(ctx: restate.Context, value: dict[str, Any]) -> dict[str, Any]:
    for step in range(TASK_CHAIN_LENGTH):
        value = await ctx.run_typed(f"step{step}", increment, value=value)
    return value


@bench.handler()
async def w2(ctx: restate.Context, request: dict[str, Any]) -> list[dict[str, Any]]:
    futures = [
        ctx.run_typed(f"add{index}", increment, value={"v": item})
        for index, item in enumerate(request["items"])
    ]
    await restate.gather(*futures)
    return [await future for future in futures]


app = restate.app(services=[bench])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def _post(port: int, path: str, body: Any, conn: http.client.HTTPConnection | None = None) -> Any:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if own:
        conn.close()
    if response.status >= 300:
        raise SystemExit(f"POST {path}: {response.status} {data[:500]!r}")
    return json.loads(data) if data else None


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", choices=["W1", "W2"], required=True)
    parser.add_argument("--execs", type=int, default=200)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="restate-bench-"))
    ingress, admin, fabric, pgsql, service = (_free_port() for _ in range(5))
    env = {
        **os.environ,
        "RESTATE_BASE_DIR": str(base),
        "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
        "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
        "RESTATE_ADMIN__QUERY_ENGINE__PGSQL_BIND_ADDRESS": f"127.0.0.1:{pgsql}",
        "RESTATE_BIND_ADDRESS": f"127.0.0.1:{fabric}",
        "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{fabric}",
        "RESTATE_DISABLE_TELEMETRY": "true",
        "RESTATE_LISTEN_MODE": "tcp",
    }
    log = open(base / "server.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen([str(SERVER_BIN), "--no-logo"], env=env, stdout=log, stderr=log)
    svc = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{service}", "peer_restate:app"],
        cwd=HERE, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        _wait_port(admin)
        _wait_port(ingress)
        _wait_port(service)
        deadline = time.monotonic() + 60
        while True:
            try:
                _post(admin, "/deployments", {"uri": f"http://127.0.0.1:{service}"})
                break
            except (SystemExit, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        # One warm-up invocation, as the other peers' schema set-up happens before timing.
        _post(ingress, "/Bench/w1", {"v": 0})
        conn = http.client.HTTPConnection("127.0.0.1", ingress, timeout=120)
        started = time.perf_counter()
        if args.workload == "W1":
            execs = args.execs
            for _ in range(execs):
                out = _post(ingress, "/Bench/w1", {"v": 0}, conn)
                if out != {"v": TASK_CHAIN_LENGTH}:
                    raise SystemExit(f"W1 returned {out!r}")
            steps = execs * TASK_CHAIN_LENGTH
        else:
            execs, steps = 1, MAP_ITEMS
            items = list(range(MAP_ITEMS))
            result = _post(ingress, "/Bench/w2", {"items": items}, conn)
            if result != [{"v": item + 1} for item in items]:
                raise SystemExit(f"W2 returned {result!r}")
        wall = time.perf_counter() - started
        conn.close()
        rss = _peak_rss_mb(server.pid) + _peak_rss_mb(svc.pid)
    finally:
        for process in (svc, server):
            process.send_signal(signal.SIGTERM)
        for process in (svc, server):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
        shutil.rmtree(base, ignore_errors=True)
    from importlib.metadata import version

    report = {
        "walls": [wall],
        "execs": execs,
        "steps": steps,
        "peak_rss_mb": rss,
        "version": version("restate-sdk"),
    }
    print("CHILD " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
