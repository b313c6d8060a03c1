"""History → spans: the trace of an execution, read from its history events alone.

A `TraceBuilder` consumes an execution's events in id order and returns each
span when the event that ends it arrives, timed by the events' own
timestamps: a root span for the execution (ExecutionStarted → its end
event), a child per state visit (*StateEntered → *StateExited, or the
failure that ends it), Parallel branches and Map iterations as nested spans,
and a child per task attempt (TaskScheduled → TaskSucceeded / Failed /
TimedOut). Retries and caught errors are span events; a failure sets status
ERROR with the error name. Which span an event belongs to follows its
`previousEventId` chain: every event inherits the innermost open span of the
event it follows. Span ids are derived from (trace id, event id), so the same
history always gives the same spans, and feeding the history in slices (one
per commit) gives each span exactly once — in the slice holding its end.
A span handed out is forgotten by the builder (only open spans are kept, and
a tiny marker for each event id), so feeding a history page by page holds
about what is still open, not the whole trace.
Payloads stay out of spans unless a `PayloadPolicy` opts in; then secret
fields are redacted by the rules of `engine/redact.py`, inside error causes too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import msgspec

from engine.redact import DEFAULT_SECRET_FIELDS, Redactor
from engine.store import Event, ExecutionRecord
from engine.telemetry.ids import (
    BRANCH,
    EXECUTION,
    ITERATION,
    STATE,
    TASK,
    span_id_for,
    task_span_id,
    traceparent_for,
)

__all__ = [
    "DEFAULT_SECRET_FIELDS",
    "AttributeValue",
    "PayloadPolicy",
    "SpanEvent",
    "SpanRecord",
    "TraceBuilder",
    "build_spans",
    "span_id_for",
    "task_span_id",
    "traceparent_for",
]

AttributeValue = str | bool | int | float


# Span kinds of the tree (`ids.py`); task attempts are CLIENT spans (work leaves the process).

_END_OF_EXECUTION = {
    "ExecutionSucceeded": None,
    "ExecutionFailed": "States.Failed",
    "ExecutionTimedOut": "States.Timeout",
    "ExecutionAborted": "States.Aborted",
}


# Every task family's closing events: Step Functions integrations, Lambda ARNs, activities.
_TASK_ENDS = frozenset(
    f"{family}{outcome}"
    for family in ("Task", "LambdaFunction", "Activity")
    for outcome in ("Succeeded", "Failed", "TimedOut")
)


@dataclass(frozen=True)
class PayloadPolicy:
    """Whether payloads go into spans; if so, capped at `max_bytes` with secret fields redacted."""

    enabled: bool = False
    max_bytes: int = 4096
    secret_fields: frozenset[str] = DEFAULT_SECRET_FIELDS

    @cached_property
    def redactor(self) -> Redactor:
        """The redaction rules (engine/redact.py) for these secret field names."""
        return Redactor(self.secret_fields)

    def render(self, text: str | None) -> str | None:
        """The payload as a span attribute may carry it, or None when payloads are off."""
        if not self.enabled or text is None:
            return None
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError:
            shown = self.redactor.text(text)
        else:
            shown = msgspec.json.encode(self.redactor.value(value)).decode()
        encoded = shown.encode()
        if len(encoded) <= self.max_bytes:
            return shown
        return encoded[: self.max_bytes].decode(errors="ignore") + "…[truncated]"


@dataclass(frozen=True)
class SpanEvent:
    """A point in time inside a span (a retry, a caught error, an evaluation failure)."""

    name: str
    timestamp: datetime
    attributes: Mapping[str, AttributeValue]


@dataclass
class SpanRecord:
    """One finished (or, from `open_spans`, still open) span, independent of any SDK."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start: datetime
    end: datetime | None
    start_event_id: int
    end_event_id: int | None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    error: str | None = None
    status_message: str | None = None

    @property
    def failed(self) -> bool:
        """True when the span's status is ERROR."""
        return self.error is not None


# What a closed node points at instead of its span, once the span is handed out.
_RELEASED = SpanRecord("", "", None, "", "", datetime.min, None, 0, None)


