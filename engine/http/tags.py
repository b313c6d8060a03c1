"""Tags on state machines and activities: TagResource, UntagResource, ListTagsForResource.

Tags are ``[{"key", "value"}]`` pairs (keys 1-128 characters, values up to
256, at most 50 per resource, as AWS limits them). Infrastructure tools
read them back after creating a resource, so the server keeps them — in
its own process for now, like the activity registry, until the store has a
table for them. A tag on a resource that does not exist is AWS's
``ResourceNotFound``.
"""

from __future__ import annotations

from typing import Any

from engine.arns import ParsedArn
from engine.http.protocol import AwsError, Members
from engine.http.service import Operation, Service
from engine.store import StateMachineDoesNotExist

__all__ = ["MAX_TAGS", "OPERATIONS", "read_tags"]

MAX_TAGS = 50


def read_tags(members: Members, name: str = "tags") -> dict[str, str]:
    """The `tags` member as a dict, checked as AWS checks it."""
    raw = members.body.get(name)
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise AwsError("SerializationException", f"'{name}' must be a list")
    tags: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise AwsError("SerializationException", f"'{name}' items must be objects")
        pair = Members(item)
        key = pair.required_string("key", min_length=1, max_length=128)
        tags[key] = pair.string("value", default="", max_length=256) or ""
    return tags


async def _resource(service: Service, members: Members) -> str:
    """The ARN (in the server's region) of an existing resource that tags may name."""
    arn: ParsedArn = members.required_arn("resourceArn", "stateMachine", "activity")
    missing = AwsError(
        "ResourceNotFound",
        f"Resource not found: '{members.body.get('resourceArn')}'",
        resourceName=str(members.body.get("resourceArn")),
    )
    if arn.kind == "activity":
        if arn.resource not in service.activities:
            raise missing
        return service.arns.activity(arn.resource)
    if arn.qualifier is not None or "/" in arn.resource:
        raise missing
    try:
        await service.engine.describe_state_machine(arn.resource)
    except StateMachineDoesNotExist:
        raise missing from None
    return service.machine_arn(arn.resource)


def keep_tags(service: Service, resource: str, tags: dict[str, str]) -> None:
    """Add `tags` to `resource`'s; TooManyTags past AWS's 50."""
    merged = {**service.tags.get(resource, {}), **tags}
    if len(merged) > MAX_TAGS:
        raise AwsError(
            "TooManyTags",
            f"Too many tags: a resource has at most {MAX_TAGS}",
            resourceName=resource,
        )
    if merged:
        service.tags[resource] = merged


async def tag_resource(service: Service, members: Members) -> dict[str, Any]:
    tags = read_tags(members)
    if not tags and members.body.get("tags") is None:
        raise AwsError(
            "ValidationException",
            "1 validation error detected: Value null at 'tags' failed to satisfy constraint: "
            "Member must not be null",
        )
    keep_tags(service, await _resource(service, members), tags)
    return {}


async def untag_resource(service: Service, members: Members) -> dict[str, Any]:
    keys = members.body.get("tagKeys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise AwsError("SerializationException", "'tagKeys' must be a list of strings")
    resource = await _resource(service, members)
    kept = {k: v for k, v in service.tags.get(resource, {}).items() if k not in keys}
    service.tags[resource] = kept
    return {}


async def list_tags_for_resource(service: Service, members: Members) -> dict[str, Any]:
    resource = await _resource(service, members)
    return {
        "tags": [{"key": k, "value": v} for k, v in sorted(service.tags.get(resource, {}).items())]
    }


OPERATIONS: dict[str, Operation] = {
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
}
