"""Trace context reaches activities: a handler's traceparent names its own task span.

A handler that starts spans under `context.traceparent` nests them under the
span Stepwise builds for that task attempt — for plain Resources and for
Lambda function ARNs alike, and for every retry attempt.
"""

from __future__ import annotations

from typing import Any

from activities import ActivityContext, Registry, lambda_function
from engine import Engine
from engine.telemetry import build_spans

MACHINE = {
    "StartAt": "Plain",
    "States": {
        "Plain": {
            "Type": "Task",
            "Resource": "plain",
            "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 1}],
            "Next": "Lambda",
        },
        "Lambda": {
            "Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:000000000000:function:Echo",
            "End": True,
        },
    },
}


class Flaky(Exception):
    pass


def test_handler_traceparent_is_its_task_span(sqlite_url: str) -> None:
    seen: list[str | None] = []
    registry = Registry()

    def plain(value: Any, context: ActivityContext) -> Any:
        seen.append(context.traceparent)
        if len(seen) == 1:
            raise Flaky("first attempt fails")
        return value

    registry.register("plain", plain)

    def echo(event: Any, context: Any) -> Any:
        return event

    lambda_function("Echo", registry=registry)(echo)
    with Engine(sqlite_url, registry=registry, worker=False) as engine:
        record = engine.run_sync(MACHINE, {"k": 1})
        events = engine.history_sync(record)
    assert record.status == "SUCCEEDED", record.cause
    spans = build_spans(record, events)
    task_spans = [s for s in spans if s.name.startswith("task ")]
    assert len(task_spans) == 3  # two attempts of Plain, one Lambda call
    for traceparent in seen:
        assert traceparent is not None
        _version, trace_id, _parent, _flags = traceparent.split("-")
        assert trace_id == record.trace_id
    parents = {tp.split("-")[2] for tp in seen if tp}
    plain_spans = {s.span_id for s in task_spans if "plain" in s.name}
    assert parents == plain_spans
