"""A sync handler never starts for a caller that was cancelled before it asked.

A stop, the deadline or a lost lease can arrive while the Task's checkpoint
commits under a shield; the cancellation then lands at the next await. The
handler call is that await: the effect must not start in a thread for an
activation that is already cancelled (with a lost lease, another worker may
be running it by now).
"""

from __future__ import annotations

import threading

import anyio

from activities.handler_threads import run_in_thread


def test_a_cancelled_caller_never_starts_its_handler() -> None:
    ran: list[str] = []

    async def main() -> bool:
        await run_in_thread(lambda: None)  # an idle thread, ready to take a call at once
        with anyio.CancelScope() as scope:
            committing = threading.Event()

            async def stop_while_committing() -> None:
                await anyio.to_thread.run_sync(committing.wait)
                scope.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(stop_while_committing)
                with anyio.CancelScope(shield=True):  # the checkpoint's store call
                    committing.set()
                    while not scope.cancel_called:
                        await anyio.sleep(0.01)
                await run_in_thread(lambda: ran.append("effect"))  # the Task's effect
        await anyio.sleep(0.2)  # a thread that had taken the call would have run it by now
        return scope.cancelled_caught

    assert anyio.run(main)
    assert ran == []
