"""The HTTP built-in: Step Functions' HTTP Task (``arn:aws:states:::http:invoke``) run locally.

The Task's effective input carries ApiEndpoint, Method, Headers,
QueryParameters, RequestBody and Authentication as AWS's HTTP Task takes
them; the result is ``{"StatusCode", "StatusText", "Headers",
"ResponseBody"}``. Because the input may come from anyone, the call obeys
the operator's `HttpPolicy` (activities/netpolicy.py) and nothing else:

- only ``http`` and ``https`` URLs, without credentials in them;
- every address the host name resolves to is checked before connecting,
  the connection goes to a checked address (no second lookup, so DNS
  rebinding cannot swap it), and redirects are followed here, hop by hop,
  each hop checked the same way (at most `HttpPolicy.max_redirects`);
- credentials come only from the operator's named connections
  (``"Authentication": {"ConnectionArn": "arn:aws:events:…:connection/NAME/…"}``);
  ``Authorization``, ``Proxy-Authorization`` and ``Cookie`` headers in the
  Task's parameters are refused, and a connection's headers are dropped on
  a redirect to another origin;
- the response body is read in chunks and reading stops at
  `HttpPolicy.max_response_bytes`; the whole call, redirects included, ends
  at `HttpPolicy.timeout_seconds` or the Task's deadline, whichever is first.

Errors a Catch can see: ``States.Http.StatusCode.<code>`` for a non-2xx
answer (cause: the result as JSON), ``States.Http.Socket`` when the server
cannot be reached or does not answer in time, ``States.DataLimitExceeded``
for a body over the cap, ``Stepwise.Http.Forbidden`` for a call the policy
refuses, ``Stepwise.Http.TooManyRedirects`` and
``Stepwise.Http.ConnectionNotFound``; a malformed input is
``States.Runtime``. Request and response bodies are never logged. The call
sends the context's ``traceparent``. TestState at TRACE watches a call
through `observing` (each request sent and the response read, AWS's
InspectionDataRequest/Response shapes, credential header values redacted).
Standard library only.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from activities.builtins import HTTP_RESOURCE
from activities.netpolicy import HttpConnection, HttpPolicy, IPAddress
from activities.registry import ActivityContext, ActivityError

if TYPE_CHECKING:
    # http.client (and the email package under it) loads with the first call.
    import http.client
    from http.client import HTTPResponse

__all__ = ["HTTP_RESOURCE", "HttpObserver", "http_invoke", "observing", "pinned_connection"]

FORBIDDEN = "Stepwise.Http.Forbidden"
SOCKET = "States.Http.Socket"
TOO_LARGE = "States.DataLimitExceeded"
TOO_MANY_REDIRECTS = "Stepwise.Http.TooManyRedirects"
CONNECTION_NOT_FOUND = "Stepwise.Http.ConnectionNotFound"
RUNTIME = "States.Runtime"

_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 65_536
REDACTED = "*** redacted ***"
# Response headers whose values are secrets too.
_SECRET_RESPONSE_HEADERS = frozenset({"set-cookie", "set-cookie2", "www-authenticate"})

# Called with ("request", InspectionDataRequest) before each hop is sent and
# ("response", InspectionDataResponse) once the last response is read.
HttpObserver = Callable[[str, dict[str, str]], None]
_observers: dict[str, HttpObserver] = {}
_observers_lock = threading.Lock()


@contextmanager
def observing(execution_id: str, observer: HttpObserver) -> Iterator[None]:
    """Within the block, hand `observer` what execution `execution_id`'s HTTP Tasks exchange.

    What it sees is what TestState's TRACE shows: all values are strings, as
    AWS's shapes have them, and the values of credential headers (the
    connection's, Authorization, Cookie, Set-Cookie, …) are redacted.
    """
    with _observers_lock:
        _observers[execution_id] = observer
    try:
        yield
    finally:
        with _observers_lock:
            _observers.pop(execution_id, None)


def _render_headers(headers: list[tuple[str, str]], secret: frozenset[str]) -> str:
    shown = [f"{k}: {REDACTED if k.lower() in secret else v}" for k, v in headers]
    return f"[{', '.join(shown)}]"


def _observed_request(
    target: _Target,
    method: str,
    headers: dict[str, str],
    body: bytes | None,
    secret: frozenset[str],
) -> dict[str, str]:
    return {
        "protocol": target.scheme,
        "method": method,
        "url": target.url,
        "headers": _render_headers(list(headers.items()), secret),
        "body": (body or b"").decode("utf-8", errors="replace"),
    }


def _reason(status: int) -> str:
    """The standard reason phrase of `status` ("" for a code it does not know)."""
    from http.client import responses

    return responses.get(status, "")


def _observed_response(target: _Target, response: HTTPResponse, raw: bytes) -> dict[str, str]:
    status = int(response.status or 0)
    return {
        "protocol": target.scheme,
        "statusCode": str(status),
        "statusMessage": response.reason or _reason(status),
        "headers": _render_headers(response.headers.items(), _SECRET_RESPONSE_HEADERS),
        "body": raw.decode("utf-8", errors="replace"),
    }


# Before the engine hands the operator's policy in (issue 11's wiring), loopback and
# private addresses stay reachable as they always were; every other rule applies.
_UNWIRED_POLICY = HttpPolicy(allow=("*",))


def _query(parameters: Any) -> str:
    if not parameters:
        return ""
    if not isinstance(parameters, dict):
        raise ActivityError(RUNTIME, "QueryParameters must be a JSON object.")
    pairs: list[tuple[str, str]] = []
    for name, value in parameters.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            text = item if isinstance(item, str) else json.dumps(item)
            pairs.append((str(name), text))
    return urllib.parse.urlencode(pairs)


def _body(input: dict[str, Any], headers: dict[str, str]) -> bytes | None:
    if "RequestBody" not in input or input["RequestBody"] is None:
        return None
    body = input["RequestBody"]
    encoding = (input.get("Transform") or {}).get("RequestBodyEncoding", "NONE")
    if encoding == "URL_ENCODED" and isinstance(body, dict):
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return _query(body).encode()
    if isinstance(body, str):
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body.encode()
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body).encode()


@dataclass(frozen=True)
class _Target:
    """One hop's URL, split and checked for scheme and credentials."""

    url: str
    scheme: str
    host: str
    port: int
    path: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host.lower(), self.port)


