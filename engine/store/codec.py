"""Encryption at rest: the one codec every payload column passes through at the store's boundary.

Payloads — execution input, output and error cause, history event details,
journal values, activity task inputs, SQL effect results — are written
through `PayloadCodec.seal` and read through `PayloadCodec.open`, and
nothing else in the engine sees stored text. Without keys the codec is
plain: a value is stored as it is (only the rare free text that starts with
the codec's marker is escaped, so it can never be mistaken for ciphertext,
and free text holding a NUL character, which PostgreSQL's text refuses, is
stored as its JSON string). Free text that stays in clear even under keys —
error names, a delivery's last error — is escaped the same way
(`escape_clear`, `unescape_clear`), so a NUL in it is stored too.
With keys (`STEPWISE_ENCRYPTION_KEYS`: comma-separated base64 32-byte keys,
newest first, or `STEPWISE_ENCRYPTION_KEY_FILE`: the same list in a file,
commas or lines) every value is sealed with AES-256-GCM under the newest key
as ``swenc:1:<key id>:<base64 nonce+ciphertext>``. The key id (the first 8
hex digits of the key's SHA-256) lets reads pick the key that wrote a value
and lets `Store.rotate_keys` find what is not yet under the newest key.
Plaintext rows written before keys were configured stay readable. A value
sealed with a key that is not configured, a ciphertext that fails
authentication, or a malformed key list raises `EncryptionKeyError` (a
`StoreUnavailable`: exit 3), one line naming the key id, never the data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.store.errors import StoreUnavailable

__all__ = [
    "ENCRYPTED_PREFIX",
    "KEYS_ENV",
    "KEY_FILE_ENV",
    "EncryptionKeyError",
    "PayloadCodec",
    "codec_from_environment",
    "escape_clear",
    "generate_key",
    "unescape_clear",
]

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS_ENV = "STEPWISE_ENCRYPTION_KEYS"
KEY_FILE_ENV = "STEPWISE_ENCRYPTION_KEY_FILE"

_MARK = "swenc:"
ENCRYPTED_PREFIX = _MARK + "1:"
_ESCAPED = _MARK + "p:"
_NUL_ESCAPED = _MARK + "n:"
_NONCE_BYTES = 12
# Binds each ciphertext to this format, so a value cannot be replayed into another scheme.
_ASSOCIATED_DATA = b"stepwise-payload-v1"


class EncryptionKeyError(StoreUnavailable):
    """A stored payload cannot be sealed or opened with the configured encryption keys.

    Raised for a key list that is not base64 32-byte keys, for a value
    written under a key id that is not configured, and for a ciphertext that
    fails authentication (a wrong key under a colliding id, or tampering).
    A configuration error: no retry can fix it, so commands fail at once.
    """

    transient = False


def generate_key() -> str:
    """A fresh random key, base64-encoded, for `STEPWISE_ENCRYPTION_KEYS`."""
    return base64.b64encode(os.urandom(32)).decode()


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class PayloadCodec:
    """Seals payload text for storage and opens it again; plain when no keys are given.

    `keys` are raw 32-byte keys, newest first: the newest seals, any opens.
    """

    def __init__(self, keys: Sequence[bytes] = ()) -> None:
        self._ciphers: dict[str, AESGCM] = {}
        self._newest: str | None = None
        if keys:
            # Imported only when keys are configured: plain stores never load it.
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            for key in keys:
                if len(key) != 32:
                    raise EncryptionKeyError(
                        f"an encryption key is {len(key)} bytes; each must be 32 (base64 of 32 "
                        "random bytes)"
                    )
                self._ciphers.setdefault(_key_id(key), AESGCM(key))
            self._newest = _key_id(keys[0])
        self.newest_prefix: str | None = (
            None if self._newest is None else f"{ENCRYPTED_PREFIX}{self._newest}:"
        )

    @property
    def encrypting(self) -> bool:
        """Whether values are sealed (keys are configured)."""
        return self._newest is not None

    @property
    def key_ids(self) -> list[str]:
        """The configured key ids, newest first."""
        return list(self._ciphers)

    def seal(self, text: str) -> str:
        """The stored form of payload `text`: ciphertext under the newest key, else `text`."""
        if self._newest is None:
            return _plain(text)
        cipher = self._ciphers[self._newest]
        nonce = os.urandom(_NONCE_BYTES)
        sealed = cipher.encrypt(nonce, text.encode(), _ASSOCIATED_DATA)
        return f"{ENCRYPTED_PREFIX}{self._newest}:{base64.b64encode(nonce + sealed).decode()}"

    def seal_optional(self, text: str | None) -> str | None:
        """`seal` for a nullable column: None stays None."""
        return None if text is None else self.seal(text)

    def open(self, stored: str) -> str:
        """The payload text of a stored value (plaintext rows are returned as they are).

        Raises EncryptionKeyError when the value was sealed under a key that
        is not configured, or fails authentication.
        """
        if not stored.startswith(ENCRYPTED_PREFIX):
            return _unescaped(stored)
        key_id, _, body = stored[len(ENCRYPTED_PREFIX) :].partition(":")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            if not self._ciphers:
                raise EncryptionKeyError(
                    f"the database holds payloads encrypted with key {key_id}, and no encryption "
                    f"key is configured: set {KEYS_ENV} or {KEY_FILE_ENV}"
                )
            raise EncryptionKeyError(
                f"the database holds payloads encrypted with key {key_id}, which is not among "
                f"the configured keys ({', '.join(self._ciphers)}): add it to {KEYS_ENV}"
            )
        try:
            raw = base64.b64decode(body, validate=True)
            plain = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _ASSOCIATED_DATA)
        except Exception:  # InvalidTag, bad base64, short data: all mean "cannot be opened"
            raise EncryptionKeyError(
                f"a payload encrypted with key {key_id} failed authentication: the key is wrong "
                "or the stored value was altered"
            ) from None
        return plain.decode()

    def open_optional(self, stored: str | None) -> str | None:
        """`open` for a nullable column: None stays None."""
        return None if stored is None else self.open(stored)

    def is_current(self, stored: str | None) -> bool:
        """Whether a stored value needs no rotation: NULL, or sealed under the newest key."""
        if stored is None:
            return True
        if self.newest_prefix is None:
            return not stored.startswith(ENCRYPTED_PREFIX)
        return stored.startswith(self.newest_prefix)


def _plain(text: str) -> str:
    # Free text (an error cause) that looks like the codec's own format is
    # escaped, so reading it back can never try to decrypt it.
    if "\x00" in text:
        # PostgreSQL's text cannot hold NUL; AWS's errors and causes can.
        # Stored as JSON text (NUL as \u0000, as history details hold it).
        return _NUL_ESCAPED + json.dumps(text)
    return _ESCAPED + text if text.startswith(_MARK) else text


def escape_clear(text: str | None) -> str | None:
    """The stored form of free text that stays in clear even under keys (None stays None).

    Error names (an execution's error, a requested stop's error) and a
    delivery's last error are listed and shown without keys, so they are
    never encrypted; they are escaped as a plain codec's payloads are (a NUL,
    which PostgreSQL's text refuses, or the codec's marker). Read them back
    with `unescape_clear`.
    """
    return None if text is None else _plain(text)


def unescape_clear(stored: str | None) -> str | None:
    """The text `escape_clear` stored; never fails (None stays None).

    A row written before the escape reads as it is, unless it happens to
    begin with the escape's marker: a legacy value beginning with `swenc:p:`
    reads with that prefix removed, and one beginning with `swenc:n:` that
    does not decode as the NUL escape (a JSON string) reads as it is. That
    ambiguity stays without a migration of such rows.
    """
    return None if stored is None else _unescaped(stored)


def _unescaped(stored: str) -> str:
    """What `_plain` stored: the text itself, or its escape undone."""
    if not stored.startswith(_MARK):
        return stored
    if stored.startswith(_ESCAPED):
        return stored[len(_ESCAPED) :]
    if stored.startswith(_NUL_ESCAPED):
        try:
            opened: object = json.loads(stored[len(_NUL_ESCAPED) :])
        except ValueError:  # not the escape: a legacy row stored as it is
            return stored
        return opened if isinstance(opened, str) else stored
    return stored


def _parse_keys(text: str, source: str) -> list[bytes]:
    keys: list[bytes] = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            key = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionKeyError(
                f"{source}: an entry is not base64 (expected base64 of 32 random bytes, "
                "comma-separated, newest first)"
            ) from None
        if len(key) != 32:
            raise EncryptionKeyError(
                f"{source}: an entry decodes to {len(key)} bytes; each key must be 32"
            )
        keys.append(key)
    return keys


def codec_from_environment(env: Mapping[str, str] | None = None) -> PayloadCodec:
    """The codec the environment configures: keys from $STEPWISE_ENCRYPTION_KEYS, else
    from the file $STEPWISE_ENCRYPTION_KEY_FILE names, else none (plain).

    Raises EncryptionKeyError for a malformed key list or an unreadable key file.
    """
    env = os.environ if env is None else env
    listed = env.get(KEYS_ENV, "").strip()
    if listed:
        return PayloadCodec(_parse_keys(listed, KEYS_ENV))
    path = env.get(KEY_FILE_ENV, "").strip()
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise EncryptionKeyError(
                f"{KEY_FILE_ENV}: cannot read {path}: {exc.strerror or exc}"
            ) from None
        keys = _parse_keys(text, f"{KEY_FILE_ENV} ({path})")
        if not keys:
            raise EncryptionKeyError(f"{KEY_FILE_ENV}: {path} holds no key")
        return PayloadCodec(keys)
    return PayloadCodec()
