"""The peers `run.py --peers` measures beside Stepwise: their environments and their runs.

Each peer lives in its own virtual environment under `benchmarks/.peers/`
(git-ignored), created on first use with pip from PyPI: DBOS Transact
(`dbos-venv`: `dbos`) and Restate (`restate-venv`: `restate-sdk`,
`hypercorn`; its server from npm's `@restatedev/restate-server` into
`.peers/restate`). A peer whose environment cannot be made is reported on
a `SKIP` line with the reason, never silently left out. Each run of a peer
is its own subprocess (`peer_dbos.py`, `peer_restate.py`) printing the
same `CHILD {json}` report as Stepwise's children, so the same summary
and RESULT lines serve all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PEERS", "PEER_WORKLOADS", "Peer", "PeerUnavailable", "ensure", "run_peer"]

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / ".peers"
PEER_WORKLOADS = ("W1", "W2")
CHILD_MARKER = "CHILD "


class PeerUnavailable(Exception):
    """A peer's environment could not be made (no npm, no registry, a failed install)."""


@dataclass(frozen=True)
class Peer:
    """One peer: its name, its venv, what pip installs there, its child script."""

    name: str
    venv: Path
    packages: tuple[str, ...]
    script: Path
    npm_package: str = ""
    npm_dir: Path | None = None
    uses_postgres: bool = True

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


PEERS = {
    "dbos": Peer("dbos", PEERS_DIR / "dbos-venv", ("dbos",), HERE / "peer_dbos.py"),
    "restate": Peer(
        "restate",
        PEERS_DIR / "restate-venv",
        ("restate-sdk", "hypercorn"),
        HERE / "peer_restate.py",
        npm_package="@restatedev/restate-server",
        npm_dir=PEERS_DIR / "restate",
        uses_postgres=False,
    ),
}


def _run(argv: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PeerUnavailable(
            f"{' '.join(argv[:4])} … failed: {(done.stderr or done.stdout)[-800:]}"
        )


def ensure(peer: Peer) -> None:
    """Create `peer`'s environment if it is missing; raises PeerUnavailable when it cannot."""
    if peer.npm_package and peer.npm_dir is not None:
        marker = peer.npm_dir / "node_modules" / peer.npm_package / "package.json"
        if not marker.exists():
            npm = shutil.which("npm")
            if npm is None:
                raise PeerUnavailable(
                    f"{peer.name}: npm is not installed (its server ships on npm)"
                )
            peer.npm_dir.mkdir(parents=True, exist_ok=True)
            _run([npm, "install", "--no-audit", "--no-fund", peer.npm_package], cwd=peer.npm_dir)
    if peer.python.exists():
        return
    _run([sys.executable, "-m", "venv", str(peer.venv)])
    try:
        _run([str(peer.python), "-m", "pip", "install", "-q", *peer.packages])
    except PeerUnavailable:
        shutil.rmtree(peer.venv, ignore_errors=True)
        raise


def run_peer(peer: Peer, workload: str, execs: int, runs: int, admin_url: str) -> dict[str, object]:
    """Run `workload` `runs` times, each in a fresh subprocess; the merged CHILD report.

    Walls are one per run; peak RSS is the largest run's. Raises SystemExit
    when a run fails or returns a wrong output.
    """
    walls: list[float] = []
    merged: dict[str, object] = {}
    for _ in range(runs):
        argv = [str(peer.python), str(peer.script), "--workload", workload, "--execs", str(execs)]
        if peer.uses_postgres:
            argv += ["--admin", admin_url]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=HERE, check=False)
        report = None
        for line in done.stdout.splitlines():
            if line.startswith(CHILD_MARKER):
                report = json.loads(line[len(CHILD_MARKER) :])
        if report is None:
            sys.stderr.write(done.stderr[-3000:])
            raise SystemExit(f"peer {peer.name} {workload} failed (exit {done.returncode})")
        walls.extend(report["walls"])
        rss = max(float(merged.get("peak_rss_mb", 0.0)), float(report["peak_rss_mb"]))  # type: ignore[arg-type]
        merged = {**report, "peak_rss_mb": rss}
    merged["walls"] = walls
    return merged
