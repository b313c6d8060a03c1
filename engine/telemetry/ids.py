"""Span ids and W3C trace context, derived from an execution's trace id and event ids.

The light half of `spans.py`: what the engine needs while it runs (a task
attempt's span id and ``traceparent``, handed to its handler) without the
trace builder, its dataclasses or the payload redactor, which load only when
spans are built (telemetry on, ``stepwise trace``).
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "BRANCH",
    "EXECUTION",
    "ITERATION",
    "STATE",
    "TASK",
    "span_id_for",
    "task_span_id",
    "traceparent_for",
]

# W3C trace context's ids: lower-case hex of a fixed width (checked after
# lower-casing), never all zeros (the spec's "invalid" value).
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")

# Span kinds of the tree.
EXECUTION, STATE, BRANCH, ITERATION, TASK = "execution", "state", "branch", "iteration", "task"


def span_id_for(trace_id: str, event_id: int, kind: str) -> str:
    """The 16-hex span id of the `kind` span that `event_id` starts in trace `trace_id`.

    Deterministic, so re-emitting a history yields the same ids; never all zeros.
    """
    digest = hashlib.sha256(f"{trace_id}/{event_id}/{kind}".encode()).hexdigest()[:16]
    return digest if digest != "0" * 16 else "0" * 15 + "1"


def task_span_id(trace_id: str, scheduled_event_id: int) -> str:
    """The span id of the task attempt whose TaskScheduled event is `scheduled_event_id`."""
    return span_id_for(trace_id, scheduled_event_id, TASK)


def traceparent_for(trace_id: str, span_id: str) -> str:
    """The W3C `traceparent` header value (version 00, sampled) for a span.

    Raises ValueError unless the ids are 32 and 16 hex digits (either case;
    no ``0x``, sign, underscore or space) and neither is all zeros, which
    the W3C trace context spec makes invalid.
    """
    trace_id, span_id = trace_id.lower(), span_id.lower()
    if _TRACE_ID.fullmatch(trace_id) is None or _SPAN_ID.fullmatch(span_id) is None:
        raise ValueError("traceparent needs a 32-hex trace id and a 16-hex span id")
    if trace_id == "0" * 32 or span_id == "0" * 16:
        raise ValueError("traceparent's trace id and span id may not be all zeros")
    return f"00-{trace_id}-{span_id}-01"
