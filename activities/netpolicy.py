"""The operator's network policy for the HTTP built-in: where it may connect, with what.

`HttpPolicy` is trusted configuration (the resources file's ``http``
section, ``--allow-http-to``, or code); nothing in a definition or an
execution's input can widen it. It decides, for every address a host name
resolves to, whether the HTTP Task may connect there:

- **always refused**, whatever the allow-list says: link-local addresses
  (169.254.0.0/16, fe80::/10) and the cloud metadata services (AWS
  169.254.169.254 and fd00:ec2::254, ECS 169.254.170.2, Alibaba
  100.100.100.200, Azure 168.63.129.16, the ``metadata.google.internal``
  family of names);
- **refused unless allowed**: every address that is not public — loopback,
  private (RFC 1918, ULA), CGNAT 100.64.0.0/10, unspecified, multicast,
  reserved and documentation ranges, and IPv4 addresses hidden inside IPv6
  (mapped, 6to4, NAT64). An allow-list entry is a CIDR (``10.0.0.0/8``), an
  address (``127.0.0.1``), a host name (``billing.internal``), a suffix
  pattern (``*.internal``) or ``*`` for every host;
- everything else (public addresses) is allowed.

It also holds the caps (response body bytes, total seconds, redirects) and
the named **connections**: credentials the operator keeps (AWS keeps them
in EventBridge connections) and a Task refers to by name, so they never
pass through a definition or an input. Pure: resolution is done by the
caller, which hands the addresses in. Imports nothing of ours.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT_SECONDS",
    "HttpConnection",
    "HttpPolicy",
    "IPAddress",
    "PolicyError",
    "parse_allow",
    "parse_connection",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# AWS's payload limit (statemachine.quotas.MAX_PAYLOAD_BYTES; activities may not import it).
DEFAULT_MAX_RESPONSE_BYTES = 262_144
# AWS's HTTP Task gives up after 60 seconds (States.Http.Socket).
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_MAX_REDIRECTS = 10

_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean …
        "169.254.170.2",  # ECS task metadata and credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
    )
)
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class PolicyError(ValueError):
    """A malformed allow-list entry or connection in the operator's configuration."""


