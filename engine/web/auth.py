"""Who may use the web view: sign-in with an access key, the session cookie, CSRF tokens.

With keys configured (`stepwise serve --auth`, the same keys SigV4 checks)
every page but the sign-in form needs a session: the visitor types an
access key id and its secret once, and gets a session cookie that is
``HttpOnly`` and ``SameSite=Strict`` (scripts cannot read it, other sites
cannot send it). Without keys (a loopback server by default) a visitor gets
an anonymous session at once. Either way every action (a POST) carries a
CSRF token derived from the session, compared in constant time. Sessions
are HMAC-signed with a secret drawn when the application starts, so no
session outlives its server and nothing about them is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["SESSION_COOKIE", "Sessions"]

SESSION_COOKIE = "stepwise_session"


@dataclass(frozen=True)
class Sessions:
    """Issues and checks session cookies and CSRF tokens for one running application."""

    keys: Mapping[str, str]
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @property
    def sign_in_required(self) -> bool:
        """True when visitors must sign in with an access key (keys are configured)."""
        return bool(self.keys)

    def _sign(self, purpose: str, value: str) -> str:
        message = f"{purpose}:{value}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def check_key(self, access_key_id: str, secret_key: str) -> bool:
        """True when `secret_key` is the secret of `access_key_id` (constant time)."""
        expected = self.keys.get(access_key_id)
        # Compare against something even for an unknown id, so timing tells nothing.
        return hmac.compare_digest(
            (expected or secrets.token_hex(16)).encode(), secret_key.encode()
        ) and (expected is not None)

    def issue(self, who: str) -> str:
        """A new session cookie value for `who` (an access key id, or ``anonymous``)."""
        session_id = f"{secrets.token_hex(16)}.{who}"
        return f"{session_id}.{self._sign('session', session_id)}"

    def who(self, cookie: str | None) -> str | None:
        """Whom a session cookie belongs to; None when it is missing, forged or stale."""
        if not cookie or cookie.count(".") < 2:
            return None
        session_id, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign("session", session_id)):
            return None
        who = session_id.split(".", 1)[1]
        if self.keys and who not in self.keys:
            return None
        return who

    def csrf_token(self, cookie: str) -> str:
        """The CSRF token every form of this session carries."""
        return self._sign("csrf", cookie)

    def check_csrf(self, cookie: str | None, token: str | None) -> bool:
        """True when `token` is this session's CSRF token."""
        if not cookie or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(cookie))
