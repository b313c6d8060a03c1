"""`activities.cancelcheck` answers as anyio's `checkpoint_if_cancelled` does, on asyncio and trio.

A handler must never start for a caller whose cancel scope (or one around
it, up to a shield) was cancelled; every other caller goes on at once,
without yielding to the loop. The asyncio fast path reads anyio's own task
table: the last test fails when an anyio upgrade changes what it reads (the
check would still be right, through anyio's function, but slow again).
"""

from __future__ import annotations

import asyncio

import anyio
import anyio.lowlevel
import pytest

from activities import cancelcheck


async def checkpoint_if_cancelled() -> None:
    """The check as its callers make it."""
    if not cancelcheck.surely_not_cancelled():
        await anyio.lowlevel.checkpoint_if_cancelled()


BACKENDS = ["asyncio", "trio"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_caller_not_cancelled_goes_on_without_yielding(backend: str) -> None:
    async def main() -> list[str]:
        order: list[str] = []

        async def other() -> None:
            order.append("other task")

        async with anyio.create_task_group() as group:
            group.start_soon(other)
            with anyio.CancelScope(), anyio.CancelScope():
                await checkpoint_if_cancelled()
                order.append("after the check")
        return order

    assert anyio.run(main, backend=backend) == ["after the check", "other task"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("depth", [0, 1, 3])
def test_a_cancelled_scope_around_the_caller_cancels_it(backend: str, depth: int) -> None:
    async def main() -> tuple[bool, list[str]]:
        reached: list[str] = []
        with anyio.CancelScope() as outer:
            outer.cancel()
            scopes = [anyio.CancelScope() for _ in range(depth)]
            for scope in scopes:
                scope.__enter__()
            try:
                await checkpoint_if_cancelled()
                reached.append("after the check")
            finally:
                for scope in reversed(scopes):
                    scope.__exit__(None, None, None)
        return outer.cancelled_caught, reached

    assert anyio.run(main, backend=backend) == (True, [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_shield_keeps_an_outer_cancel_from_the_caller(backend: str) -> None:
    async def main() -> list[str]:
        reached: list[str] = []
        with anyio.CancelScope() as outer:
            outer.cancel()
            with anyio.CancelScope(shield=True), anyio.CancelScope():
                await checkpoint_if_cancelled()
                reached.append("after the check")
        return reached

    assert anyio.run(main, backend=backend) == ["after the check"]


def test_a_plain_asyncio_task_goes_on() -> None:
    async def main() -> str:
        async def plain() -> str:  # no anyio task state: anyio's own answer
            await checkpoint_if_cancelled()
            return "went on"

        return await asyncio.create_task(plain())

    assert asyncio.run(main()) == "went on"


def test_the_asyncio_fast_path_matches_this_anyio() -> None:
    async def main() -> bool:
        check = cancelcheck._asyncio_check() or cancelcheck._never_sure
        return check is not cancelcheck._never_sure and check()

    assert anyio.run(main)


def test_the_fast_path_answers_a_caller_behind_a_shield_itself() -> None:
    async def main() -> bool:
        check = cancelcheck._asyncio_check() or cancelcheck._never_sure
        with anyio.CancelScope() as outer:
            outer.cancel()
            with anyio.CancelScope(shield=True), anyio.CancelScope():
                return check()
        return False

    assert anyio.run(main)
