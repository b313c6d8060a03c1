"""The Engine's TestState calls: one state run as AWS's TestState runs it, on a throwaway store.

`TestStateApi` is a mixin of `engine.Engine` (which supplies its handler
registry and the engine a test runs on, `_test_engine`). The request is
built here from Python values; `engine.teststate` runs it (loaded on first
use: a plain run never loads it) in a SQLite file of its own, so a test
needs no database and leaves nothing in the engine's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from activities.registry import Registry

if TYPE_CHECKING:  # loaded on first use
    from engine.teststate import EngineForTests, TestStateRequest

__all__ = ["TestStateApi"]

_NO_MOCK: Any = object()


class TestStateApi:
    """Mixin for `Engine`: AWS's TestState (needs `.registry` and `_test_engine`)."""

    __test__ = False  # not a pytest test class, despite the name

    registry: Registry

    def _test_engine(
        self, url: str, registry: Registry
    ) -> AbstractAsyncContextManager[EngineForTests]:
        """An engine on `url` with `registry` and no worker of its own (the Engine's class)."""
        raise NotImplementedError

    async def test_state(
        self,
        definition: str | Mapping[str, Any],
        input: Any = None,
        *,
        state_name: str | None = None,
        inspection_level: str = "INFO",
        variables: Mapping[str, Any] | None = None,
        mock_result: Any = _NO_MOCK,
        mock_error: str | None = None,
        mock_cause: str | None = None,
    ) -> dict[str, Any]:
        """Run one state (alone, or `state_name` of a machine) as AWS's TestState does.

        Returns TestState's answer: ``status`` (SUCCEEDED, FAILED, RETRIABLE,
        CAUGHT_ERROR), ``output``, ``error``, ``cause``, ``nextState`` and, at
        DEBUG or TRACE, ``inspectionData``. A Task answers `mock_result`, or
        fails with `mock_error`/`mock_cause`, instead of calling its
        Resource; otherwise this engine's handlers run it. Needs no
        database: it runs in a throwaway SQLite file. Raises
        InvalidTestState, InvalidExecutionInput and TestStateValidation.
        """
        from engine.teststate import TestStateRequest

        text = definition if isinstance(definition, str) else msgspec.json.encode(definition)
        request = TestStateRequest(
            definition=text if isinstance(text, str) else text.decode(),
            input=msgspec.json.encode({} if input is None else input).decode(),
            state_name=state_name,
            inspection_level=inspection_level,
            variables=None if variables is None else msgspec.json.encode(variables).decode(),
            mock_result=None
            if mock_result is _NO_MOCK
            else msgspec.json.encode(mock_result).decode(),
            mock_error=mock_error,
            mock_cause=mock_cause,
        )
        return await self.test_state_request(request)

    async def test_state_request(
        self, request: TestStateRequest, *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """`test_state` for a request as TestState's API spells it (JSON texts)."""
        from engine.teststate import MOCK_RESOURCE, mock_handler, run_test_state

        handlers = Registry().merged(self.registry)
        if request.mocked:
            handlers.register(MOCK_RESOURCE, mock_handler(request))
        with tempfile.TemporaryDirectory(prefix="stepwise-teststate-") as folder:
            url = f"sqlite:///{Path(folder) / 'teststate.db'}"
            async with self._test_engine(url, handlers) as engine:
                return await run_test_state(engine, request, timeout=timeout)
