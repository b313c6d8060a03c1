"""The task group Parallel branches and Map iterations run in: anyio's, lighter per task on asyncio.

anyio (4.14 and later) wraps every task it starts in a `TaskHandle` with a
cancel scope and an event of its own, entered and set around the task's
coroutine; a Map of 100 iterations pays that 100 times (about two thirds
of what starting a task costs, `benchmarks/PROFILE_STORE.md`, s15c), and
`run_children` never uses the handles. On asyncio `child_task_group`
returns anyio's own asyncio task group whose `spawn` starts a task the way
anyio did before handles: the task is registered under the group's cancel
scope, so a cancellation of the group or of any scope around it reaches
it, shields inside it hold, and its exception cancels the group and is
raised by the group's exit in the same exception group — all of that is
anyio's own code (`__aenter__`, `__aexit__`, `CancelScope`); only the
start of a task is ours (a loop with a task factory, which may be eager,
gets anyio's group). It leans on internals of anyio's asyncio backend
(`_task_states`, `TaskState`; the task group's `_tasks`, `_entered`,
`_exceptions`, `_on_completed_fut`; the cancel scope's `_tasks`,
`_active`, `_host_task`, `_effectively_cancelled`), and is used only on
the anyio versions it was checked against (4.14 up to 5) where all of them
are present; elsewhere (an older or newer anyio) or on trio the group is
anyio's, unchanged, and `spawn` is its `start_soon`. `tests/engine/test_child_tasks.py` pins which
one runs on the installed anyio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from importlib.metadata import version as _anyio_version
from typing import Any, Protocol

import anyio

__all__ = ["ChildTaskGroup", "child_task_group", "light_spawn_available"]


class ChildTaskGroup(Protocol):
    """What `run_children` uses of a task group."""

    @property
    def cancel_scope(self) -> anyio.CancelScope: ...

    def spawn(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Start `func(*args)` as a task of the group."""
        ...

    async def __aenter__(self) -> ChildTaskGroup: ...

    async def __aexit__(self, *exc: Any) -> bool | None: ...


class _AnyioGroup:
    """anyio's task group as it is (trio, or an anyio without the internals used below)."""

    __slots__ = ("_group",)

    def __init__(self) -> None:
        self._group = anyio.create_task_group()

    @property
    def cancel_scope(self) -> anyio.CancelScope:
        return self._group.cancel_scope  # trio's is made on entering: read it when asked

    def spawn(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        self._group.start_soon(func, *args)

    async def __aenter__(self) -> _AnyioGroup:
        await self._group.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        return await self._group.__aexit__(*exc)


try:
    from anyio._backends._asyncio import (
        CancelScope as _AsyncioScope,
    )
    from anyio._backends._asyncio import (
        TaskGroup as _AsyncioTaskGroup,
    )
    from anyio._backends._asyncio import (
        TaskState as _TaskState,
    )
    from anyio._backends._asyncio import (
        _task_states,
    )

    # Before 4.14 the group's flag was `_active` (and there were no handles
    # to save); from 5 on its internals may change under the same names.
    _version = tuple(int(part) for part in _anyio_version("anyio").split(".")[:2])
    if not (4, 14) <= _version < (5, 0):
        raise ImportError("an anyio this light group was not checked against")
    _probe = _AsyncioTaskGroup()
    _REQUIRED = ("_tasks", "_entered", "_exceptions", "_on_completed_fut", "cancel_scope")
    _SCOPE = ("_tasks", "_active", "_host_task", "_effectively_cancelled")
    _scope = _AsyncioScope()
    if not all(hasattr(_probe, name) for name in _REQUIRED) or not all(
        hasattr(_scope, name) for name in _SCOPE
    ):
        raise ImportError("anyio's asyncio task group has changed")
    del _probe, _scope
except (ImportError, ValueError):  # pragma: no cover - another anyio: its group as it is
    _LightGroup: type | None = None
else:

    class _LightGroup(_AsyncioTaskGroup):  # type: ignore[no-redef]
        """anyio's asyncio task group whose `spawn` starts a task without a TaskHandle."""

        def spawn(self, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
            scope = self.cancel_scope
            if not self._entered or not scope._active:
                raise RuntimeError("This task group is not active; no new tasks can be started.")
            coroutine = func(*args)
            try:
                task = asyncio.get_running_loop().create_task(
                    coroutine, name=getattr(func, "__qualname__", None)
                )
            except BaseException:
                coroutine.close()
                raise
            # As anyio's `_spawn` registers a task (before handles): under the
            # group's scope, so the scope's cancellation is delivered to it.
            _task_states[task] = _TaskState(id(scope._host_task), scope)
            scope._tasks.add(task)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

        def _task_done(self, task: asyncio.Task[None]) -> None:
            state = _task_states.pop(task)
            assert state.cancel_scope is not None
            state.cancel_scope._tasks.discard(task)
            self._tasks.discard(task)
            completed = self._on_completed_fut
            if completed is not None and not self._tasks and not completed.done():
                completed.set_result(None)
            # As anyio's: an exception is the group's; it, or a cancellation, also
            # cancels the group's other tasks.
            error = asyncio.CancelledError() if task.cancelled() else task.exception()
            if error is None:
                return
            if not isinstance(error, asyncio.CancelledError):
                self._exceptions.append(error)
            if not self.cancel_scope._effectively_cancelled:
                self.cancel_scope.cancel()


def light_spawn_available() -> bool:
    """Whether this anyio's asyncio backend has what the light `spawn` relies on."""
    return _LightGroup is not None


def child_task_group() -> ChildTaskGroup:
    """A task group for children: the light one on asyncio (when available), else anyio's."""
    if _LightGroup is not None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio)
            return _AnyioGroup()
        if loop.get_task_factory() is not None:
            # An eager factory would run a task's first step before `spawn`
            # registers it (anyio builds such tasks itself): anyio's group.
            return _AnyioGroup()
        group: ChildTaskGroup = _LightGroup()
        return group
    return _AnyioGroup()