@dataclass
class _Node:
    span: SpanRecord
    parent: _Node | None
    state_type: str = ""
    state_name: str = ""
    open: bool = True
    children: list[_Node] = field(default_factory=list)
    pending_error: tuple[str, str | None] | None = None
    child_error: tuple[str, str | None] | None = None
    attempts: int = 0
    branches: int = 0
    iterations: dict[int, _Node] = field(default_factory=dict)
    last_ts: datetime | None = None
    closed_children: int = 0

    def open_children(self) -> list[_Node]:
        return [child for child in self.children if child.open]


class TraceBuilder:
    """Turns one execution's history, fed in id order, into spans as they complete."""

    def __init__(self, record: ExecutionRecord, *, payloads: PayloadPolicy | None = None) -> None:
        self.record = record
        self.trace_id = record.trace_id.lower()
        self.payloads = payloads or PayloadPolicy()
        self.last_event_id = 0
        self.finished = False
        self._root: _Node | None = None
        self._context: dict[int, _Node] = {}

    # -- public ----------------------------------------------------------------
    def feed(self, events: Iterable[Event]) -> list[SpanRecord]:
        """Consume `events` (ids above those already fed); return the spans they ended.

        Events at or below `last_event_id` are skipped, so overlapping slices are harmless.
        """
        completed: list[SpanRecord] = []
        for event in sorted(events, key=lambda e: e.event_id):
            if event.event_id <= self.last_event_id:
                continue
            self.last_event_id = event.event_id
            self._apply(event, completed)
        return completed

    def open_spans(self) -> list[SpanRecord]:
        """Spans started but not yet ended (their `end` is None), outermost first."""
        found: list[SpanRecord] = []

        def visit(node: _Node) -> None:
            if node.open:
                found.append(node.span)
            for child in node.children:
                visit(child)

        if self._root is not None:
            visit(self._root)
        return found

    # -- the event handlers ----------------------------------------------------
    def _apply(self, event: Event, completed: list[SpanRecord]) -> None:
        kind = event.type
        details = event.details
        context = self._resolve(self._context.get(event.previous_event_id))
        if kind == "ExecutionStarted":
            self._start_execution(event)
            return
        if context is None:
            context = self._resolve(self._root)
            if context is None:
                return  # an execution without its start: nothing can be placed
        self._touch(context, event.timestamp)
        node: _Node | None = context
        if kind in _END_OF_EXECUTION:
            self._end_execution(event, completed)
            node = None
        elif kind.endswith("StateEntered"):
            node = self._enter_state(event, context, kind[: -len("StateEntered")])
        elif kind.endswith("StateExited"):
            state = self._find_state(context, name=details.get("name"))
            if state is not None:
                self._caught(state, event.timestamp)
                self._close(state, event, completed, outcome=None)
                node = state.parent
        elif kind in ("ParallelStateStarted", "MapStateStarted"):
            state = self._find_state(context, state_type=kind[: -len("StateStarted")])
            if state is not None:
                self._new_attempt(state, event, completed)
                if "length" in details:
                    state.span.attributes["stepwise.map.length"] = int(details["length"])
                node = state
        elif kind in ("ParallelStateFailed", "MapStateFailed"):
            state = self._find_state(context, state_type=kind[: -len("StateFailed")])
            if state is not None:
                for child in state.open_children():
                    self._close(child, event, completed, outcome=None, cancelled=True)
                if state.pending_error is None:
                    state.pending_error = state.child_error or ("States.BranchFailed", None)
                node = state
        elif kind == "MapStateSucceeded":
            node = self._find_state(context, state_type="Map") or context
        elif kind == "MapIterationStarted":
            node = self._start_iteration(event, context)
        elif kind in ("MapIterationSucceeded", "MapIterationFailed", "MapIterationAborted"):
            node = self._end_iteration(event, context, completed)
        elif kind in ("TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"):
            node = self._start_task(event, context)
        elif kind in _TASK_ENDS:
            node = self._end_task(event, context, completed)
        elif kind == "EvaluationFailed":
            state = self._find_state(context, name=details.get("state"))
            if state is not None:
                error = (str(details.get("error", "States.Runtime")), details.get("cause"))
                state.pending_error = error
                attributes: dict[str, AttributeValue] = {"error.type": error[0]}
                if "location" in details:
                    attributes["stepwise.error.location"] = str(details["location"])
                state.span.events.append(
                    SpanEvent("stepwise.evaluation_failed", event.timestamp, attributes)
                )
        if node is not None:
            self._context[event.event_id] = node

    def _start_execution(self, event: Event) -> None:
        record = self.record
        span = self._span(event, EXECUTION, f"execution {record.machine}", None)
        span.attributes.update(
            {
                "stepwise.machine.name": record.machine,
                "stepwise.machine.version": record.version,
                "stepwise.execution.id": record.execution_id,
                "stepwise.execution.name": record.name,
            }
        )
        self._payload(span, "stepwise.input", event.details.get("input"))
        self._root = _Node(span=span, parent=None, last_ts=event.timestamp)
        self._context[event.event_id] = self._root

    def _end_execution(self, event: Event, completed: list[SpanRecord]) -> None:
        root = self._root
        if root is None or not root.open:
            return
        default = _END_OF_EXECUTION[event.type]
        outcome: tuple[str, str | None] | None = None
        if default is not None:
            outcome = (str(event.details.get("error") or default), event.details.get("cause"))
        self._payload(root.span, "stepwise.output", event.details.get("output"))
        root.span.attributes["stepwise.execution.status"] = {
            "ExecutionSucceeded": "SUCCEEDED",
            "ExecutionFailed": "FAILED",
            "ExecutionTimedOut": "TIMED_OUT",
            "ExecutionAborted": "ABORTED",
        }[event.type]
        self._close(
            root,
            event,
            completed,
            outcome=outcome,
            inherited=outcome if event.type != "ExecutionAborted" else None,
            cancelled=event.type == "ExecutionAborted",
            success=event.type == "ExecutionSucceeded",
        )
        self.finished = True

    def _enter_state(self, event: Event, context: _Node, state_type: str) -> _Node:
        parent = context
        if context.span.kind == STATE and context.state_type == "Parallel":
            # A Parallel's own line only ever continues with Parallel events, so a
            # state entered right after one is the first state of a new branch.
            index = context.branches
            context.branches += 1
            branch = self._span(event, BRANCH, f"branch {index}", context.span.span_id)
            branch.attributes.update(
                {
                    "stepwise.state.name": context.state_name,
                    "stepwise.branch.index": index,
                    "stepwise.attempt": max(0, context.attempts - 1),
                }
            )
            parent = _Node(span=branch, parent=context, last_ts=event.timestamp)
            context.children.append(parent)
        name = str(event.details.get("name", state_type))
        span = self._span(event, STATE, name, parent.span.span_id)
        span.attributes.update(
            {
                "stepwise.state.name": name,
                "stepwise.state.type": state_type,
                "stepwise.execution.id": self.record.execution_id,
            }
        )
        self._payload(span, "stepwise.input", event.details.get("input"))
        node = _Node(
            span=span,
            parent=parent,
            state_type=state_type,
            state_name=name,
            last_ts=event.timestamp,
        )
        parent.children.append(node)
        return node

    def _new_attempt(self, state: _Node, event: Event, completed: list[SpanRecord]) -> None:
        for child in state.open_children():
            self._close(child, event, completed, outcome=None, cancelled=True)
        if state.attempts > 0:
            self._retry(state, event.timestamp)
        state.attempts += 1
        state.branches = 0

    def _start_iteration(self, event: Event, context: _Node) -> _Node:
        name = event.details.get("name")
        state = self._find_state(context, name=name, state_type="Map") or self._find_state(
            context, state_type="Map"
        )
        if state is None:
            return context
        index = int(event.details.get("index", len(state.iterations)))
        span = self._span(event, ITERATION, f"iteration {index}", state.span.span_id)
        span.attributes.update(
            {
                "stepwise.state.name": state.state_name,
                "stepwise.map.index": index,
                "stepwise.attempt": max(0, state.attempts - 1),
            }
        )
        node = _Node(span=span, parent=state, last_ts=event.timestamp)
        state.children.append(node)
        state.iterations[index] = node
        return node

    def _end_iteration(self, event: Event, context: _Node, completed: list[SpanRecord]) -> _Node:
        name = event.details.get("name")
        state = self._find_state(context, name=name, state_type="Map") or self._find_state(
            context, state_type="Map"
        )
        if state is None:
            return context
        iteration = state.iterations.get(int(event.details.get("index", -1)))
        if iteration is not None and iteration.open:
            if event.type == "MapIterationSucceeded":
                self._close(iteration, event, completed, outcome=None, success=True)
            elif event.type == "MapIterationFailed":
                self._close(
                    iteration, event, completed, outcome=None, inherited=("States.Failed", None)
                )
            else:
                self._close(iteration, event, completed, outcome=None, cancelled=True)
        return state

    def _start_task(self, event: Event, context: _Node) -> _Node:
        state = self._find_state(context, state_type="Task") or context
        if state.attempts > 0 and (state.pending_error or state.child_error):
            self._retry(state, event.timestamp)
        attempt = state.attempts
        state.attempts += 1
        resource = str(event.details.get("resource", ""))
        span = self._span(event, TASK, f"task {resource}", state.span.span_id)
        span.attributes.update(
            {
                "stepwise.state.name": state.state_name,
                "stepwise.task.resource": resource,
                "stepwise.task.resource_type": str(event.details.get("resourceType", "")),
                "stepwise.task.attempt": attempt,
            }
        )
        for source, target in (
            ("timeoutInSeconds", "stepwise.task.timeout_seconds"),
            ("heartbeatInSeconds", "stepwise.task.heartbeat_seconds"),
        ):
            if source in event.details:
                span.attributes[target] = int(event.details[source])
        self._payload(span, "stepwise.input", event.details.get("parameters"))
        node = _Node(span=span, parent=state, last_ts=event.timestamp)
        state.children.append(node)
        return node

    def _end_task(self, event: Event, context: _Node, completed: list[SpanRecord]) -> _Node:
        task = self._find(context, lambda n: n.span.kind == TASK)
        if task is None:
            return context
        if event.type == "TaskSucceeded":
            self._payload(task.span, "stepwise.output", event.details.get("output"))
            self._close(task, event, completed, outcome=None, success=True)
        else:
            default = "States.Timeout" if event.type == "TaskTimedOut" else "States.TaskFailed"
            error = (str(event.details.get("error") or default), event.details.get("cause"))
            self._close(task, event, completed, outcome=error)
            if task.parent is not None:
                task.parent.pending_error = error
        return task.parent or context

    # -- span bookkeeping ------------------------------------------------------
    def _span(self, event: Event, kind: str, name: str, parent: str | None) -> SpanRecord:
        return SpanRecord(
            trace_id=self.trace_id,
            span_id=span_id_for(self.trace_id, event.event_id, kind),
            parent_span_id=parent,
            name=name,
            kind=kind,
            start=event.timestamp,
            end=None,
            start_event_id=event.event_id,
            end_event_id=None,
        )

    def _payload(self, span: SpanRecord, key: str, text: Any) -> None:
        shown = self.payloads.render(None if text is None else str(text))
        if shown is not None:
            span.attributes[key] = shown

    def _retry(self, state: _Node, when: datetime) -> None:
        error = state.pending_error or state.child_error
        attributes: dict[str, AttributeValue] = {"stepwise.attempt": state.attempts}
        if error is not None:
            attributes["error.type"] = error[0]
        state.span.events.append(SpanEvent("stepwise.retry", when, attributes))
        state.pending_error = state.child_error = None

    def _caught(self, state: _Node, when: datetime) -> None:
        error = state.pending_error or state.child_error
        if error is None:
            return
        attributes: dict[str, AttributeValue] = {"error.type": error[0]}
        self._cause(attributes, error[1])
        state.span.events.append(SpanEvent("stepwise.caught", when, attributes))
        state.pending_error = state.child_error = None

    def _cause(self, attributes: dict[str, AttributeValue], cause: str | None) -> None:
        # A cause often quotes the data that failed, so it counts as payload,
        # and its secrets are redacted in the text itself (a JSON string hides nothing).
        if cause is not None and self.payloads.enabled:
            redacted = self.payloads.redactor.text(cause)
            shown = self.payloads.render(msgspec.json.encode(redacted).decode())
            if shown is not None:
                attributes["stepwise.error.cause"] = shown

    def _close(
        self,
        node: _Node,
        event: Event,
        completed: list[SpanRecord],
        *,
        outcome: tuple[str, str | None] | None,
        inherited: tuple[str, str | None] | None = None,
        cancelled: bool = False,
        success: bool = False,
    ) -> None:
        """End `node` (and, first, whatever is still open inside it) at `event`."""
        children = node.open_children()
        for child in children:
            self._close(
                child, event, completed, outcome=None, inherited=inherited, cancelled=cancelled
            )
        error = outcome
        if error is None and not success:
            error = node.pending_error or node.child_error
            if error is None and node.state_type == "Fail" and node.span.kind == STATE:
                error = inherited or ("States.Failed", None)
            if error is None and inherited is not None and not children:
                error = inherited
        end = event.timestamp
        if node.span.kind == BRANCH and node.last_ts is not None:
            # A branch has no end event of its own: it ends with its last event.
            end = node.last_ts
        node.open = False
        span = node.span
        span.end = max(end, span.start)
        span.end_event_id = event.event_id
        if error is not None:
            span.error = error[0] or "States.Failed"
            span.status_message = span.error
            span.attributes["error.type"] = span.error
            exception: dict[str, AttributeValue] = {"exception.type": span.error}
            self._cause(exception, error[1])
            span.events.append(SpanEvent("exception", span.end, exception))
            if node.parent is not None and node.parent.open:
                node.parent.child_error = node.parent.child_error or error
        elif cancelled and (children or node.span.kind in (STATE, TASK)):
            span.attributes["stepwise.cancelled"] = True
        completed.append(span)
        self._forget(node)

    @staticmethod
    def _forget(node: _Node) -> None:
        """Drop what a closed node holds; the builder never reads a closed node's span again."""
        parent = node.parent
        if parent is not None:
            if node.span.kind == ITERATION:
                index = node.span.attributes.get("stepwise.map.index")
                if isinstance(index, int) and parent.iterations.get(index) is node:
                    del parent.iterations[index]
            parent.closed_children += 1
            # Compacted when half are closed: amortised O(1) per span, even for wide Maps.
            if parent.closed_children > 16 and 2 * parent.closed_children > len(parent.children):
                parent.children = parent.open_children()
                parent.closed_children = 0
        node.children = []
        node.iterations = {}
        node.span = _RELEASED

    def _touch(self, node: _Node, when: datetime) -> None:
        current: _Node | None = node
        while current is not None:
            if current.last_ts is None or when > current.last_ts:
                current.last_ts = when
            current = current.parent

    @staticmethod
    def _resolve(node: _Node | None) -> _Node | None:
        while node is not None and not node.open:
            node = node.parent
        return node

    @staticmethod
    def _find(node: _Node | None, match: Any) -> _Node | None:
        while node is not None:
            if node.open and match(node):
                return node
            node = node.parent
        return None

    def _find_state(
        self, node: _Node, *, name: Any = None, state_type: str | None = None
    ) -> _Node | None:
        return self._find(
            node,
            lambda n: (
                n.span.kind == STATE
                and (name is None or n.state_name == name)
                and (state_type is None or n.state_type == state_type)
            ),
        )


def build_spans(
    record: ExecutionRecord,
    events: Iterable[Event],
    *,
    payloads: PayloadPolicy | None = None,
    include_open: bool = False,
) -> list[SpanRecord]:
    """Every span of the execution's history, in the order their end events came.

    With `include_open`, spans still running are appended with `end` None.
    """
    builder = TraceBuilder(record, payloads=payloads)
    spans = builder.feed(events)
    if include_open:
        spans.extend(builder.open_spans())
    return spans
