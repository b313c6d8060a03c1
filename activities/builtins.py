"""The Resource names of the built-in activities: HTTP, SQL and shell.

What a Task's Resource is compared with to decide that a built-in runs it
(`engine.resources`), apart from the built-ins themselves, so deciding loads
none of them: `http.py`, `sql.py` and `shell.py` load when a Task first runs
one (each re-exports its name).
"""

from __future__ import annotations

__all__ = ["HTTP_RESOURCE", "SHELL_RESOURCE", "SQL_RESOURCE"]

HTTP_RESOURCE = "arn:aws:states:::http:invoke"
SQL_RESOURCE = "stepwise:sql"
SHELL_RESOURCE = "stepwise:shell"
