"""AWS Signature Version 4, checked on the server: only holders of a configured key get in.

With ``--auth`` every request must carry an ``Authorization:
AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/states/aws4_request,
SignedHeaders=…, Signature=…`` header that botocore (or any AWS SDK) made
with the secret of a configured access key, and an ``X-Amz-Date`` within
five minutes of the server's clock. The signature is recomputed over the
canonical request — method, path, query, the signed headers and the
SHA-256 of the body — and compared in constant time. `load_keys` reads the
keys: lines (or comma-separated entries) of ``ACCESS_KEY_ID:SECRET``, from
a file or from an environment variable. Refusals are AWS's own codes:
``MissingAuthenticationTokenException``, ``UnrecognizedClientException``,
``InvalidSignatureException``, and nothing about the right answer leaks
into them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, unquote

from engine.http.protocol import AwsError

__all__ = ["MAX_SKEW", "KeysUnreadable", "Verifier", "load_keys"]

# AWS refuses a request signed more than 5 minutes away from its clock.
MAX_SKEW = timedelta(minutes=5)
_SERVICE = "states"
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)


class KeysUnreadable(ValueError):
    """A keys file or variable that cannot be read as ``ACCESS_KEY_ID:SECRET`` entries."""


def load_keys(source: str) -> dict[str, str]:
    """Access keys from `source`: a file path, or ``env:NAME`` for an environment variable.

    Entries are ``ACCESS_KEY_ID:SECRET``, one per line or separated by
    commas; blank lines and ``#`` comments are skipped. Raises KeysUnreadable
    when the source is missing or holds no valid entry.
    """
    if source.startswith("env:"):
        name = source[4:]
        text = os.environ.get(name)
        if not text:
            raise KeysUnreadable(f"environment variable {name} is not set")
    else:
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise KeysUnreadable(f"cannot read keys file {source}: {exc.strerror}") from None
    keys: dict[str, str] = {}
    for raw in re.split(r"[\n,]", text):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        key_id, sep, secret = entry.partition(":")
        if not sep or not key_id.strip() or not secret.strip():
            raise KeysUnreadable("each key must be written ACCESS_KEY_ID:SECRET")
        keys[key_id.strip()] = secret.strip()
    if not keys:
        raise KeysUnreadable(f"no keys in {source}")
    return keys


def _refuse(code: str, message: str) -> AwsError:
    return AwsError(code, message, status=403)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&") if query else []:
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


class Verifier:
    """Checks the SigV4 signature of requests against a set of access keys."""

    def __init__(self, keys: Mapping[str, str], *, region: str) -> None:
        self.keys = dict(keys)
        self.region = region

    def verify(
        self,
        *,
        method: str,
        path: str,
        query: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        now: datetime | None = None,
    ) -> str:
        """Return the access key id that signed the request; raise AwsError (403) if none did."""
        by_name: dict[str, list[str]] = {}
        for name, value in headers:
            by_name.setdefault(name.lower(), []).append(value)
        authorization = (by_name.get("authorization") or [""])[0]
        if not authorization:
            raise _refuse("MissingAuthenticationTokenException", "Missing Authentication Token")
        matched = _AUTHORIZATION.match(authorization)
        if matched is None:
            raise _refuse(
                "IncompleteSignatureException",
                "Authorization header requires AWS4-HMAC-SHA256 Credential, SignedHeaders "
                "and Signature",
            )
        scope = matched["credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise _refuse("IncompleteSignatureException", "Credential is malformed")
        key_id, day, region, service = scope[0], scope[1], scope[2], scope[3]
        secret = self.keys.get(key_id)
        if secret is None:
            raise _refuse(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if service != _SERVICE or region != self.region:
            raise _refuse(
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region and the service '{_SERVICE}'.",
            )
        stamp = (by_name.get("x-amz-date") or [""])[0]
        try:
            signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise _refuse(
                "IncompleteSignatureException", "X-Amz-Date is missing or malformed"
            ) from None
        now = now or datetime.now(UTC)
        if abs(now - signed_at) > MAX_SKEW or not stamp.startswith(day):
            raise _refuse(
                "InvalidSignatureException",
                f"Signature expired: {stamp} is not within 5 minutes of the server's time.",
            )
        signed = matched["signed"].split(";")
        if "host" not in signed or any(name not in by_name for name in signed):
            raise _refuse("IncompleteSignatureException", "SignedHeaders must name host")
        canonical_headers = "".join(
            f"{name}:{','.join(' '.join(v.split()) for v in by_name[name])}\n" for name in signed
        )
        payload = hashlib.sha256(body).hexdigest()
        canonical = "\n".join(
            [
                method.upper(),
                quote(path or "/", safe="/-_.~"),
                _canonical_query(query),
                canonical_headers,
                ";".join(signed),
                payload,
            ]
        )
        credential_scope = f"{day}/{region}/{service}/aws4_request"
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                stamp,
                credential_scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        key = _hmac(("AWS4" + secret).encode(), day)
        for part in (region, service, "aws4_request"):
            key = _hmac(key, part)
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, matched["signature"]):
            raise _refuse(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
            )
        return key_id
