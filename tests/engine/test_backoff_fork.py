"""Backoff's jitter stays apart across forked processes.

`Backoff` draws from one generator shared by the process. A pre-forking
server (gunicorn --preload and the like) imports the engine, then forks
its workers: each must draw its own jitter, or after an outage every
worker retries the database at the same instants.
"""

from __future__ import annotations

import os

import pytest

from engine.store.boundary import Backoff


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_forked_workers_draw_different_retry_delays() -> None:
    Backoff().next_delay()  # the parent has used the generator before forking
    delays = []
    for _ in range(4):
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            os.close(read)
            os.write(write, repr([Backoff().next_delay() for _ in range(3)]).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            delays.append(pipe.read())
        os.waitpid(child, 0)
    assert len(set(delays)) == len(delays), delays
