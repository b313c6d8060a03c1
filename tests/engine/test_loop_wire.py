"""The loop's commit call through libpq, its socket registered once (`engine/store/loopwire.py`).

Real PostgreSQL. What users rely on: the call answers what psycopg's
`execute` answers, a failed statement raises psycopg's own error class and
leaves the session usable, a lost connection ends a call in flight with
OperationalError (and, lost while idle, is noticed without the loop
spinning on the dead socket), a caller cancelled mid-call still gets the
call carried to its end, psycopg may use the connection in between; and an
Engine's step commits no longer register the socket with the loop per
commit (the loop's work per step, issue 19).
"""

from __future__ import annotations

import asyncio
import json
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import psycopg
import pytest

from engine import Engine
from engine.store.asynccommit import _PREPARED, _prepared, _text
from engine.store.loopwire import LoopWire
from tests.engine.liveness import machine
from tests.engine.test_loop_commit import STEPS, _plain, _registry, _run_all
from tests.engine.test_loop_sent import _blocked_then_released

pytestmark = pytest.mark.timeout(120)  # a hang guard only

_CONCAT = (b"concat", b"SELECT $1::text || $2::text")
_INSERT = (b"insert", b"INSERT INTO marks VALUES ($1::int)")
_COUNT = (b"count", b"SELECT count(*) FROM marks WHERE n = $1")


def _with_wire(
    url: str, body: Callable[[psycopg.AsyncConnection[Any], LoopWire], Awaitable[None]]
) -> None:
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS marks (n int)")

    async def run() -> None:
        connection = await psycopg.AsyncConnection.connect(_plain(url), autocommit=True)
        try:
            await body(connection, LoopWire(connection))
        finally:
            await connection.close()

    asyncio.run(run())


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_calls_answer_as_psycopg_does_with_psycopg_in_between_and_one_registration(
    postgres_url: str,
) -> None:
    async def body(connection: psycopg.AsyncConnection[Any], wire: LoopWire) -> None:
        loop = asyncio.get_running_loop()
        registered: list[int] = []
        add_reader = loop.add_reader

        def counted(fd: int, callback: Callable[..., Any], *args: Any) -> None:
            registered.append(fd)
            add_reader(fd, callback, *args)

        loop.add_reader = counted  # type: ignore[method-assign,assignment]
        for n in range(20):
            result = await wire.call(*_CONCAT, [b"a", str(n).encode()])
            assert result.get_value(0, 0) == f"a{n}".encode()
        assert registered.count(connection.pgconn.socket) == 1  # once, not once a call
        wire.detach()
        cursor = await connection.execute("SELECT %s::text || %s::text", ("b", "1"))
        assert await cursor.fetchone() == ("b1",)
        result = await wire.call(*_CONCAT, [b"c", b"2"])  # attached again
        assert result.get_value(0, 0) == b"c2"

    _with_wire(postgres_url, body)


def test_a_failed_statement_raises_psycopgs_error_and_the_session_serves_the_next(
    postgres_url: str,
) -> None:
    async def body(connection: psycopg.AsyncConnection[Any], wire: LoopWire) -> None:
        with pytest.raises(psycopg.errors.DivisionByZero):
            await wire.call(b"divide", b"SELECT 1 / $1::int", [b"0"])
        assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        result = await wire.call(b"divide", b"SELECT 1 / $1::int", [b"1"])
        assert result.get_value(0, 0) == b"1"
        with pytest.raises(psycopg.errors.UndefinedFunction):  # at its prepare
            await wire.call(b"missing", b"SELECT no_such_function($1)", [b"0"])
        assert (await wire.call(*_CONCAT, [b"d", b"3"])).get_value(0, 0) == b"d3"

    _with_wire(postgres_url, body)


def test_the_backend_killed_mid_call_ends_the_call_with_operational_error(
    postgres_url: str,
) -> None:
    async def body(connection: psycopg.AsyncConnection[Any], wire: LoopWire) -> None:
        pid, fd = connection.info.backend_pid, connection.pgconn.socket
        call = asyncio.ensure_future(wire.call(b"sleep", b"SELECT pg_sleep($1)", [b"60"]))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(_terminate, postgres_url, pid)
        with pytest.raises(psycopg.OperationalError):
            await call
        assert connection.broken
        # Not left registered: nothing to remove.
        assert not asyncio.get_running_loop().remove_reader(fd)

    _with_wire(postgres_url, body)


def test_the_backend_killed_while_idle_is_noticed_without_spinning(postgres_url: str) -> None:
    async def body(connection: psycopg.AsyncConnection[Any], wire: LoopWire) -> None:
        loop = asyncio.get_running_loop()
        await wire.call(*_CONCAT, [b"e", b"4"])  # attached, now idle
        fd = connection.pgconn.socket
        reads = 0
        selector_select = loop._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            nonlocal reads
            ready: list[tuple[selectors.SelectorKey, int]] = selector_select(timeout)
            reads += sum(1 for key, _ in ready if key.fd == fd)
            return ready

        loop._selector.select = select  # type: ignore[attr-defined]
        await asyncio.to_thread(_terminate, postgres_url, connection.info.backend_pid)
        await asyncio.sleep(0.5)  # a spinning callback would be woken thousands of times
        assert 1 <= reads <= 3
        assert connection.broken
        assert not loop.remove_reader(fd)

    _with_wire(postgres_url, body)


