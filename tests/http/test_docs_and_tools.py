"""The README's boto3 example runs as printed; the HTTP benchmark runs; the pure parts hold.

The example runs unchanged against a real server (only its endpoint_url
is swapped for the test server's port). The benchmark is run at a tiny size
to check that it works and reports both operations, never how fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.arns import Arns, InvalidArnText, parse_arn
from engine.http.server import ServeOptions, UnsafeBind, check_bind
from engine.http.sigv4 import KeysUnreadable, load_keys
from tests.http.support import ROOT, Server


def test_readme_boto3_example_runs(sqlite_url: str, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use the AWS SDK and CLI\n")[1]
    example = section.split("```python\n")[1].split("```")[0]
    server = Server(sqlite_url, tmp_path / "server.log").start()
    try:
        script = tmp_path / "example.py"
        script.write_text(example.replace("http://127.0.0.1:8083", server.url))
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == 'SUCCEEDED {"greeting":"Hello, world!"}'
    assert (
        json.loads(second.replace("'", '"'))
        == [
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded",
        ]
        or len(json.loads(second.replace("'", '"'))) == 5
    )


def test_http_benchmark_reports_both_operations() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/http_api.py", "--requests", "5", "--clients", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("HTTP ")]
    assert [line.split()[2] for line in lines] == ["op=StartExecution", "op=DescribeExecution"]
    for line in lines:
        fields = dict(part.split("=", 1) for part in line.split()[1:])
        assert fields["requests"] == "5"
        assert float(fields["p50_ms"]) > 0


def test_arns_in_any_region_name_the_same_resource() -> None:
    arns = Arns()
    assert arns.execution("m", "e") == "arn:aws:states:us-east-1:000000000000:execution:m:e"
    for text in (
        "arn:aws:states:local:000000000000:execution:m:e",
        "arn:aws:states:eu-west-1:123456789012:execution:m:e",
    ):
        parsed = parse_arn(text, kinds=("execution",))
        assert (parsed.resource, parsed.qualifier) == ("m", "e")
        assert arns.reformat(text) == arns.execution("m", "e")
    assert parse_arn(arns.state_machine("m", 3)).version == 3
    assert parse_arn(arns.state_machine("m", "prod")).alias == "prod"
    assert Arns(region="eu-central-1", account="123456789012").activity("a") == (
        "arn:aws:states:eu-central-1:123456789012:activity:a"
    )
    for bad in ("", "arn:aws:s3:::bucket", "arn:aws:states:us-east-1:1:execution:m:e",
                "arn:aws:states:us-east-1:000000000000:execution:m",
                "arn:aws:states:us-east-1:000000000000:stateMachine:m:1:2"):  # fmt: skip
        with pytest.raises(InvalidArnText):
            parse_arn(bad)
    with pytest.raises(InvalidArnText):
        parse_arn(arns.state_machine("m"), kinds=("execution",))
    with pytest.raises(ValueError):
        Arns(account="12")


def test_keys_and_bind_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\nAKID1:secret/one\n\nAKID2:secret+two\n")
    assert load_keys(str(keys)) == {"AKID1": "secret/one", "AKID2": "secret+two"}
    monkeypatch.setenv("SFN_KEYS", "A:x,B:y")
    assert load_keys("env:SFN_KEYS") == {"A": "x", "B": "y"}
    for broken in ("", "no-colon"):
        keys.write_text(broken)
        with pytest.raises(KeysUnreadable):
            load_keys(str(keys))
    with pytest.raises(KeysUnreadable):
        load_keys("env:SFN_KEYS_MISSING")
    check_bind(ServeOptions(host="127.0.0.1"))
    check_bind(ServeOptions(host="::1"))
    check_bind(ServeOptions(host="0.0.0.0", keys={"A": "x"}))
    check_bind(ServeOptions(host="0.0.0.0", allow_unauthenticated=True))
    with pytest.raises(UnsafeBind):
        check_bind(ServeOptions(host="0.0.0.0"))
    with pytest.raises(UnsafeBind):
        check_bind(ServeOptions(host="192.0.2.10"))


def test_serve_command_imports_nothing_heavy() -> None:
    probe = (
        "import sys, engine.cli.serve, engine.http; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'engine.http.app') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_http_package_exports_are_pinned() -> None:
    import engine.http

    assert sorted(engine.http.__all__) == ["AppSettings", "ServeOptions", "create_app", "serve"]
    for name in engine.http.__all__:
        assert getattr(engine.http, name) is not None
    with pytest.raises(AttributeError):
        engine.http.nothing_here  # noqa: B018
