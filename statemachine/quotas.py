"""AWS Step Functions' quotas and name rules, in one place.

Every size, count and name rule that AWS enforces and Stepwise copies is
defined here once; the validator, the engine and the faces import it.
Sources: the AWS Step Functions developer guide, "Step Functions service
quotas" (payload size 256 KiB, definition size 1 MiB, 25,000 history
events) and the API reference (name rules of CreateStateMachine and
StartExecution).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "FORBIDDEN_NAME_CHARS",
    "MAX_DEFINITION_BYTES",
    "MAX_DELAY_SECONDS",
    "MAX_HISTORY_EVENTS",
    "MAX_NAME_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_SECONDS",
    "MAX_VARIABLE_BYTES",
    "name_problem",
]

# Inputs, outputs, task results, callback outputs and batch inputs.
MAX_PAYLOAD_BYTES: Final = 262_144
# The variables one Assign may write, as encoded JSON.
MAX_VARIABLE_BYTES: Final = 262_144
# A state machine definition, as encoded JSON.
MAX_DEFINITION_BYTES: Final = 1_048_576
# AWS ends an execution that reaches this many history events.
MAX_HISTORY_EVENTS: Final = 25_000
# TimeoutSeconds, HeartbeatSeconds, Wait Seconds, Retry MaxAttempts/IntervalSeconds:
# the largest value AWS accepts, and the default task timeout.
MAX_SECONDS: Final = 99_999_999
# Retry MaxDelaySeconds' ceiling: a year (366 days), as long as an execution may run.
MAX_DELAY_SECONDS: Final = 31_622_400
# State machine, execution, activity, alias and Map Run label names.
MAX_NAME_LENGTH: Final = 80
# Names may not contain white space, these characters, control characters
# (U+0000-001F, U+007F-009F, U+FFFE-FFFF), surrogates or U+10FFFF (AWS's rules).
FORBIDDEN_NAME_CHARS: Final = re.compile(
    r"[\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\U0010ffff]"
)


def name_problem(name: object) -> str | None:
    """Why `name` is not a valid AWS name (None when it is)."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
        return f"names are 1 to {MAX_NAME_LENGTH} characters"
    found = FORBIDDEN_NAME_CHARS.search(name)
    if found is not None:
        return f"names may not contain {found.group()!r}"
    return None