@pytest.mark.parametrize("how", ["asyncio", "anyio"])
def test_a_caller_cancelled_mid_call_gets_the_call_carried_to_its_end(
    postgres_url: str, how: str
) -> None:
    async def body(connection: psycopg.AsyncConnection[Any], wire: LoopWire) -> None:
        pid = connection.info.backend_pid
        scope = anyio.CancelScope()
        tasks: list[asyncio.Task[Any]] = []

        async def insert() -> None:
            with scope:
                await wire.call(*_INSERT, [b"7"])

        async def cancel() -> None:
            if how == "asyncio":
                tasks[0].cancel()
            else:
                scope.cancel()
            await asyncio.sleep(0.05)
            assert not tasks[0].done()  # still waiting for the insert's answer (the lock is held)

        await _blocked_then_released(
            postgres_url, lambda: tasks.append(asyncio.ensure_future(insert())), cancel
        )
        if how == "asyncio":
            with pytest.raises(asyncio.CancelledError):
                await tasks[0]
        else:
            await tasks[0]
            assert scope.cancelled_caught
        # Written, and the same session serves the next call.
        result = await wire.call(*_COUNT, [b"7"])
        assert result.get_value(0, 0) == b"1"
        assert connection.info.backend_pid == pid

    _with_wire(postgres_url, body)


def test_an_engines_step_commits_register_the_socket_far_fewer_times_than_they_commit(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[int] = []
    add_reader = asyncio.selector_events.BaseSelectorEventLoop.add_reader

    def counted(self: Any, fd: int, callback: Callable[..., Any], *args: Any) -> None:
        registered.append(fd)
        add_reader(self, fd, callback, *args)

    monkeypatch.setattr(asyncio.selector_events.BaseSelectorEventLoop, "add_reader", counted)
    with Engine(postgres_url, registry=_registry()) as engine:
        engine.create_state_machine_sync("chain", machine(STEPS))
        for n in range(5):  # one at a time: a commit a step
            (record,) = _run_all(engine, 1, prefix=f"e{n}-")
            assert record.status == "SUCCEEDED"

        on_loop = engine.runtime.committer.on_loop
        assert on_loop is not None
        fd = on_loop._connection.pgconn.socket  # type: ignore[union-attr]
        commits = on_loop.commits
    assert commits >= 5 * STEPS
    # psycopg's execute registers it at every wait: at least once a commit.
    assert registered.count(fd) < commits / 2


def test_non_ascii_history_is_stored_as_sent_under_a_latin1_client_encoding(
    postgres_url: str,
) -> None:
    """The wire sends text in the connection's client encoding, as psycopg does.

    Sent as UTF-8 to a LATIN1 session, "é" was stored as "Ã©": a history
    silently different from what ran, read back so by a replay.
    """
    registry = _registry()
    registry.register("accent", lambda value: {"s": value["s"] + "é"})
    accents = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Task", "Resource": "accent", "Next": "B"},
            "B": {"Type": "Task", "Resource": "accent", "End": True},
        },
    }
    with Engine(postgres_url + "?client_encoding=latin1", registry=registry) as engine:
        engine.create_state_machine_sync("accents", accents)
        record = engine.wait_sync(engine.start_sync("accents", {"s": "ü"}), timeout=60)
        on_loop = engine.runtime.committer.on_loop
        assert on_loop is not None and on_loop.commits >= 2  # the steps went by the wire
        assert on_loop._connection is not None
        assert on_loop._connection.info.encoding == "iso8859-1"
        events = engine.store.history(record.execution_id)
    assert record.status == "SUCCEEDED"
    entered_b = next(e for e in events if e.type == "TaskStateEntered" and e.details["name"] == "B")
    assert json.loads(entered_b.details["input"]) == {"s": "üé"}
    assert not any("Ã" in str(event) for event in events)


def test_a_text_parameter_with_nul_is_refused_not_cut_short() -> None:
    with pytest.raises(psycopg.DataError):
        _text("ab\0cd", "utf-8")
    assert _text("café", "iso8859-1") == "café".encode("latin1")


def test_prepared_names_follow_the_statement_not_the_order_of_first_use() -> None:
    first, _ = _prepared("SELECT %s::text")
    other, _ = _prepared("SELECT %s::int")
    assert first != other
    _PREPARED.clear()  # another loop of the process filling the cache in another order
    assert _prepared("SELECT %s::int")[0] == other
    assert _prepared("SELECT %s::text")[0] == first
