"""`child_task_group`: the task group Parallel branches and Map iterations run in.

On asyncio with the installed anyio it is the light group (tasks started
without anyio's per-task handle); on trio it is anyio's own. Either way it
must behave as anyio's task group does where `run_children` relies on it:
a child's exception cancels its siblings and leaves the group in an
exception group; a cancellation of the group, or of a scope around it,
reaches every child; a shield inside a child holds; a child's own cancel
scopes (timeouts) work; the group's exit waits for every child.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from engine.states.childtasks import child_task_group, light_spawn_available

BACKENDS = ["asyncio", "trio"]


def test_the_light_group_runs_on_asyncio_with_the_installed_anyio() -> None:
    # Fails when an anyio upgrade removes what the light spawn relies on: the
    # Map would silently pay anyio's handle per iteration again.
    assert light_spawn_available()

    async def kind() -> str:
        return type(child_task_group()).__name__

    assert anyio.run(kind, backend="asyncio") == "_LightGroup"
    assert anyio.run(kind, backend="trio") == "_AnyioGroup"

    async def kind_with_a_task_factory() -> str:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw))
        return await kind()

    # A factory (which may be eager) runs a task's first step before the light
    # spawn could register it: anyio's group then.
    assert anyio.run(kind_with_a_task_factory, backend="asyncio") == "_AnyioGroup"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_childs_exception_cancels_its_siblings_and_leaves_in_an_exception_group(
    backend: str,
) -> None:
    cancelled: list[int] = []

    async def sleeper(index: int) -> None:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.append(index)
            raise

    async def failing() -> None:
        await anyio.sleep(0)
        raise ValueError("boom")

    async def main() -> None:
        async with child_task_group() as group:
            for index in range(5):
                group.spawn(sleeper, index)
            group.spawn(failing)

    with pytest.raises(BaseExceptionGroup) as raised:
        anyio.run(main, backend=backend)
    assert [type(e) for e in raised.value.exceptions] == [ValueError]
    assert sorted(cancelled) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_outer_scopes_cancellation_reaches_every_child_and_a_shield_holds(
    backend: str,
) -> None:
    events: list[str] = []

    async def plain(index: int) -> None:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            events.append(f"cancelled {index}")
            raise

    async def shielded(release: anyio.Event) -> None:
        with anyio.CancelScope(shield=True):
            await release.wait()  # the outer cancel must not end this wait
            events.append("shield done")
        await anyio.sleep(30)  # cancelled here, after the shield

    async def main() -> None:
        release = anyio.Event()
        outer = anyio.CancelScope()

        async def cancel_then_release() -> None:  # outside `outer`: not cancelled with it
            await anyio.sleep(0.01)
            outer.cancel()
            await anyio.sleep(0.01)
            events.append("releasing")
            release.set()

        # A child the cancellation misses would sleep on: fail, not hang.
        with anyio.fail_after(10):
            await run(cancel_then_release, outer, release)

    async def run(helper_fn: Any, outer: anyio.CancelScope, release: anyio.Event) -> None:
        async with anyio.create_task_group() as helper:
            helper.start_soon(helper_fn)
            with outer:
                async with child_task_group() as group:
                    for index in range(3):
                        group.spawn(plain, index)
                    group.spawn(shielded, release)
        assert outer.cancelled_caught

    anyio.run(main, backend=backend)
    assert sorted(events[:3]) == ["cancelled 0", "cancelled 1", "cancelled 2"]
    assert events[3:] == ["releasing", "shield done"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_groups_own_cancel_cancels_children_and_is_swallowed(backend: str) -> None:
    done: list[Any] = []

    async def child(index: int) -> None:
        with anyio.move_on_after(0.001) as timeout:  # a child's own scope still works
            await anyio.sleep(30)
        done.append(("timed out", index, timeout.cancelled_caught))
        await anyio.sleep(30)

    async def main() -> None:
        with anyio.fail_after(20):  # a regression fails here, not at pytest's timeout
            async with child_task_group() as group:
                for index in range(3):
                    group.spawn(child, index)
                await anyio.sleep(0.05)
                group.cancel_scope.cancel()
        done.append("exited")

    anyio.run(main, backend=backend)
    assert sorted(d for d in done if d != "exited") == [("timed out", i, True) for i in range(3)]
    assert done[-1] == "exited"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_groups_exit_waits_for_every_child(backend: str) -> None:
    finished: list[int] = []

    async def child(index: int) -> None:
        await anyio.sleep(0.001 * (5 - index))
        finished.append(index)

    async def main() -> None:
        async with child_task_group() as group:
            for index in range(5):
                group.spawn(child, index)
        assert sorted(finished) == [0, 1, 2, 3, 4]

    anyio.run(main, backend=backend)
