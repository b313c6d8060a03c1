"""The ids a start draws: execution names (UUID4 text) and trace ids, from pooled `os.urandom`.

`Lifecycle.start` takes both from one pool of random bytes fetched 4 KiB at
a time (`engine.lifecycle._RandomBytes`), not two `os.urandom` calls a
start. The name must be exactly what `str(uuid.uuid4())` would print for
the same bytes; no two takes may share bytes; a forked child must not draw
what its parent will.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.lifecycle import _RandomBytes, _uuid4_text

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@settings(max_examples=500)
@given(st.binary(min_size=16, max_size=16))
def test_a_drawn_name_is_the_uuid4_text_of_its_bytes(raw: bytes) -> None:
    text = _uuid4_text(raw)
    assert text == str(uuid.UUID(bytes=raw, version=4))
    assert UUID4.match(text)


def test_takes_never_share_bytes_across_refills() -> None:
    pool = _RandomBytes()
    taken = [pool.take(32) for _ in range(3 * 4096 // 32 + 5)]  # over three refills
    assert all(len(piece) == 32 for piece in taken)
    assert len(set(taken)) == len(taken)
    # A take that does not fit what is left of the pool starts a new one, whole.
    odd = _RandomBytes()
    assert [len(odd.take(3000)), len(odd.take(3000))] == [3000, 3000]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_other_bytes_than_its_parent() -> None:
    from engine import lifecycle

    lifecycle._RANDOM.take(16)  # the pool holds bytes the parent has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it draws next, to the parent
        try:
            os.write(write, lifecycle._RANDOM.take(32))
        finally:
            os._exit(0)
    os.close(write)
    child = b""
    while len(child) < 32:
        chunk = os.read(read, 32 - len(child))
        if not chunk:
            break
        child += chunk
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert lifecycle._RANDOM.take(32) != child
