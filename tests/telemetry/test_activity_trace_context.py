"""Trace context reaches activities: a handler's traceparent names its own task span.

A handler that starts spans under `context.traceparent` nests them under the
span Stepwise builds for that task attempt — for plain Resources and for
Lambda function ARNs alike, and for every retry attempt.
"""

from __future__ import annotations

from typing import Any

from activities import ActivityContext, Registry, lambda_function
from activities.lambda_ import LambdaContext
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

    lambda_seen: list[str | None] = []

    def echo(event: Any, context: LambdaContext) -> Any:
        lambda_seen.append(context.activity.traceparent)
        return event

    lambda_function("Echo", registry=registry)(echo)
    with Engine(sqlite_url, registry=registry, worker=False) as engine:
        record = engine.run_sync(MACHINE, {"k": 1})
        events = engine.history_sync(record)
    assert record.status == "SUCCEEDED", record.cause
    spans = build_spans(record, events)
    task_spans = [s for s in spans if s.name.startswith("task ")]
    assert len(task_spans) == 3  # two attempts of Plain, one Lambda call
    assert len(seen) == 2 and len(lambda_seen) == 1
    for traceparent in seen + lambda_seen:
        assert traceparent is not None
        version, trace_id, _parent, flags = traceparent.split("-")
        assert (version, trace_id, flags) == ("00", record.trace_id, "01")
    # Each attempt's handler is parented by that attempt's own span, in order.
    plain_spans = [s.span_id for s in task_spans if "plain" in s.name]
    lambda_spans = [s.span_id for s in task_spans if "Echo" in s.name]
    assert len(plain_spans) == 2 and len(lambda_spans) == 1
    assert [tp.split("-")[2] for tp in seen if tp] == plain_spans
    assert [tp.split("-")[2] for tp in lambda_seen if tp] == lambda_spans
