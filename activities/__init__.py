"""Activities: what a Task's Resource runs.

Handlers are registered with `@activity("name")` (or on an `Engine`), Lambda
functions with `@lambda_function("arn:aws:lambda:…")`; each receives the
Task's effective input and a context. Built-ins (HTTP, SQL, shell), the
resource mapping file and mock mode live in their own modules; the Lambda
emulation loads when `lambda_function` is first used.
"""

from typing import TYPE_CHECKING, Any

from activities.registry import (
    ActivityContext,
    ActivityError,
    Registry,
    activity,
    default_registry,
)

if TYPE_CHECKING:
    from activities.lambda_ import lambda_function

__all__ = [
    "ActivityContext",
    "ActivityError",
    "Registry",
    "activity",
    "default_registry",
    "lambda_function",
]


def __getattr__(name: str) -> Any:
    # The Lambda emulation (`lambda_.py`) loads with its first use: a process
    # whose definitions call no Lambda function never imports it.
    if name == "lambda_function":
        from activities.lambda_ import lambda_function

        globals()[name] = lambda_function
        return lambda_function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
