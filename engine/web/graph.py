"""What the execution page draws: a machine's graph and what happened to each state.

`machine_graph` turns a definition (the raw JSON the store keeps) into
nodes, groups and edges: Parallel branches and Map processors become
groups nested in their state, Choice edges carry their rule as a label,
Catch edges are marked as such. `state_outcomes` folds an execution's
history once into per-state aggregates — visits, task attempts, errors,
durations, the payloads at each data-flow step of the latest visits — and
an outcome per state (succeeded, failed, caught, retried, running,
aborted, not reached), so a Map of a thousand iterations draws as one
state with counts, not a thousand nodes. Pure functions; no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.store import Event, ExecutionRecord, ExecutionStatus

__all__ = [
    "Attempt",
    "StateAggregate",
    "Visit",
    "machine_graph",
    "state_outcomes",
]

# How many visits of one state keep their payloads (a Map's inner states are visited often).
MAX_VISITS_KEPT = 5
_LABEL_CHARS = 60


def _rule_label(rule: Any) -> str:
    """A short text for a Choice rule: ``$.x NumericEquals 1``, ``And(…)``, a JSONata condition."""
    if not isinstance(rule, dict):
        return ""
    if "Condition" in rule:
        text = str(rule["Condition"])
    elif "And" in rule or "Or" in rule:
        word = "And" if "And" in rule else "Or"
        parts = rule.get(word)
        listed = parts if isinstance(parts, list) else []
        text = f"{word}(" + ", ".join(_rule_label(part) for part in listed) + ")"
    elif "Not" in rule:
        text = f"Not({_rule_label(rule['Not'])})"
    else:
        operator = next(
            (key for key in rule if key not in ("Variable", "Next", "Comment", "Output", "Assign")),
            "",
        )
        value = json.dumps(rule.get(operator), separators=(",", ":"))
        text = f"{rule.get('Variable', '')} {operator} {value}".strip()
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _add_edge(
    edges: list[dict[str, Any]], source: str, target: Any, kind: str, label: str = ""
) -> None:
    if isinstance(target, str):
        edges.append({"from": source, "to": target, "kind": kind, "label": label})


def _walk(
    states: Any, parent: str | None, nodes: list[dict[str, Any]], edges: list[dict[str, Any]]
) -> None:
    """Add the nodes and edges of one `States` object (a machine, branch or processor)."""
    if not isinstance(states, dict):
        return
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        kind = str(state.get("Type", ""))
        end = bool(state.get("End")) or kind in ("Succeed", "Fail")
        nodes.append(
            {"id": name, "state": name, "type": kind, "parent": parent, "group": False, "end": end}
        )
        _add_edge(edges, name, state.get("Next"), "next")
        if kind == "Choice":
            for rule in state.get("Choices") or []:
                if isinstance(rule, dict):
                    _add_edge(edges, name, rule.get("Next"), "choice", _rule_label(rule))
            _add_edge(edges, name, state.get("Default"), "default", "Default")
        for catcher in state.get("Catch") or []:
            if isinstance(catcher, dict):
                errors = ", ".join(str(e) for e in catcher.get("ErrorEquals") or [])
                _add_edge(edges, name, catcher.get("Next"), "catch", errors)
        inner: list[tuple[str, str, Any]] = []
        if kind == "Parallel":
            for index, branch in enumerate(state.get("Branches") or []):
                inner.append((f"{name}#branch{index + 1}", "Branch", branch))
        elif kind == "Map":
            processor = state.get("ItemProcessor") or state.get("Iterator")
            inner.append((f"{name}#processor", "Processor", processor))
        if not inner:
            continue
        # A state with branches is a group: edges meet it at a fork node on
        # top and leave from a join node below (a layout cannot join an edge
        # to a group itself).
        nodes[-1]["group"] = True
        nodes.append(_anchor(f"{name}::fork", name, kind, "fork"))
        nodes.append(_anchor(f"{name}::join", name, kind, "join"))
        for group, label, body in inner:
            nodes.append({"id": group, "state": name, "type": label, "parent": name, "group": True})
            if not isinstance(body, dict):
                continue
            first = len(nodes)
            _walk(body.get("States"), group, nodes, edges)
            _add_edge(edges, f"{name}::fork", body.get("StartAt"), "fork")
            for node in nodes[first:]:
                if node.get("end") and node["parent"] == group:
                    _add_edge(edges, node["id"], f"{name}::join", "join")


def _anchor(node_id: str, state: str, kind: str, role: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "state": state,
        "type": kind,
        "parent": state,
        "group": False,
        "end": False,
        "role": role,
    }


def machine_graph(definition: str) -> dict[str, Any]:
    """Nodes, edges and the start state of a definition, ready for a layered layout.

    Each node names the `state` it stands for. A Parallel or Map state is a
    group holding a ``fork`` and a ``join`` node and one group per branch
    (or its item processor); edges into such a state end at its fork, edges
    out of it start at its join. Edge kinds are ``next``, ``choice``
    (labelled with the rule), ``default``, ``catch`` (labelled with the
    errors), ``fork`` and ``join``.
    """
    try:
        raw = json.loads(definition)
    except ValueError:
        raw = {}
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    _walk(raw.get("States") if isinstance(raw, dict) else None, None, nodes, edges)
    groups = {node["id"] for node in nodes if node["group"]}
    for edge in edges:
        if edge["to"] in groups:
            edge["to"] = f"{edge['to']}::fork"
        if edge["from"] in groups:
            edge["from"] = f"{edge['from']}::join"
    known = {node["id"] for node in nodes}
    edges = [edge for edge in edges if edge["from"] in known and edge["to"] in known]
    start = raw.get("StartAt") if isinstance(raw, dict) else None
    if start in groups:
        start = f"{start}::fork"
    return {"nodes": nodes, "edges": edges, "start": start}


@dataclass
class Attempt:
    """One task attempt: when it was scheduled and ended, its input, result or error."""

    scheduled: datetime
    ended: datetime | None = None
    resource: str = ""
    parameters: str | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None


@dataclass
class Visit:
    """One entry into a state: its input and output and the attempts in between."""

    entered: datetime
    input: str | None
    exited: datetime | None = None
    output: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    # Whether the latest task attempt (or branch) of this visit failed.
    failed: bool = False


@dataclass
class StateAggregate:
    """Everything the history says about one state name, folded once."""

    name: str
    entered: int = 0
    exited: int = 0
    attempts: int = 0
    failures: int = 0
    caught: int = 0
    visits: list[Visit] = field(default_factory=list)
    # A Map state's iterations by how they went: Started, Succeeded, Failed, Aborted.
    iterations: dict[str, int] = field(default_factory=dict)
    outcome: str = "not-reached"

    def keep(self, visit: Visit) -> None:
        self.visits.append(visit)
        if len(self.visits) > MAX_VISITS_KEPT:
            del self.visits[0]


def _is_failure(kind: str) -> bool:
    return not kind.startswith("Execution") and kind.endswith(("Failed", "TimedOut", "Aborted"))


def state_outcomes(record: ExecutionRecord, events: list[Event]) -> dict[str, StateAggregate]:
    """Per-state aggregates of one execution's history, each with its outcome.

    An event without a state name belongs to the visit of the event it
    follows (``previousEventId``), so the tasks of parallel branches and
    concurrent Map iterations are counted in their own visits.
    """
    # Each event's state and the visit it belongs to.
    owner: dict[int, tuple[str, Visit | None]] = {}
    latest_visit: dict[str, Visit] = {}
    aggregates: dict[str, StateAggregate] = {}
    for event in events:
        details = event.details
        named = event.type.endswith(("Entered", "Exited")) or event.type.startswith("MapIteration")
        name = details.get("name") if named else None
        before = owner.get(event.previous_event_id)
        if not isinstance(name, str):
            name = before[0] if before is not None else None
        if name is None or event.type.startswith("Execution"):
            continue
        visit = before[1] if before is not None and before[0] == name else latest_visit.get(name)
        aggregate = aggregates.setdefault(name, StateAggregate(name))
        if event.type.startswith("MapIteration"):
            phase = event.type.removeprefix("MapIteration")
            aggregate.iterations[phase] = aggregate.iterations.get(phase, 0) + 1
        if event.type.endswith("StateEntered"):
            aggregate.entered += 1
            visit = Visit(entered=event.timestamp, input=details.get("input"))
            latest_visit[name] = visit
            aggregate.keep(visit)
        elif event.type.endswith("StateExited"):
            aggregate.exited += 1
            if visit is not None:
                visit.exited = event.timestamp
                visit.output = details.get("output")
                if visit.failed:
                    aggregate.caught += 1
        elif event.type.endswith("Scheduled"):
            aggregate.attempts += 1
            if visit is not None:
                visit.attempts.append(
                    Attempt(
                        scheduled=event.timestamp,
                        resource=str(details.get("resource", "")),
                        parameters=details.get("parameters"),
                    )
                )
        elif _is_failure(event.type) or event.type.endswith("Succeeded"):
            _settle(aggregate, visit, event)
        owner[event.event_id] = (name, visit)
    running = record.status == ExecutionStatus.RUNNING
    for aggregate in aggregates.values():
        aggregate.outcome = _outcome(aggregate, running, record.status)
    return aggregates


def _settle(aggregate: StateAggregate, visit: Visit | None, event: Event) -> None:
    """Record a task's (or a branch's) success or failure in its visit."""
    details = event.details
    failed = _is_failure(event.type)
    attempt = visit.attempts[-1] if visit is not None and visit.attempts else None
    is_task = event.type.startswith(("Task", "Activity", "Lambda"))
    if attempt is not None and attempt.ended is None and is_task:
        attempt.ended = event.timestamp
        attempt.output = details.get("output")
        attempt.error = details.get("error") if failed else None
        attempt.cause = details.get("cause") if failed else None
    if failed:
        aggregate.failures += 1
        if visit is not None:
            visit.failed = True
            visit.errors.append((str(details.get("error", "")), str(details.get("cause", ""))))
    elif attempt is not None and visit is not None:
        visit.failed = False


def _outcome(aggregate: StateAggregate, running: bool, status: str) -> str:
    if aggregate.entered == 0:
        return "not-reached"
    if aggregate.entered > aggregate.exited:
        if running:
            return "running"
        return "aborted" if status == ExecutionStatus.ABORTED else "failed"
    if aggregate.caught:
        return "caught"
    if aggregate.failures or aggregate.attempts > aggregate.entered:
        return "retried"
    return "succeeded"
