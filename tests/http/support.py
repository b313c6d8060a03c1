"""A real `stepwise serve` for tests: a subprocess on 127.0.0.1, and boto3 clients for it.

`Server` starts ``python -m engine.http --port 0`` on a database, reads the
port it bound from its log, waits until its engine is up (``GET /health``)
and hands out boto3 clients pointed at it with dummy credentials and
``inject_host_prefix=False``; `cli_env` is the AWS CLI's environment for it.
`stop` ends it with SIGTERM, `kill` with SIGKILL (nothing is flushed: what
was committed is all there is).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"serving the Step Functions API on http://([^\s]+):(\d+)")

ACCESS_KEY = "AKIDSTEPWISETEST"
SECRET_KEY = "stepwise-test-secret"


def cli_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment for the AWS CLI run against a test server: dummy keys, no user config."""
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(folder / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "none"),
        **extra,
    }


class Server:
    """One `python -m engine.http` subprocess."""

    def __init__(self, db_url: str, log: Path, *args: str, env: dict[str, str] | None = None):
        self.db_url = db_url
        self.log = log
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 60) -> Server:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.http", "--port", "0", "--db", self.db_url, *self.args],
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        handle.close()
        deadline = time.monotonic() + timeout
        offset = self.log.stat().st_size if self.log.exists() else 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-2000:]}")
            found = list(_LISTENING.finditer(self.log.read_text()[offset:]))
            matched = found[-1] if found else None
            if matched is not None and self._healthy(int(matched.group(2))):
                self.port = int(matched.group(2))
                return self
            time.sleep(0.05)
        raise AssertionError(f"server did not start: {self.log.read_text()[-2000:]}")

    @staticmethod
    def _healthy(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                return bool(json.loads(answer.read())["status"] == "ok")
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "stepfunctions",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=config.pop("access_key", ACCESS_KEY),
            aws_secret_access_key=config.pop("secret_key", SECRET_KEY),
            config=Config(
                inject_host_prefix=False,
                retries={"max_attempts": 1, "mode": "standard"},
                read_timeout=70,
                **config,
            ),
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
