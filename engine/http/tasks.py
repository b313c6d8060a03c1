"""The task operations: callbacks by task token, and activities and their workers' long poll.

SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat close or refresh a
waiting task through `engine.callbacks` (the answer is journaled and the
execution made due in one transaction, on whichever worker holds it).
GetActivityTask long-polls `engine.callbacks.get_activity_task` for at
most `Service.activity_poll_seconds` and answers ``{}`` when nothing came,
as AWS does. Activities are matched by name; CreateActivity (idempotent on
the name), DescribeActivity, DeleteActivity and ListActivities keep them
in the store (`engine.store.activities`), so a restarted server has them. The Map
Run operations are `engine.http.map_runs`.
"""

from __future__ import annotations

from typing import Any

import anyio

from engine import callbacks
from engine.http.protocol import AwsError, Members, epoch
from engine.http.service import Operation, Service, decode_token, encode_token
from engine.http.tags import keep_tags, read_tags, tag_key
from engine.names import check_name

__all__ = ["OPERATIONS"]


def _token(members: Members) -> str:
    return members.required_string("taskToken", min_length=1, max_length=2048)


async def send_task_success(service: Service, members: Members) -> dict[str, Any]:
    token = _token(members)
    output = members.required_string("output")
    await service.run_db(callbacks.send_task_success, service.engine.store, token, output)
    return {}


async def send_task_failure(service: Service, members: Members) -> dict[str, Any]:
    token = _token(members)
    error = members.string("error", max_length=256)
    cause = members.string("cause", max_length=32768)
    await service.run_db(
        callbacks.send_task_failure, service.engine.store, token, error=error, cause=cause
    )
    return {}


async def send_task_heartbeat(service: Service, members: Members) -> dict[str, Any]:
    token = _token(members)
    await service.run_db(callbacks.send_task_heartbeat, service.engine.store, token)
    return {}


async def get_activity_task(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("activityArn", "activity")
    worker = members.string("workerName", default="worker", min_length=1, max_length=80)
    try:
        service.activity_pollers.acquire_nowait()
    except anyio.WouldBlock:
        raise AwsError(
            "ActivityWorkerLimitExceeded",
            f"Too many GetActivityTask polls in flight "
            f"(at most {service.activity_pollers.total_tokens:.0f})",
        ) from None
    try:
        task = await callbacks.get_activity_task(
            service.engine.store,
            arn.resource,
            worker_name=worker or "worker",
            timeout=service.activity_poll_seconds,
        )
    finally:
        service.activity_pollers.release()
    if task is None:
        return {}
    return {"taskToken": task.taskToken, "input": task.input}


async def create_activity(service: Service, members: Members) -> dict[str, Any]:
    name = members.required_string("name", min_length=1)
    check_name(name, what="activity")
    tags = read_tags(members, service.arns.activity(name))
    store = service.engine.store
    existed = await service.run_db(store.get_activity, name)
    created = await service.run_db(store.create_activity, name, service.engine.clock.now())
    if existed is None:
        # AWS: a repeated create is idempotent (by name) and ignores different tags.
        await keep_tags(service, service.arns.activity(name), tags)
    return {"activityArn": service.arns.activity(name), "creationDate": epoch(created)}


async def describe_activity(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("activityArn", "activity")
    created = await service.run_db(service.engine.store.get_activity, arn.resource)
    if created is None:
        raise AwsError("ActivityDoesNotExist", f"Activity Does Not Exist: '{arn.resource}'")
    return {
        "activityArn": service.arns.activity(arn.resource),
        "name": arn.resource,
        "creationDate": epoch(created),
    }


async def delete_activity(service: Service, members: Members) -> dict[str, Any]:
    arn = members.required_arn("activityArn", "activity")
    resource = tag_key(service.arns.activity(arn.resource))
    await service.run_db(service.engine.store.delete_activity, arn.resource, resource)
    return {}


async def list_activities(service: Service, members: Members) -> dict[str, Any]:
    page_size = members.max_results()
    position = decode_token(members.next_token(), "activities")
    everything = await service.run_db(service.engine.store.list_activities)
    page = everything[position : position + page_size]
    document: dict[str, Any] = {
        "activities": [
            {
                "activityArn": service.arns.activity(name),
                "name": name,
                "creationDate": epoch(created),
            }
            for name, created in page
        ]
    }
    if position + page_size < len(everything):
        document["nextToken"] = encode_token("activities", position + page_size)
    return document


OPERATIONS: dict[str, Operation] = {
    "SendTaskSuccess": send_task_success,
    "SendTaskFailure": send_task_failure,
    "SendTaskHeartbeat": send_task_heartbeat,
    "GetActivityTask": get_activity_task,
    "CreateActivity": create_activity,
    "DescribeActivity": describe_activity,
    "DeleteActivity": delete_activity,
    "ListActivities": list_activities,
}
