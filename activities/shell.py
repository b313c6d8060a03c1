"""The shell built-in: run a command from an argument list, never through a shell.

Off unless the operator enables it (``registry.enable("shell")``), and then
only for the programs the operator allows (`Registry.shell_commands`; None
allows any). The input is ``{"Command": [program, arg, …], "Stdin"?,
"Cwd"?, "Env"?}``; the result is ``{"ExitCode", "Stdout", "Stderr"}``. A
non-zero exit fails the Task with ``Shell.ExitCode.<n>``. Input is passed as
arguments, so nothing in it is ever interpreted by a shell.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from typing import Any

from activities.builtins import SHELL_RESOURCE
from activities.registry import ActivityContext, ActivityError

__all__ = ["SHELL_RESOURCE", "check_command", "shell_run"]


def check_command(input: Any, allowed: set[str] | None) -> list[str]:
    """The validated argument list; raises ActivityError for a bad shape or a disallowed program."""
    command = input.get("Command") if isinstance(input, dict) else None
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(part, str) for part in command)
    ):
        raise ActivityError("States.Runtime", "Command must be a non-empty list of strings.")
    if allowed is not None and command[0] not in allowed:
        raise ActivityError(
            "States.Runtime", f"The program '{command[0]}' is not allowed by the operator."
        )
    return command


def shell_run(input: Any, context: ActivityContext, *, allowed: set[str] | None = None) -> Any:
    """Run the command; return its exit code and output. Raises ActivityError on failure."""
    command = check_command(input, allowed)
    env = None
    if isinstance(input.get("Env"), dict):
        env = {**os.environ, **{str(k): str(v) for k, v in input["Env"].items()}}
    timeout = None
    if context.deadline is not None:
        timeout = max(0.1, (context.deadline - datetime.now(UTC)).total_seconds())
    stdin = input.get("Stdin")
    try:
        completed = subprocess.run(
            command,
            input=stdin if isinstance(stdin, str) else None,
            capture_output=True,
            text=True,
            cwd=input.get("Cwd") if isinstance(input.get("Cwd"), str) else None,
            env=env,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ActivityError("Shell.NotFound", f"No such program: '{command[0]}'") from None
    except subprocess.TimeoutExpired:
        raise ActivityError("States.Timeout", None) from None
    result = {
        "ExitCode": completed.returncode,
        "Stdout": completed.stdout,
        "Stderr": completed.stderr,
    }
    if completed.returncode != 0:
        raise ActivityError(
            f"Shell.ExitCode.{completed.returncode}", completed.stderr.strip() or None
        )
    return result
