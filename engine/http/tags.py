"""Tags on state machines and activities: TagResource, UntagResource, ListTagsForResource.

Tags are ``[{"key", "value"}]`` pairs (keys 1-128 characters, values up to
256, at most 50 per resource, as AWS limits them). Infrastructure tools
read them back after creating a resource, so they are kept in the store
(`engine.store.activities`), keyed by the ARN without region and account,
and survive a restart of the server. A tag on a resource that does not
exist is AWS's ``ResourceNotFound``.
"""

from __future__ import annotations

from typing import Any

from engine.arns import ParsedArn
from engine.http.protocol import AwsError, Members
from engine.http.service import Operation, Service
from engine.store import StateMachineDoesNotExist
from engine.store.activities import TooManyTags

__all__ = ["MAX_TAGS", "OPERATIONS", "keep_tags", "read_tags", "tag_key"]

MAX_TAGS = 50


def read_tags(members: Members, resource: str, name: str = "tags") -> dict[str, str]:
    """The `tags` member as a dict, checked as AWS checks it.

    `resource` is the ARN of the resource being tagged: AWS's TooManyTags
    names it (``resourceName``).
    """
    raw = members.body.get(name)
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise AwsError("SerializationException", f"'{name}' must be a list")
    tags: dict[str, str] = {}
    for index, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise AwsError("SerializationException", f"'{name}.{index}.member' must be an object")
        pair = Members(item, at=f"{name}.{index}.member")
        key = pair.required_string("key", min_length=1, max_length=128)
        tags[key] = pair.string("value", default="", max_length=256) or ""
    if len(tags) > MAX_TAGS:
        # Refused before anything is created: a new machine never exists without its tags.
        raise AwsError(
            "TooManyTags",
            f"Too many tags: {len(tags)}, at most {MAX_TAGS}",
            resourceName=resource,
        )
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
        if await service.run_db(service.engine.store.get_activity, arn.resource) is None:
            raise missing
        return service.arns.activity(arn.resource)
    if arn.qualifier is not None or "/" in arn.resource:
        raise missing
    try:
        await service.engine.describe_state_machine(arn.resource)
    except StateMachineDoesNotExist:
        raise missing from None
    return service.machine_arn(arn.resource)


def tag_key(arn: str) -> str:
    """Where `arn`'s tags are kept: the ARN without partition, region and account."""
    return arn.split(":", 5)[-1]


async def keep_tags(service: Service, resource: str, tags: dict[str, str]) -> None:
    """Add `tags` to the tags of `resource` (an ARN); TooManyTags past AWS's 50."""
    try:
        await service.run_db(service.engine.store.add_tags, tag_key(resource), tags, limit=MAX_TAGS)
    except TooManyTags as exc:
        raise AwsError("TooManyTags", str(exc), resourceName=resource) from None


async def tag_resource(service: Service, members: Members) -> dict[str, Any]:
    tags = read_tags(members, str(members.body.get("resourceArn")))
    if not tags and members.body.get("tags") is None:
        raise AwsError(
            "ValidationException",
            "1 validation error detected: Value null at 'tags' failed to satisfy constraint: "
            "Member must not be null",
        )
    await keep_tags(service, await _resource(service, members), tags)
    return {}


async def untag_resource(service: Service, members: Members) -> dict[str, Any]:
    keys = members.body.get("tagKeys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise AwsError("SerializationException", "'tagKeys' must be a list of strings")
    resource = await _resource(service, members)
    await service.run_db(service.engine.store.remove_tags, tag_key(resource), keys)
    return {}


async def list_tags_for_resource(service: Service, members: Members) -> dict[str, Any]:
    resource = await _resource(service, members)
    tags = await service.run_db(service.engine.store.get_tags, tag_key(resource))
    return {"tags": [{"key": k, "value": v} for k, v in sorted(tags.items())]}


OPERATIONS: dict[str, Operation] = {
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
}
