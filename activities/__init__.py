"""Activities: what a Task's Resource runs.

Handlers are registered with `@activity("name")` (or on an `Engine`), and
receive the Task's effective input and an `ActivityContext`.
"""

from activities.registry import (
    ActivityContext,
    ActivityError,
    Registry,
    activity,
    default_registry,
)

__all__ = ["ActivityContext", "ActivityError", "Registry", "activity", "default_registry"]
