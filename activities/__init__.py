"""Activities: what a Task's Resource runs.

Handlers are registered with `@activity("name")` (or on an `Engine`), Lambda
functions with `@lambda_function("arn:aws:lambda:…")`; each receives the
Task's effective input and a context. Built-ins (HTTP, SQL, shell), the
resource mapping file and mock mode live in their own modules.
"""

from activities.lambda_ import lambda_function
from activities.registry import (
    ActivityContext,
    ActivityError,
    Registry,
    activity,
    default_registry,
)

__all__ = [
    "ActivityContext",
    "ActivityError",
    "Registry",
    "activity",
    "default_registry",
    "lambda_function",
]
