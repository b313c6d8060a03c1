"""A process-level hard limit for JSONata evaluation.

`statemachine.jsonata` bounds evaluation cooperatively (a deadline and depth
checked on every evaluator step, guards on allocating built-ins). One thing
escapes that: a regular-expression literal whose backtracking runs inside C
code, where no Python-level check runs. `Sandbox` owns a worker process that
evaluates templates; if an evaluation overruns its deadline the worker is
killed (SIGKILL) and replaced, so the engine's process stays healthy.

Nondeterministic functions ($uuid, $random, $now, $millis) evaluated in the
worker ask the parent over the pipe, so every value still comes from the
caller's `Nondeterminism` (and is journaled by it).

`Sandbox.evaluate` runs in-process whenever the template holds no regex
literal (microseconds) and in the worker otherwise (about a millisecond of
pipe round trip, plus a worker restart after a kill). The engine also sends
here, from a thread, every evaluation that outran its short budget on the
event loop (`engine.states.common.jsonata`). The worker's address space is
capped (`MEMORY_LIMIT_BYTES`, RLIMIT_AS): an evaluation that would grow
past it fails with States.QueryEvaluationError instead of taking the
engine's memory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from statemachine.errors import StatesError
from statemachine.jsonata import (
    Expression,
    JsonataTemplate,
    Limits,
    QueryEvaluationError,
    compile_jsonata_template,
    evaluate_template,
)
from statemachine.nondeterminism import Nondeterminism

if TYPE_CHECKING:
    # multiprocessing loads with the first worker (or in the worker itself), not at startup.
    from multiprocessing.connection import Connection

__all__ = ["MEMORY_LIMIT_BYTES", "Sandbox"]

# The worker process's address-space cap (RLIMIT_AS); the interpreter itself
# takes about a tenth of it.
MEMORY_LIMIT_BYTES = 1 << 30

# Time the worker may need beyond the cooperative deadline before it is
# presumed stuck in C code: pipe latency and result serialisation.
_GRACE_SECONDS = 0.25

# Time a new worker may take to start (an interpreter, our modules, the
# JSONata library; ~0.3 s on an idle machine) before it is presumed broken.
# Start-up is not evaluation: an expression's deadline starts once the
# worker has said it is ready, so a loaded machine's slow start never turns
# into a spurious D1012. Bounded well below a lease (30 s), since a
# nondeterministic template waits for it on the event loop.
_BOOT_SECONDS = 10.0


class Sandbox:
    """Evaluates JSONata templates in a killable worker process.

    Thread-safe; evaluations through one Sandbox run one at a time. Call
    `close()` (or use it as a context manager) to stop the worker.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: Any = None
        self._connection: Connection | None = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker process, if one is running."""
        with self._lock:
            self._stop()

    def evaluate(
        self,
        template: JsonataTemplate,
        *,
        field: str,
        states: Mapping[str, Any],
        variables: Mapping[str, Any],
        nondeterminism: Nondeterminism,
        limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
    ) -> Any:
        """Evaluate `template`, in the worker only when it needs the hard limit.

        Same promise and errors as `statemachine.jsonata.evaluate_template`.
        """
        if not template.uses_regex:
            return evaluate_template(
                template,
                field=field,
                states=states,
                variables=variables,
                nondeterminism=nondeterminism,
                limits=limits,
            )
        return self.evaluate_isolated(
            template,
            field=field,
            states=states,
            variables=variables,
            nondeterminism=nondeterminism,
            limits=limits,
        )

    def evaluate_isolated(
        self,
        template: JsonataTemplate,
        *,
        field: str,
        states: Mapping[str, Any],
        variables: Mapping[str, Any],
        nondeterminism: Nondeterminism,
        limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
    ) -> Any:
        """Evaluate `template` in the worker process, killing it at the deadline.

        Raises `QueryEvaluationError` (D1012) when the worker overruns
        `limits.timeout_seconds`, and whatever `evaluate_template` raises.
        """
        request = (
            "evaluate",
            _source(template.value),
            field,
            dict(states),
            dict(variables),
            limits,
        )
        with self._lock:
            connection = self._ensure_worker()
            deadline = time.monotonic() + limits.timeout_seconds + _GRACE_SECONDS
            connection.send(request)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not connection.poll(remaining):
                    self._stop()
                    raise QueryEvaluationError(
                        f"The JSONata expression '{_first_text(template)}' specified for the "
                        f"field '{field}' threw an error during evaluation. "
                        "D1012: Expression evaluation timeout: Check for infinite loop",
                        location=field,
                    )
                try:
                    message = connection.recv()
                except (EOFError, OSError):  # the worker died (out of memory, killed)
                    self._stop()
                    raise QueryEvaluationError(
                        f"The JSONata expression '{_first_text(template)}' specified for the "
                        f"field '{field}' threw an error during evaluation. "
                        "Evaluation limit exceeded: the evaluation's process ended",
                        location=field,
                    ) from None
                kind = message[0]
                if kind == "ask":
                    connection.send(_answer(nondeterminism, message[1]))
                elif kind == "ok":
                    return message[1]
                elif kind == "query_error":
                    raise QueryEvaluationError(message[1], location=message[2])
                else:
                    raise StatesError(message[1], message[2])

    def _ensure_worker(self) -> Connection:
        if self._process is None or self._process.poll() is not None:
            # A plain subprocess, not multiprocessing's spawn: the child must
            # never re-import the embedding program's main module.
            parent, child = socket.socketpair()
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
            # The last argument asks the worker to say when it can evaluate.
            argv = [sys.executable, "-c", _BOOT, str(child.fileno()), str(MEMORY_LIMIT_BYTES)]
            process = subprocess.Popen(
                [*argv, "ready"],
                pass_fds=[child.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
            )
            child.close()
            from multiprocessing.connection import Connection

            self._process, self._connection = process, Connection(parent.detach())
            self._await_ready(self._connection)
        assert self._connection is not None
        return self._connection

    def _await_ready(self, connection: Connection) -> None:
        """Wait for a new worker's "ready"; stop it and raise States.Runtime if none comes."""
        try:
            if connection.poll(_BOOT_SECONDS) and connection.recv() == ("ready",):
                return
            why = f"did not start within {_BOOT_SECONDS:.0f} s"
        except (EOFError, OSError):
            why = "ended while starting"
        self._stop()
        raise StatesError("States.Runtime", f"The JSONata sandbox's worker process {why}")

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _answer(nondeterminism: Nondeterminism, method: str) -> Any:
    if method == "uuid":
        return nondeterminism.uuid()
    if method == "random":
        return nondeterminism.random()
    return nondeterminism.now()


