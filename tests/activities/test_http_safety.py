"""The HTTP built-in cannot be turned against the host: the attacks of issue 11 replayed
against real servers on 127.0.0.1 — a loopback target that receives nothing unless the
operator allowed it, file:// and gopher://, the cloud metadata address, a redirect to a
forbidden server, an endless body, credentials from the input — and the operator's
connections and resources-file section that configure it."""

from __future__ import annotations

import ipaddress
import json
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from activities import ActivityContext, ActivityError, Registry
from activities.http import http_invoke
from activities.mapping import MappingError, load_mapping
from activities.netpolicy import HttpPolicy, PolicyError, parse_allow, parse_connection
from engine import Engine
from statemachine.quotas import MAX_PAYLOAD_BYTES

CONTEXT = ActivityContext("e", "S", 0, "k", "r")
NOT_ALLOWED = (
    "the operator has not allowed it (--allow-http-to or Http.Allow in the resources file)"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.seen: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        if self.path.startswith("/redirect/"):
            self.send_response(int(self.path.split("?", 1)[0].split("/")[2]))
            self.send_header("Location", self.path.split("?to=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/endless":
            self._stream(b"x" * 65_536, pause=0.0)
        elif self.path == "/drip":
            self._stream(b"x", pause=0.2)
        elif self.path == "/declared-huge":
            self.send_response(200)
            self.send_header("Content-Length", str(2 * 1024**3))
            self.end_headers()
            self._stream(b"x" * 65_536, pause=0.0, headers=False)
        else:
            payload = json.dumps({"path": self.path, "method": self.command}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def _stream(self, chunk: bytes, *, pause: float, headers: bool = True) -> None:
        if headers:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
        sent = 0
        # Forever, as far as the client can tell: until it hangs up (or 4 GiB / 10 s, or shutdown).
        limit = 4 * 1024**3 if len(chunk) > 1 else 50
        while sent < limit and not self.server.stopping.is_set():
            try:
                self.wfile.write(chunk)
                self.wfile.flush()
            except OSError:
                return
            sent += len(chunk)
            if pause:
                time.sleep(pause)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        pass


def _serve(host: str) -> Iterator[_Server]:
    httpd = _Server(host)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.stopping.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _serve("127.0.0.1")


@pytest.fixture
def other_server() -> Iterator[_Server]:
    """A second loopback server, on another address the policy can tell apart."""
    yield from _serve("127.0.0.2")


def _refused(input: dict[str, Any], policy: HttpPolicy) -> ActivityError:
    with pytest.raises(ActivityError) as raised:
        http_invoke(input, CONTEXT, policy=policy)
    return raised.value


def test_a_loopback_target_receives_nothing_unless_allowed(server: _Server) -> None:
    url = f"{server.url}/hello"
    failure = _refused({"ApiEndpoint": url}, HttpPolicy())
    assert failure.error == "Stepwise.Http.Forbidden"
    assert (
        failure.cause == f"Refused to call {url}: 127.0.0.1 is a loopback address; {NOT_ALLOWED}."
    )
    assert server.seen == []
    for allow in ("127.0.0.1", "127.0.0.0/8", "*"):
        result = http_invoke({"ApiEndpoint": url}, CONTEXT, policy=HttpPolicy(allow=(allow,)))
        assert result["StatusCode"] == 200 and result["ResponseBody"]["path"] == "/hello"
    assert len(server.seen) == 3


def test_every_resolved_address_is_checked(server: _Server) -> None:
    url = f"http://localhost:{server.server_address[1]}/named"
    failure = _refused({"ApiEndpoint": url}, HttpPolicy())
    assert failure.error == "Stepwise.Http.Forbidden"
    assert failure.cause is not None and failure.cause.startswith(
        f"Refused to call {url}: localhost ("
    )
    assert "is a loopback address" in failure.cause
    assert server.seen == []
    # Allowed by name: whatever localhost resolves to may be called.
    result = http_invoke({"ApiEndpoint": url}, CONTEXT, policy=HttpPolicy(allow=("localhost",)))
    assert result["ResponseBody"]["path"] == "/named"
    # Private addresses, CGNAT, the unspecified address and IPv4 inside IPv6 are not public.
    policy = HttpPolicy()
    for host, kind in [
        ("10.1.2.3", "a private address"),
        ("192.168.0.1", "a private address"),
        ("100.64.0.1", "a non-public address"),
        ("0.0.0.0", "the unspecified address"),
        ("[::1]", "a loopback address"),
        ("[fd12::1]", "a private address"),
        ("[::ffff:127.0.0.1]", "a loopback address inside an IPv6 address"),
    ]:
        failure = _refused({"ApiEndpoint": f"http://{host}:9/"}, policy)
        assert failure.error == "Stepwise.Http.Forbidden", host
        assert f"is {kind}; the operator has not allowed it" in (failure.cause or ""), host


def test_only_http_and_https_are_called() -> None:
    everything = HttpPolicy(allow=("*",))
    for url, scheme in [
        ("file:///etc/shadow", "file"),
        ("gopher://127.0.0.1:70/_stats", "gopher"),
        ("ftp://example.com/", "ftp"),
        ("/relative/path", ""),
    ]:
        failure = _refused({"ApiEndpoint": url}, everything)
        assert failure.error == "Stepwise.Http.Forbidden"
        shown = repr(scheme) if scheme else "'a relative'"
        assert failure.cause == f"The HTTP Task calls only http and https URLs, not {shown} ones."
    failure = _refused({"ApiEndpoint": "http://user:pw@example.com/"}, everything)
    assert failure.error == "Stepwise.Http.Forbidden"
    assert failure.cause == (
        "Credentials in the URL are refused; the operator keeps credentials in a "
        "connection the Task names in Authentication.ConnectionArn."
    )


def test_link_local_and_metadata_are_refused_even_when_everything_is_allowed() -> None:
    for allow in ("*", "0.0.0.0/0", "169.254.0.0/16"):
        policy = HttpPolicy(allow=(allow, "::/0"))
        for url, reason in [
            (
                "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
                "169.254.169.254 is a cloud metadata address",
            ),
            ("http://169.254.170.2/v2/credentials", "169.254.170.2 is a cloud metadata address"),
            ("http://[fd00:ec2::254]/latest/", "fd00:ec2::254 is a cloud metadata address"),
            (
                "http://[::ffff:169.254.169.254]/",
                # the interpreter's own spelling: ::ffff:a9fe:a9fe before Python
                # 3.13, ::ffff:169.254.169.254 from 3.13 on
                f"{ipaddress.ip_address('::ffff:169.254.169.254')} is a cloud metadata address",
            ),
            ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
            ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ]:
            failure = _refused({"ApiEndpoint": url}, policy)
            assert failure.error == "Stepwise.Http.Forbidden", url
            assert failure.cause == (
                f"Refused to call {url}: {reason}, which the HTTP Task never calls."
            ), url
    failure = _refused(
        {"ApiEndpoint": "http://metadata.google.internal/computeMetadata/v1/"},
        HttpPolicy(allow=("*",)),
    )
    assert failure.cause == (
        "Refused to call http://metadata.google.internal/computeMetadata/v1/: "
        "metadata.google.internal is a cloud metadata service."
    )


def test_each_redirect_hop_is_checked(server: _Server, other_server: _Server) -> None:
    secret = f"{other_server.url}/secret"
    policy = HttpPolicy(allow=("127.0.0.1",))
    for status in (301, 302, 303, 307, 308):
        url = f"{server.url}/redirect/{status}?to={secret}"
        failure = _refused({"ApiEndpoint": url}, policy)
        assert failure.error == "Stepwise.Http.Forbidden"
        assert failure.cause == (
            f"Refused to call {secret}: 127.0.0.2 is a loopback address; {NOT_ALLOWED}."
        )
    assert len(server.seen) == 5 and other_server.seen == []
    metadata = "http://169.254.169.254/latest/meta-data/"
    failure = _refused(
        {"ApiEndpoint": f"{server.url}/redirect/302?to={metadata}"}, HttpPolicy(allow=("*",))
    )
    assert failure.cause == (
        f"Refused to call {metadata}: 169.254.169.254 is a cloud metadata address, "
        "which the HTTP Task never calls."
    )
    # Allowed hops are followed; a POST becomes a GET on 303, as urllib does.
    both = HttpPolicy(allow=("127.0.0.1", "127.0.0.2"))
    result = http_invoke(
        {
            "ApiEndpoint": f"{server.url}/redirect/303?to={secret}",
            "Method": "POST",
            "RequestBody": {},
        },
        CONTEXT,
        policy=both,
    )
    assert result["ResponseBody"] == {"path": "/secret", "method": "GET"}
    loop = f"{server.url}/redirect/302?to=/redirect/302?to=/again"
    failure = _refused({"ApiEndpoint": loop}, HttpPolicy(allow=("127.0.0.1",), max_redirects=1))
    assert failure.error == "Stepwise.Http.TooManyRedirects"
    assert failure.cause == "More than 1 redirects, the most the HTTP Task follows."


def test_an_endless_body_stops_at_the_cap_in_bounded_memory(server: _Server) -> None:
    policy = HttpPolicy(allow=("127.0.0.1",))
    tracemalloc.start()
    try:
        failure = _refused({"ApiEndpoint": f"{server.url}/endless"}, policy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert failure.error == "States.DataLimitExceeded"
    assert failure.cause == (
        f"The HTTP response body is larger than {MAX_PAYLOAD_BYTES} bytes, the most the "
        "HTTP Task reads; reading stopped there."
    )
    assert peak < 8 * MAX_PAYLOAD_BYTES
    declared = _refused({"ApiEndpoint": f"{server.url}/declared-huge"}, policy)
    assert declared.error == "States.DataLimitExceeded"
    small = _refused(
        {"ApiEndpoint": f"{server.url}/hello"}, HttpPolicy(allow=("*",), max_response_bytes=10)
    )
    assert small.cause is not None and "larger than 10 bytes" in small.cause


def test_a_body_that_never_ends_slowly_stops_at_the_time_cap(server: _Server) -> None:
    policy = HttpPolicy(allow=("127.0.0.1",), timeout_seconds=1.0)
    failure = _refused({"ApiEndpoint": f"{server.url}/drip"}, policy)
    assert failure.error == "States.Http.Socket"
    assert (failure.cause or "").startswith("TimeoutError: ")


BILLING = parse_connection("billing", {"Bearer": "s3cret", "Headers": {"X-Tenant": "acme"}})
ARN = "arn:aws:events:us-east-1:123456789012:connection/billing/5d9e7c1a-0000"


def test_credentials_come_from_the_operators_connection_only(
    server: _Server, other_server: _Server
) -> None:
    policy = HttpPolicy(allow=("127.0.0.1", "127.0.0.2"), connections={"billing": BILLING})
    result = http_invoke(
        {"ApiEndpoint": f"{server.url}/pay", "Authentication": {"ConnectionArn": ARN}},
        CONTEXT,
        policy=policy,
    )
    assert result["StatusCode"] == 200
    assert server.seen[-1]["headers"]["authorization"] == "Bearer s3cret"
    assert server.seen[-1]["headers"]["x-tenant"] == "acme"
    for header in ("Authorization", "proxy-authorization", "Cookie"):
        failure = _refused(
            {"ApiEndpoint": f"{server.url}/pay", "Headers": {header: "Bearer stolen"}}, policy
        )
        assert failure.error == "Stepwise.Http.Forbidden"
        assert failure.cause == (
            f"The {header} header cannot be set in the HTTP Task's parameters; the operator "
            "keeps credentials in a connection the Task names in Authentication.ConnectionArn."
        )
    assert len(server.seen) == 1
    missing = _refused(
        {"ApiEndpoint": server.url, "Authentication": {"ConnectionArn": "connection/nope/1"}},
        policy,
    )
    assert missing.error == "Stepwise.Http.ConnectionNotFound"
    assert missing.cause == (
        "No connection for 'connection/nope/1' is configured by the operator "
        "(Http.Connections in the resources file)."
    )
    # A redirect to another origin does not carry the connection's credentials along.
    http_invoke(
        {
            "ApiEndpoint": f"{server.url}/redirect/302?to={other_server.url}/elsewhere",
            "Authentication": {"ConnectionArn": ARN},
        },
        CONTEXT,
        policy=policy,
    )
    assert server.seen[-1]["headers"]["authorization"] == "Bearer s3cret"
    assert "authorization" not in other_server.seen[-1]["headers"]
    # A connection pinned to an endpoint is not sent anywhere else.
    pinned = parse_connection("billing", {"Bearer": "s3cret", "Endpoint": f"{server.url}/pay"})
    failure = _refused(
        {"ApiEndpoint": f"{other_server.url}/pay", "Authentication": {"ConnectionArn": ARN}},
        HttpPolicy(allow=("*",), connections={"billing": pinned}),
    )
    assert failure.error == "Stepwise.Http.Forbidden"
    assert failure.cause == f"The connection 'billing' may only be used with {server.url}/pay."


def test_connection_shapes_and_allow_entries() -> None:
    basic = parse_connection("b", {"Basic": {"Username": "u", "Password": "p"}})
    assert basic.headers == {"Authorization": "Basic dTpw"}
    key = parse_connection("k", {"ApiKey": {"Name": "x-api-key", "Value": "v"}})
    assert key.headers == {"x-api-key": "v"}
    with pytest.raises(PolicyError, match="unknown fields Password"):
        parse_connection("x", {"Password": "p"})
    assert parse_allow(["10.0.0.0/8", "127.0.0.1", "Billing.Internal.", "*.svc", "*"]) == (
        "10.0.0.0/8",
        "127.0.0.1/32",
        "billing.internal",
        "*.svc",
        "*",
    )
    for bad in ("http://10.0.0.1/", "10.0.0.1:80", "", "a b"):
        with pytest.raises(PolicyError):
            parse_allow([bad])


def test_registry_and_resources_file_configure_the_policy() -> None:
    registry = Registry()
    assert registry.http_policy == HttpPolicy()
    registry.allow_http_to("127.0.0.1", "*.internal")
    assert registry.http_policy.allow == ("127.0.0.1/32", "*.internal")
    load_mapping(
        {
            "Http": {
                "Allow": ["10.0.0.0/8"],
                "Connections": {"billing": {"Bearer": "t"}},
                "MaxResponseBytes": 1000,
                "TimeoutSeconds": 5,
            }
        },
        registry,
    )
    policy = registry.http_policy
    assert policy.allow == ("127.0.0.1/32", "*.internal", "10.0.0.0/8")
    assert policy.connection(ARN) == parse_connection("billing", {"Bearer": "t"})
    assert (policy.max_response_bytes, policy.timeout_seconds) == (1000, 5.0)
    merged = Registry().merged(registry)
    assert merged.http_policy == policy
    lower = load_mapping({"http": {"allow": ["192.168.0.0/16"]}}, Registry())
    assert lower.http_policy.allow == ("192.168.0.0/16",)
    for bad, message in [
        ({"Http": {"Allow": ["file:///"]}}, "Http: 'file:///' is not a CIDR"),
        ({"Http": {"Connections": {"c": {"Bearer": 1}}}}, "Http: connection 'c': Bearer"),
        ({"Http": {"Proxy": "x"}}, "Http: unknown fields Proxy"),
        ({"Http": {"TimeoutSeconds": -1}}, "Http: TimeoutSeconds must be a non-negative"),
    ]:
        with pytest.raises(MappingError, match=message):
            load_mapping(bad, Registry())


def test_refusals_and_caps_are_errors_a_catch_sees(server: _Server, sqlite_url: str) -> None:
    def task(endpoint: str, error: str, result_path: str, next_state: str) -> dict[str, Any]:
        return {
            "Type": "Task",
            "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint.$": endpoint, "Method": "GET"},
            "Catch": [{"ErrorEquals": [error], "ResultPath": result_path, "Next": next_state}],
            "End": True,
        }

    definition = {
        "StartAt": "File",
        "States": {
            "File": task("$.file", "Stepwise.Http.Forbidden", "$.file_error", "Metadata"),
            "Metadata": task("$.metadata", "States.ALL", "$.metadata_error", "Endless"),
            "Endless": task("$.endless", "States.DataLimitExceeded", "$.endless_error", "Done"),
            "Done": {"Type": "Pass", "End": True},
        },
    }
    value = {
        "file": "file:///etc/shadow",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "endless": f"{server.url}/endless",
    }

    registry = Registry()
    registry.allow_http_to("127.0.0.1")  # the endless server is on loopback

    async def main() -> Any:
        async with Engine(sqlite_url, registry=registry) as engine:
            return await engine.run(definition, value)

    record = anyio.run(main)
    assert record.status == "SUCCEEDED", record.cause
    out = json.loads(record.output)
    assert out["file_error"]["Error"] == "Stepwise.Http.Forbidden"
    assert out["metadata_error"]["Error"] == "Stepwise.Http.Forbidden"
    assert out["endless_error"]["Error"] == "States.DataLimitExceeded"


def test_https_verifies_the_host_name_while_connecting_to_the_checked_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    httpd = _Server("127.0.0.1")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        policy = HttpPolicy(allow=("localhost", "127.0.0.1"))
        untrusted = _refused({"ApiEndpoint": f"https://localhost:{port}/tls"}, policy)
        assert untrusted.error == "States.Http.Socket"
        assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.cause or "")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        result = http_invoke(
            {"ApiEndpoint": f"https://localhost:{port}/tls"}, CONTEXT, policy=policy
        )
        assert result["ResponseBody"] == {"path": "/tls", "method": "GET"}
        # The certificate names localhost, not the address the socket went to.
        by_address = _refused({"ApiEndpoint": f"https://127.0.0.1:{port}/tls"}, policy)
        assert by_address.error == "States.Http.Socket"
        assert "IP address mismatch" in (by_address.cause or "")
    finally:
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