def _target(url: str) -> _Target:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as failure:
        raise ActivityError(RUNTIME, f"ApiEndpoint is not a valid URL: {failure}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ActivityError(
            FORBIDDEN,
            f"The HTTP Task calls only http and https URLs, not {scheme or 'a relative'!r} ones.",
        )
    if parts.username is not None or parts.password is not None:
        raise ActivityError(
            FORBIDDEN,
            "Credentials in the URL are refused; the operator keeps credentials in a "
            "connection the Task names in Authentication.ConnectionArn.",
        )
    if not parts.hostname:
        raise ActivityError(RUNTIME, f"ApiEndpoint {url!r} has no host.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return _Target(url, scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


def _connection(input: dict[str, Any], policy: HttpPolicy) -> HttpConnection | None:
    authentication = input.get("Authentication")
    if authentication is None:
        return None
    reference = authentication.get("ConnectionArn") if isinstance(authentication, dict) else None
    if not isinstance(reference, str):
        raise ActivityError(RUNTIME, "Authentication needs a ConnectionArn string.")
    connection = policy.connection(reference)
    if connection is None:
        raise ActivityError(
            CONNECTION_NOT_FOUND,
            f"No connection for {reference!r} is configured by the operator "
            "(Http.Connections in the resources file).",
        )
    return connection


def _check_endpoint(connection: HttpConnection, target: _Target) -> None:
    if connection.endpoint is None:
        return
    allowed = _target(connection.endpoint)
    if allowed.origin != target.origin or not target.path.startswith(allowed.path):
        raise ActivityError(
            FORBIDDEN,
            f"The connection {connection.name!r} may only be used with {connection.endpoint}.",
        )


def _resolve(target: _Target, policy: HttpPolicy) -> list[IPAddress]:
    """Every address the host resolves to, all of them allowed by `policy`, or an error."""
    refused = policy.refuse_host(target.host)
    if refused is not None:
        raise ActivityError(FORBIDDEN, f"Refused to call {target.url}: {refused}.")
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as failure:
        raise ActivityError(SOCKET, f"Cannot resolve {target.host}: {failure}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    for address in addresses:
        reason = policy.refuse_address(target.host, address)
        if reason is not None:
            raise ActivityError(FORBIDDEN, f"Refused to call {target.url}: {reason}.")
    if not addresses:
        raise ActivityError(SOCKET, f"Cannot resolve {target.host}: no addresses.")
    return addresses


class _Clock:
    """The one deadline of a whole call, redirects included."""

    def __init__(self, policy: HttpPolicy, context: ActivityContext) -> None:
        seconds = policy.timeout_seconds
        if context.deadline is not None:
            seconds = min(seconds, (context.deadline - datetime.now(UTC)).total_seconds())
        self.ends = time.monotonic() + max(0.1, seconds)

    def remaining(self) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise ActivityError(SOCKET, "TimeoutError: the HTTP call did not finish in time")
        return left


def _connect(
    target: _Target, addresses: list[IPAddress], clock: _Clock
) -> http.client.HTTPConnection:
    """A connection to `target` that connects only to the checked `addresses`."""
    return pinned_connection(target.scheme, target.host, target.port, addresses, clock.remaining)


def pinned_connection(
    scheme: str,
    host: str,
    port: int,
    addresses: Sequence[IPAddress],
    remaining: Callable[[], float],
) -> http.client.HTTPConnection:
    """An HTTP(S) connection to `host` whose socket goes only to the checked `addresses`.

    No second DNS lookup happens, so a name that re-resolves between the
    policy check and the connect (DNS rebinding) cannot move the request.
    The host name is still what TLS verifies and what the Host header says.
    `remaining` gives the seconds left for each connect attempt.
    """
    import http.client

    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = http.client.HTTPSConnection(
            host, port, timeout=remaining(), context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=remaining())

    def pinned(_: Any, timeout: Any = None, source: Any = None) -> socket.socket:
        last: OSError | None = None
        for address in addresses:
            try:
                return socket.create_connection((str(address), port), remaining())
            except OSError as failure:
                last = failure
        assert last is not None
        raise last

    connection._create_connection = pinned  # type: ignore[attr-defined]
    return connection


def _read_body(
    response: HTTPResponse,
    stream: socket.socket | None,
    policy: HttpPolicy,
    clock: _Clock,
) -> bytes:
    limit = policy.max_response_bytes
    too_large = ActivityError(
        TOO_LARGE,
        f"The HTTP response body is larger than {limit} bytes, the most the HTTP Task "
        "reads; reading stopped there.",
    )
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    while True:
        # The deadline is the whole call's: each wait gets only what is left of it.
        remaining = clock.remaining()
        # From Python 3.13 the response closes its socket as soon as it has read
        # Content-Length bytes (3.11 waits for the empty read): a closed one's
        # read1 answers b"" at once, and its socket takes no timeout (EBADF).
        if stream is not None and not response.isclosed():
            stream.settimeout(remaining)
        # read1: whatever has arrived, so a slow drip cannot outlast the deadline.
        chunk = response.read1(min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)


def _result(response: HTTPResponse, raw: bytes) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace")
    content_type = response.headers.get("Content-Type", "")
    body: Any = text
    if "json" in content_type:
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    headers: dict[str, list[str]] = {}
    for name, value in response.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    status = int(response.status or 0)
    return {
        "StatusCode": status,
        "StatusText": response.reason or _reason(status),
        "Headers": headers,
        "ResponseBody": body,
    }


def _headers(input: dict[str, Any]) -> dict[str, str]:
    raw_headers = input.get("Headers") or {}
    if not isinstance(raw_headers, dict):
        raise ActivityError(RUNTIME, "Headers must be a JSON object.")
    headers = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_headers.items()}
    for name in headers:
        if name.lower() in _CREDENTIAL_HEADERS:
            raise ActivityError(
                FORBIDDEN,
                f"The {name} header cannot be set in the HTTP Task's parameters; the operator "
                "keeps credentials in a connection the Task names in "
                "Authentication.ConnectionArn.",
            )
    return headers


def _redirect(
    response: HTTPResponse, target: _Target, method: str, body: bytes | None
) -> tuple[str, str, bytes | None] | None:
    """(next URL, method, body) when `response` is a redirect to follow, as urllib follows them."""
    location = response.getheader("Location")
    if response.status not in _REDIRECTS or not location:
        return None
    if method in ("GET", "HEAD"):
        return urllib.parse.urljoin(target.url, location), method, None
    if method == "POST" and response.status in (301, 302, 303):
        return urllib.parse.urljoin(target.url, location), "GET", None
    return None


def _call(
    input: dict[str, Any],
    context: ActivityContext,
    policy: HttpPolicy,
    observe: HttpObserver | None = None,
) -> dict[str, Any]:
    method = str(input.get("Method", "GET")).upper()
    headers = _headers(input)
    url = input["ApiEndpoint"]
    query = _query(input.get("QueryParameters"))
    if query:
        url = f"{url}{'&' if '?' in url else '?'}{query}"
    target = _target(url)
    credentials = _connection(input, policy)
    if credentials is not None:
        _check_endpoint(credentials, target)
    body = _body(input, headers)
    if context.traceparent:
        headers.setdefault("traceparent", context.traceparent)
    headers.setdefault("User-Agent", "Stepwise-HTTP-Task")
    clock = _Clock(policy, context)
    first_origin = target.origin
    secret = _CREDENTIAL_HEADERS | frozenset(
        name.lower() for name in (credentials.headers if credentials is not None else {})
    )
    for _ in range(policy.max_redirects + 1):
        addresses = _resolve(target, policy)
        sent = dict(headers)
        if credentials is not None and target.origin == first_origin:
            sent.update(credentials.headers)
        connection = _connect(target, addresses, clock)
        if observe is not None:
            observe("request", _observed_request(target, method, sent, body, secret))
        try:
            connection.request(method, target.path, body=body, headers=sent)
            # Kept: http.client lets go of the socket once the response is the last one.
            stream = connection.sock
            if stream is not None:
                stream.settimeout(clock.remaining())
            response = connection.getresponse()
            follow = _redirect(response, target, method, body)
            if follow is None:
                raw = _read_body(response, stream, policy, clock)
                if observe is not None:
                    observe("response", _observed_response(target, response, raw))
                return _result(response, raw)
        finally:
            connection.close()
        url, method, body = follow
        if body is None:
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        target = _target(url)
    raise ActivityError(
        TOO_MANY_REDIRECTS,
        f"More than {policy.max_redirects} redirects, the most the HTTP Task follows.",
    )


def http_invoke(
    input: Any, context: ActivityContext, *, policy: HttpPolicy | None = None
) -> dict[str, Any]:
    """Make the request the input describes, as `policy` permits, and return AWS's result.

    `policy` is the operator's (``registry.http_policy``); None — a caller
    that does not pass one yet — keeps loopback and private addresses
    reachable and applies every other rule.

    Raises ActivityError: ``States.Http.StatusCode.<n>`` for a non-2xx status
    (cause: the result as JSON), ``States.Http.Socket`` when the server cannot
    be reached or does not answer in time, ``States.DataLimitExceeded`` for a
    body over the cap, ``Stepwise.Http.Forbidden`` for what the policy refuses,
    ``Stepwise.Http.TooManyRedirects``, ``Stepwise.Http.ConnectionNotFound``,
    and ``States.Runtime`` for a malformed input.
    """
    if not isinstance(input, dict) or not isinstance(input.get("ApiEndpoint"), str):
        raise ActivityError(RUNTIME, "The HTTP Task needs an ApiEndpoint string.")
    import http.client

    try:
        with _observers_lock:
            observe = _observers.get(context.execution_id)
        result = _call(input, context, policy or _UNWIRED_POLICY, observe)
    except ActivityError:
        raise
    except (TimeoutError, OSError, http.client.HTTPException) as failure:
        raise ActivityError(SOCKET, f"{type(failure).__name__}: {failure}") from None
    except ValueError as failure:  # a header value with a line break, a non-Latin-1 header
        raise ActivityError(RUNTIME, f"The request cannot be sent: {failure}") from None
    if not 200 <= result["StatusCode"] < 300:
        raise ActivityError(f"States.Http.StatusCode.{result['StatusCode']}", json.dumps(result))
    return result