def _host(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _always_refused(address: IPAddress) -> str | None:
    for candidate in (address, _embedded_ipv4(address)):
        if candidate is None:
            continue
        if candidate in _METADATA_ADDRESSES:
            return "a cloud metadata address"
        if any(candidate in network for network in _LINK_LOCAL):
            return "a link-local address"
    return None


def _kind(address: IPAddress) -> str | None:
    """Why `address` is not public (None when it is)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        inner = _kind(embedded)
        return f"{inner} inside an IPv6 address" if inner else None
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a non-public address"
    return None


@dataclass(frozen=True)
class HttpConnection:
    """Credentials the operator keeps under a name; a Task refers to the name only.

    `headers` are added to every request made with this connection (an
    ``Authorization`` built from Basic, Bearer or an API key, or any header
    the operator wrote). `endpoint`, when set, is the URL prefix the
    credentials may be sent to: a Task using the connection elsewhere fails.
    """

    name: str
    headers: Mapping[str, str] = field(default_factory=dict)
    endpoint: str | None = None


def parse_connection(name: str, raw: Any) -> HttpConnection:
    """A connection from the resources file's ``http.connections`` entry.

    Accepted keys (combinable): ``{"Basic": {"Username", "Password"}}``,
    ``{"Bearer": "token"}``, ``{"ApiKey": {"Name": "x-api-key", "Value": "…"}}``,
    ``{"Headers": {name: value}}`` and ``{"Endpoint": "https://api.example.com/"}``.
    Raises PolicyError for anything else.
    """
    if not isinstance(raw, Mapping):
        raise PolicyError(f"connection {name!r} must be an object")
    unknown = set(raw) - {"Basic", "Bearer", "ApiKey", "Headers", "Endpoint"}
    if unknown:
        raise PolicyError(f"connection {name!r}: unknown fields {', '.join(sorted(unknown))}")
    headers: dict[str, str] = {}
    basic = raw.get("Basic")
    if basic is not None:
        if not isinstance(basic, Mapping) or not all(
            isinstance(basic.get(k), str) for k in ("Username", "Password")
        ):
            raise PolicyError(f"connection {name!r}: Basic needs Username and Password strings")
        pair = f"{basic['Username']}:{basic['Password']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    bearer = raw.get("Bearer")
    if bearer is not None:
        if not isinstance(bearer, str):
            raise PolicyError(f"connection {name!r}: Bearer must be a token string")
        headers["Authorization"] = f"Bearer {bearer}"
    api_key = raw.get("ApiKey")
    if api_key is not None:
        if not isinstance(api_key, Mapping) or not all(
            isinstance(api_key.get(k), str) for k in ("Name", "Value")
        ):
            raise PolicyError(f"connection {name!r}: ApiKey needs Name and Value strings")
        headers[api_key["Name"]] = api_key["Value"]
    extra = raw.get("Headers") or {}
    if not isinstance(extra, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
    ):
        raise PolicyError(f"connection {name!r}: Headers must map names to strings")
    headers.update(extra)
    endpoint = raw.get("Endpoint")
    if endpoint is not None and not (
        isinstance(endpoint, str) and endpoint.startswith(("http://", "https://"))
    ):
        raise PolicyError(f"connection {name!r}: Endpoint must be an http(s) URL prefix")
    return HttpConnection(name, headers, endpoint)


def parse_allow(values: Iterable[str]) -> tuple[str, ...]:
    """Normalise ``--allow-http-to`` values (CIDR, address, host, ``*.suffix`` or ``*``).

    Returns the entries as the policy keeps them; raises PolicyError for an
    entry that is none of these (a URL, a port, an empty string).
    """
    entries: list[str] = []
    for value in values:
        entry = _host(str(value))
        if not entry:
            raise PolicyError("an allow-list entry is empty")
        if entry == "*":
            entries.append(entry)
            continue
        try:
            entries.append(str(ipaddress.ip_network(entry, strict=False)))
            continue
        except ValueError:
            pass
        name = entry[2:] if entry.startswith("*.") else entry
        if not name or any(c in name for c in "/:@*[] ") or name.startswith("."):
            raise PolicyError(
                f"{value!r} is not a CIDR, an address or a host name (for example "
                "'10.0.0.0/8', '127.0.0.1', 'billing.internal' or '*.internal')"
            )
        entries.append(entry)
    return tuple(dict.fromkeys(entries))


@dataclass(frozen=True)
class HttpPolicy:
    """Where the HTTP built-in may connect, its caps, and the operator's named connections.

    The default policy refuses every non-public address and has no connections.
    """

    allow: tuple[str, ...] = ()
    connections: Mapping[str, HttpConnection] = field(default_factory=dict)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", parse_allow(self.allow))

    def allowing(self, *entries: str) -> HttpPolicy:
        """This policy with `entries` added to its allow-list."""
        return HttpPolicy(
            (*self.allow, *entries),
            self.connections,
            self.max_response_bytes,
            self.timeout_seconds,
            self.max_redirects,
        )

    def merged(self, other: HttpPolicy) -> HttpPolicy:
        """Both allow-lists and both sets of connections (`other`'s win); `other`'s caps
        where they differ from the defaults."""
        default = HttpPolicy()
        return HttpPolicy(
            (*self.allow, *other.allow),
            {**self.connections, **other.connections},
            other.max_response_bytes
            if other.max_response_bytes != default.max_response_bytes
            else self.max_response_bytes,
            other.timeout_seconds
            if other.timeout_seconds != default.timeout_seconds
            else self.timeout_seconds,
            other.max_redirects
            if other.max_redirects != default.max_redirects
            else self.max_redirects,
        )

    def _host_allowed(self, host: str) -> bool:
        host = _host(host)
        for entry in self.allow:
            if entry == "*" or entry == host:
                return True
            if entry.startswith("*.") and host.endswith(entry[1:]):
                return True
        return False

    def refuse_host(self, host: str) -> str | None:
        """Why a host name is refused before it is even resolved (None when it is not)."""
        if _host(host) in _METADATA_NAMES:
            return f"{host} is a cloud metadata service"
        return None

    def refuse_address(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to `address` (which `host` resolved to) is refused; None when allowed."""
        fixed = _always_refused(address)
        if fixed is not None:
            return f"{address} is {fixed}, which the HTTP Task never calls"
        kind = _kind(address)
        if kind is None or self._host_allowed(host):
            return None
        for entry in self.allow:
            try:
                network = ipaddress.ip_network(entry)
            except ValueError:
                continue  # a host name, checked above
            if address.version == network.version and address in network:
                return None
        shown = host if host == str(address) else f"{host} ({address})"
        return (
            f"{shown} is {kind}; the operator has not allowed it "
            "(--allow-http-to or Http.Allow in the resources file)"
        )

    def connection(self, reference: str) -> HttpConnection | None:
        """The connection named by a ConnectionArn (``…:connection/NAME/ID``) or a bare name."""
        name = reference
        if ":connection/" in reference:
            name = reference.split(":connection/", 1)[1].split("/", 1)[0]
        return self.connections.get(name)
