"""An already-cancelled caller never starts its store call —
deterministically, the thread free to take the call before the cancellation lands."""

from __future__ import annotations

import asyncio
import time

import anyio

from engine.storethreads import StoreThreads


def test_a_cancelled_caller_never_starts_its_call_even_with_a_hot_thread() -> None:
    threads = StoreThreads(1)
    ran: list[int] = []

    async def main() -> None:
        await threads.call(lambda: None)  # a thread up and idle (hot)
        with anyio.CancelScope() as outer:
            # The loop is held up before anyio's retry delivers the
            # cancellation: a call handed over runs meanwhile.
            asyncio.get_running_loop().call_soon(time.sleep, 0.3)
            outer.cancel()
            await threads.call(lambda: ran.append(1))

    try:
        anyio.run(main)
    finally:
        threads.close()
    assert ran == []
