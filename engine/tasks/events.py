"""The history events of a Task attempt, in one of three families.

A Task's events are named by what its Resource is: ``Task*`` (service
integrations, handlers, built-ins), ``LambdaFunction*`` (a Lambda function
ARN) or ``Activity*`` (an activity ARN). `TaskEvents` builds the
scheduling events and the outcome event of one attempt with AWS's names
and details.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from engine.journal import Events
from engine.resources import base_resource, is_activity_arn, resource_parts
from engine.tasks.outcome import Outcome, Succeeded
from statemachine.errors import States
from statemachine.quotas import MAX_SECONDS

__all__ = ["Family", "TaskEvents", "family_of"]

Family = Literal["task", "lambda", "activity"]


def family_of(base: str) -> Family:
    """Which event family a Resource (without its suffix) belongs to."""
    if base.startswith("arn:aws:lambda:"):
        return "lambda"
    if is_activity_arn(base):
        return "activity"
    return "task"


class TaskEvents:
    """The event names and details of one family for one Resource."""

    def __init__(self, resource: str) -> None:
        base = base_resource(resource)
        self.family = family_of(base)
        # Task* events name the Resource as written (".waitForTaskToken" included).
        resource_type, named = resource_parts(resource if self.family == "task" else base)
        self.base = {"resourceType": resource_type, "resource": named}
        # The outcome events' names, made once per Resource (not per attempt).
        prefix = {"lambda": "LambdaFunction", "activity": "Activity"}.get(self.family, "Task")
        self._succeeded = f"{prefix}Succeeded"
        self._failed = f"{prefix}Failed"
        self._timed_out = f"{prefix}TimedOut"

    def scheduled(self, payload: str, timeout: float, heartbeat: float) -> Events:
        """…Scheduled (and …Started, except for activities, which start when polled)."""
        limits: dict[str, Any] = {}
        if timeout < MAX_SECONDS:
            limits["timeoutInSeconds"] = int(timeout)
        if heartbeat < math.inf:
            limits["heartbeatInSeconds"] = int(heartbeat)
        if self.family == "lambda":
            details = {"resource": self.base["resource"], "input": payload}
            details.update({k: v for k, v in limits.items() if k == "timeoutInSeconds"})
            return [("LambdaFunctionScheduled", details), ("LambdaFunctionStarted", {})]
        if self.family == "activity":
            return [
                (
                    "ActivityScheduled",
                    {"resource": self.base["resource"], "input": payload, **limits},
                )
            ]
        details = {**self.base, "region": "local", "parameters": payload, **limits}
        return [("TaskScheduled", details), ("TaskStarted", dict(self.base))]

    def submitted(self, payload: str) -> Events:
        """TaskSubmitted: a `.waitForTaskToken` handler ran and the wait begins."""
        return [("TaskSubmitted", {**self.base, "output": payload})]

    def succeeded(self, output: str) -> Events:
        """…Succeeded with the result's text."""
        details: dict[str, Any] = {} if self.family in ("lambda", "activity") else dict(self.base)
        details["output"] = output
        return [(self._succeeded, details)]

    def outcome(self, outcome: Outcome, payload: Callable[[Any], str]) -> Events:
        """…Succeeded, …Failed or …TimedOut."""
        if isinstance(outcome, Succeeded):
            return self.succeeded(payload(outcome.value))
        details: dict[str, Any] = {} if self.family in ("lambda", "activity") else dict(self.base)
        details["error"] = outcome.error
        if outcome.cause is not None:
            details["cause"] = outcome.cause
        return [(self._timed_out if outcome.error == States.TIMEOUT else self._failed, details)]
