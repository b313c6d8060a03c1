"""Redaction: the one set of rules for hiding secret fields in what Stepwise shows people.

A field is secret when its name, lower-cased with ``-`` and ``_`` removed,
is or ends with one of the secret names: the defaults (`DEFAULT_SECRET_FIELDS`:
password, secret, token, authorization, apiKey, …) plus those listed in
``$STEPWISE_SECRET_FIELDS`` (comma-separated). So ``dbPassword``,
``client_secret``, ``X-Api-Key`` and ``accessToken`` are secret. One field
is never redacted: ``taskToken``. A callback's task token is not a
credential to the host but the engine's own handle on one waiting step; AWS
shows it in the history, and an operator needs it from `history` to answer
the step (`stepwise task success`), so hiding it would break the callback
pattern while protecting nothing outside that one step.

`Redactor` applies the rules to JSON values, to JSON text, and to free text
such as an error cause, where ``name: value``, ``name=value``,
``"name": "value"`` and ``Authorization: Bearer …`` forms are recognised.
Its users: span payloads and error causes in traces (`telemetry/spans.py`),
log records (`RedactingFilter`), and ``--redact`` on `history` and `describe`.
What is stored is never redacted — that is what encryption at rest is for.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

import msgspec

__all__ = [
    "DEFAULT_SECRET_FIELDS",
    "ENGINE_FIELDS",
    "REDACTED",
    "SECRET_FIELDS_ENV",
    "RedactingFilter",
    "Redactor",
    "install_log_redaction",
    "redactor_from_environment",
]

SECRET_FIELDS_ENV = "STEPWISE_SECRET_FIELDS"
REDACTED = "[REDACTED]"
DEFAULT_SECRET_FIELDS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "api_key",
        "authorization",
        "credentials",
        "accesskey",
        "privatekey",
        "cookie",
        "sessionid",
    }
)
# Fields the engine itself needs shown (see the module docstring), never redacted.
ENGINE_FIELDS: frozenset[str] = frozenset({"tasktoken"})


def _normal(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


class Redactor:
    """Redacts secret fields; `secret_fields` are names (any case, ``-``/``_`` ignored)."""

    def __init__(self, secret_fields: Iterable[str] = DEFAULT_SECRET_FIELDS) -> None:
        self.secret_fields = frozenset(secret_fields)
        self._suffixes = tuple(sorted({_normal(f) for f in self.secret_fields if _normal(f)}))

    def is_secret(self, name: str) -> bool:
        """Whether a field called `name` holds a secret."""
        normal = _normal(name)
        return normal not in ENGINE_FIELDS and normal.endswith(self._suffixes)

    def value(self, value: Any) -> Any:
        """A JSON value with every secret field's value replaced by ``[REDACTED]``."""
        if isinstance(value, dict):
            return {
                key: REDACTED if self.is_secret(str(key)) else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        # Each name matches with or without - and _ between its letters (api_key, api-key, apikey).
        names = "|".join("[-_]?".join(re.escape(c) for c in name) for name in self._suffixes)
        return re.compile(
            r"(?P<name>[\w-]*(?:" + names + r"))(?P<q>[\"']?)(?P<sep>\s*[:=]\s*)"
            r"(?P<value>(?:bearer|basic|token|digest)\s+[^\s\"',;}\]]+"
            r"|\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,;&}\]\"']+)",
            re.IGNORECASE,
        )

    def text(self, text: str) -> str:
        """Free text (an error cause, a log line) with the values of secret fields redacted.

        JSON text is redacted as JSON; otherwise ``name: value``, ``name=value``
        and quoted forms are recognised, ``Authorization: Bearer …`` included.
        """
        stripped = text.lstrip()
        if stripped[:1] in ("{", "["):
            try:
                decoded = msgspec.json.decode(text)
            except msgspec.DecodeError:
                pass
            else:
                redacted = self.value(decoded)
                return text if redacted == decoded else msgspec.json.encode(redacted).decode()
        if not self._suffixes:
            return text
        return self._pattern.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        if not self.is_secret(match["name"]):
            return match[0]
        value = match["value"]
        quote = value[0] if value[:1] in ("'", '"') else ""
        return f"{match['name']}{match['q']}{match['sep']}{quote}{REDACTED}{quote}"

    def details(self, details: Mapping[str, Any]) -> dict[str, Any]:
        """History event details with secrets redacted inside their JSON texts and causes."""
        return {key: self._detail(key, item) for key, item in details.items()}

    def _detail(self, key: str, item: Any) -> Any:
        if self.is_secret(key):
            return REDACTED
        if isinstance(item, str):
            return self.text(item)
        if isinstance(item, dict):
            return self.details(item)
        if isinstance(item, list):
            return [self._detail("", i) for i in item]
        return item


def redactor_from_environment(env: Mapping[str, str] | None = None) -> Redactor:
    """The defaults plus the names in $STEPWISE_SECRET_FIELDS (comma-separated)."""
    env = os.environ if env is None else env
    extra = {f.strip().lower() for f in env.get(SECRET_FIELDS_ENV, "").split(",") if f.strip()}
    return Redactor(DEFAULT_SECRET_FIELDS | extra)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts secret fields in log messages and their tracebacks."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or redactor_from_environment()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a `RedactingFilter` to every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
