"""Diagnostics: what definition validation reports.

A `Diagnostic` is one problem found in a state machine definition, shaped the
way AWS's ValidateStateMachineDefinition reports them: a severity, a stable
code (AWS's own code where AWS has one), a sentence for people, and a JSON
pointer (RFC 6901) into the definition. This module also owns the helpers that
build those pointers, so every validator spells locations the same way.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["Diagnostic", "Severity", "json_pointer", "pointer_child"]

Severity = Literal["ERROR", "WARNING"]


class Diagnostic(msgspec.Struct, frozen=True):
    """One problem in a definition.

    `location` is a JSON pointer into the definition (``""`` is the root, so
    ``"/States/Check/Choices/0/Next"`` names the Next of Check's first rule).
    """

    severity: Severity
    code: str
    message: str
    location: str

    def __str__(self) -> str:
        return f"{self.location or '/'}: {self.code}: {self.message}"


def _escape(token: str | int) -> str:
    # RFC 6901: "~" must be escaped before "/", or "~1" would be misread.
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer_child(base: str, *tokens: str | int) -> str:
    """Return the JSON pointer `base` extended by `tokens`, each escaped per RFC 6901."""
    return base + "".join("/" + _escape(token) for token in tokens)


def json_pointer(*tokens: str | int) -> str:
    """Return the JSON pointer naming `tokens` from the root (``""`` for no tokens)."""
    return pointer_child("", *tokens)
