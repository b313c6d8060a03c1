"""Names of state machines, executions and activities, checked as AWS checks them.

1 to 80 characters; no white space, none of ``< > { } [ ] ? * " # % \\ ^ | ~ ` $ & , ; : /``
and no control characters. Names end up in ARNs, so the same rules keep
ours parseable.
"""

from __future__ import annotations

from engine.errors import InvalidName

__all__ = ["check_name"]

_FORBIDDEN = set(' \t\n\r<>{}[]?*"#%\\^|~`$&,;:/')


def check_name(name: str, *, what: str) -> None:
    """Raise InvalidName when `name` is not a valid name for a `what`."""
    if not isinstance(name, str) or not 1 <= len(name) <= 80:
        raise InvalidName(f"Invalid Name: '{name}' ({what} names are 1 to 80 characters)")
    for char in name:
        code = ord(char)
        if char in _FORBIDDEN or char.isspace() or code < 0x20 or 0x7F <= code <= 0x9F:
            raise InvalidName(f"Invalid Name: '{name}' ({what} names may not contain {char!r})")