def _source(value: Any) -> Any:
    if isinstance(value, Expression):
        return value.source
    if isinstance(value, dict):
        return {key: _source(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_source(item) for item in value]
    return value


def _first_text(template: JsonataTemplate) -> str:
    return template.expressions[0].text if template.expressions else ""


class _AskParent:
    """The worker's `Nondeterminism`: every value comes from the parent."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def _ask(self, method: str) -> Any:
        self._connection.send(("ask", method))
        return self._connection.recv()

    def uuid(self) -> str:
        value: str = self._ask("uuid")
        return value

    def random(self) -> float:
        value: float = self._ask("random")
        return value

    def now(self) -> datetime:
        value: datetime = self._ask("now")
        return value


_BOOT = (
    "import sys; from engine.sandbox import serve_fd; "
    "serve_fd(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None, "
    "announce=sys.argv[3:4] == ['ready'])"
)


def serve_fd(fd: int, memory_limit: int | None = None, *, announce: bool = False) -> None:
    """The sandbox worker's entry point: serve evaluations on the socket `fd`.

    `memory_limit` caps the process's address space (bytes), set before any
    evaluation runs. With `announce` (the parent asked for it) the worker
    sends "ready" once it can evaluate; a parent of an older version, which
    does not ask, never receives a message it does not expect.
    """
    if memory_limit is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    from multiprocessing.connection import Connection

    _worker(Connection(fd), announce=announce)


def _worker(connection: Connection, *, announce: bool) -> None:
    compiled: dict[str, JsonataTemplate] = {}
    nondeterminism = _AskParent(connection)
    # Load the JSONata library before saying ready: its import is start-up,
    # not part of the first expression's time.
    compile_jsonata_template("{% 1 %}")
    if announce:
        connection.send(("ready",))
    while True:
        try:
            _, source, field, states, variables, limits = connection.recv()
        except EOFError:
            return
        try:
            key = repr(source)
            template = compiled.get(key)
            if template is None:
                template = compile_jsonata_template(source)
                if len(compiled) < 256:
                    compiled[key] = template
            result = evaluate_template(
                template,
                field=field,
                states=states,
                variables=variables,
                nondeterminism=nondeterminism,
                limits=limits,
            )
            connection.send(("ok", result))
        except QueryEvaluationError as error:
            connection.send(("query_error", error.cause, error.location))
        except StatesError as error:
            connection.send(("states_error", error.error, error.cause))
        except Exception as error:  # any other failure must still answer the parent
            connection.send(("states_error", "States.Runtime", f"{type(error).__name__}: {error}"))
