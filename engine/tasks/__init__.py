"""Calling a Task's Resource: journaled scheduling, timeouts, heartbeats, callbacks, outcomes.

The package is split by job: `attempt` records one attempt once (`invoke`,
the one place where work leaves the process); `call` is a live attempt
with its context and time limits; `dispatch` runs work in this process by
what `engine.resources` resolves the Resource to (Lambda functions,
``lambda:invoke``, handlers, the HTTP / SQL / shell built-ins); `waiting`
holds callback tokens and activity workers; `events` names the Task*,
LambdaFunction* and Activity* events; `outcome` is the typed result
(`Succeeded` / `Failed`) and its journaled form.
"""

from __future__ import annotations

from engine.resources import LAMBDA_INVOKE, base_resource, is_activity_arn, resource_parts
from engine.tasks.attempt import invoke
from engine.tasks.outcome import Failed, Outcome, Succeeded, TaskFailure
from statemachine.quotas import MAX_PAYLOAD_BYTES

__all__ = [
    "LAMBDA_INVOKE",
    "MAX_PAYLOAD_BYTES",
    "Failed",
    "Outcome",
    "Succeeded",
    "TaskFailure",
    "base_resource",
    "invoke",
    "is_activity_arn",
    "resource_parts",
]
