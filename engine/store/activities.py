"""The HTTP API's activities and resource tags in the store, so a restarted server keeps them.

An activity is a name and a creation date (CreateActivity is idempotent on
the name: the first date stays). Tags are key/value pairs per resource, the
resource named by its ARN without region and account (``activity:NAME``,
``stateMachine:NAME``), so a server serving another region reads the same
tags. Adding tags checks the resource's total in the same transaction, and
deleting an activity deletes its tags with it. Activity *tasks* (what
GetActivityTask hands out) live in `engine.store.tokens`, not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from engine.store.base import StoreBase
from engine.store.schema import activities, resource_tags
from statemachine.errors import StepwiseError

__all__ = ["ActivityStore", "TooManyTags"]


class TooManyTags(StepwiseError):
    """Adding the tags would take a resource past its limit (AWS: TooManyTags)."""

    aws_code = "TooManyTags"


class ActivityStore(StoreBase):
    """The store's calls for the API's activities and resource tags (a part of `Store`)."""

    def create_activity(self, name: str, now: datetime) -> datetime:
        """Create activity `name` unless it exists; its creation date either way."""
        with self._write() as conn:
            conn.execute(
                self._backend.insert_ignoring_duplicates(
                    activities, {"name": name, "created_at": now}, key=("name",)
                )
            )
            created: datetime = conn.execute(
                sa.select(activities.c.created_at).where(activities.c.name == name)
            ).scalar_one()
        return created

    def get_activity(self, name: str) -> datetime | None:
        """Activity `name`'s creation date, or None when there is no such activity."""
        with self._read() as conn:
            created: datetime | None = conn.execute(
                sa.select(activities.c.created_at).where(activities.c.name == name)
            ).scalar()
        return created

    def list_activities(self) -> list[tuple[str, datetime]]:
        """Every activity (name, creation date), by name."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(activities.c.name, activities.c.created_at).order_by(activities.c.name)
            ).all()
        return [(row.name, row.created_at) for row in rows]

    def delete_activity(self, name: str, resource: str) -> None:
        """Delete activity `name` and the tags of `resource` (its tag key); none is no error."""
        with self._write() as conn:
            conn.execute(sa.delete(activities).where(activities.c.name == name))
            conn.execute(sa.delete(resource_tags).where(resource_tags.c.resource == resource))

    def get_tags(self, resource: str) -> dict[str, str]:
        """The tags of `resource` (a tag key such as ``activity:NAME``)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(resource_tags.c.key, resource_tags.c.value).where(
                    resource_tags.c.resource == resource
                )
            ).all()
        return {row.key: row.value for row in rows}

    def add_tags(self, resource: str, tags: dict[str, str], *, limit: int) -> None:
        """Add or overwrite `tags` on `resource`. Raises TooManyTags past `limit` in all."""
        if not tags:
            return
        with self._write() as conn:
            have = {
                row.key
                for row in conn.execute(
                    sa.select(resource_tags.c.key)
                    .where(resource_tags.c.resource == resource)
                    .with_for_update()
                )
            }
            if len(have | set(tags)) > limit:
                raise TooManyTags(f"Too many tags: a resource has at most {limit}")
            conn.execute(
                sa.delete(resource_tags).where(
                    resource_tags.c.resource == resource, resource_tags.c.key.in_(list(tags))
                )
            )
            conn.execute(
                sa.insert(resource_tags),
                [{"resource": resource, "key": k, "value": v} for k, v in tags.items()],
            )

    def remove_tags(self, resource: str, keys: Iterable[str]) -> None:
        """Remove the tags `keys` from `resource` (keys it lacks are ignored)."""
        wanted = list(keys)
        if not wanted:
            return
        with self._write() as conn:
            conn.execute(
                sa.delete(resource_tags).where(
                    resource_tags.c.resource == resource, resource_tags.c.key.in_(wanted)
                )
            )
