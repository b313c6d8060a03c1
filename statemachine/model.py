"""The typed, immutable model of a state machine.

A definition is validated once (`statemachine.validate`) and then built into
these frozen msgspec Structs (`statemachine.build`): one Struct per state
type, with every path, payload template, intrinsic and JSONata expression
already compiled. The engine walks this model; it never looks at raw JSON
again. Fields follow the ASL names in snake_case.

Dynamic values — a number or timestamp that may be a literal, a JSONPath
`*Path` field, or a JSONata expression — are kept as `Dynamic`, so the engine
resolves them in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec

from statemachine.dataflow import Template
from statemachine.jsonata import JsonataTemplate
from statemachine.paths import Path
from statemachine.retry import Catcher, Retrier

if TYPE_CHECKING:  # loaded with the first Choice or call (statemachine.parts)
    from statemachine.choice import ChoiceRule
    from statemachine.intrinsics import Intrinsic

__all__ = [
    "Batcher",
    "CatcherPlan",
    "ChoiceState",
    "Dynamic",
    "FailState",
    "MapState",
    "ParallelState",
    "PassState",
    "QueryLanguage",
    "Scope",
    "State",
    "StateMachine",
    "SucceedState",
    "TaskState",
    "WaitState",
]

QueryLanguage = Literal["JSONPath", "JSONata"]


class Dynamic(msgspec.Struct, frozen=True):
    """A field that is a literal, a JSONPath `*Path`, an intrinsic, or a JSONata expression.

    `field` is the ASL field name as written (``TimeoutSecondsPath``,
    ``Seconds`` …) so runtime errors can name it the way AWS does.
    """

    field: str
    literal: Any = None
    path: Path | None = None
    intrinsic: Intrinsic | None = None
    expression: JsonataTemplate | None = None


class CatcherPlan(msgspec.Struct, frozen=True):
    """A Catcher's data-flow fields, compiled for its state's query language."""

    result_path: Path | None = None
    result_path_null: bool = False
    assign: Template | JsonataTemplate | None = None
    output: JsonataTemplate | None = None


class _Base(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    query_language: QueryLanguage = "JSONPath"
    comment: str | None = None
    next: str | None = None
    end: bool = False
    # JSONPath: None means the field was given as null (→ {}); absent is "$".
    input_path: Path | None = None
    input_path_null: bool = False
    output_path: Path | None = None
    output_path_null: bool = False
    # Assign is a payload template in JSONPath mode, a JSONata template in JSONata mode.
    assign: Template | JsonataTemplate | None = None
    # JSONata Output.
    output: JsonataTemplate | None = None

    # The state's type as ASL writes it, and the names of its entry and exit
    # events: class attributes, read on every transition (no property call,
    # no string built).
    type: ClassVar[str]
    entered_event: ClassVar[str]
    exited_event: ClassVar[str]

    @property
    def jsonata(self) -> bool:
        return self.query_language == "JSONata"


class _WithResult(_Base, frozen=True, kw_only=True):
    parameters: Template | None = None
    arguments: JsonataTemplate | None = None
    result_selector: Template | None = None
    result_path: Path | None = None
    result_path_null: bool = False
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()
    catch_plans: tuple[CatcherPlan, ...] = ()


class TaskState(_WithResult, frozen=True, kw_only=True):
    resource: str
    timeout: Dynamic | None = None
    heartbeat: Dynamic | None = None
    credentials: Any = None

    type: ClassVar[str] = "Task"
    entered_event: ClassVar[str] = "TaskStateEntered"
    exited_event: ClassVar[str] = "TaskStateExited"


class PassState(_Base, frozen=True, kw_only=True):
    parameters: Template | None = None
    result: Any = None
    has_result: bool = False
    result_path: Path | None = None
    result_path_null: bool = False

    type: ClassVar[str] = "Pass"
    entered_event: ClassVar[str] = "PassStateEntered"
    exited_event: ClassVar[str] = "PassStateExited"


class ChoiceState(_Base, frozen=True, kw_only=True):
    choices: tuple[ChoiceRule, ...] = ()
    # JSONata rules: (condition, next, output, assign) compiled alongside.
    conditions: tuple[JsonataTemplate | None, ...] = ()
    rule_outputs: tuple[JsonataTemplate | None, ...] = ()
    rule_assigns: tuple[Template | JsonataTemplate | None, ...] = ()
    default: str | None = None

    type: ClassVar[str] = "Choice"
    entered_event: ClassVar[str] = "ChoiceStateEntered"
    exited_event: ClassVar[str] = "ChoiceStateExited"


class WaitState(_Base, frozen=True, kw_only=True):
    seconds: Dynamic | None = None
    timestamp: Dynamic | None = None

    type: ClassVar[str] = "Wait"
    entered_event: ClassVar[str] = "WaitStateEntered"
    exited_event: ClassVar[str] = "WaitStateExited"


class SucceedState(_Base, frozen=True, kw_only=True):
    type: ClassVar[str] = "Succeed"
    entered_event: ClassVar[str] = "SucceedStateEntered"
    exited_event: ClassVar[str] = "SucceedStateExited"


class FailState(_Base, frozen=True, kw_only=True):
    error: Dynamic | None = None
    cause: Dynamic | None = None

    type: ClassVar[str] = "Fail"
    entered_event: ClassVar[str] = "FailStateEntered"
    exited_event: ClassVar[str] = "FailStateExited"


class Batcher(msgspec.Struct, frozen=True):
    """A Map's ItemBatcher: items grouped into ``{"BatchInput": …, "Items": […]}`` inputs."""

    max_items: Dynamic | None = None
    max_bytes: Dynamic | None = None
    batch_input: Template | JsonataTemplate | None = None
    has_batch_input: bool = False


class Scope(msgspec.Struct, frozen=True):
    """A `StartAt` + `States` pair: the machine itself, a Parallel branch or a Map processor."""

    start_at: str
    states: dict[str, State]
    comment: str | None = None


class ParallelState(_WithResult, frozen=True, kw_only=True):
    branches: tuple[Scope, ...] = ()

    type: ClassVar[str] = "Parallel"
    entered_event: ClassVar[str] = "ParallelStateEntered"
    exited_event: ClassVar[str] = "ParallelStateExited"


class MapState(_WithResult, frozen=True, kw_only=True):
    processor: Scope
    mode: Literal["INLINE", "DISTRIBUTED"] = "INLINE"
    execution_type: str | None = None
    items_path: Path | None = None
    items: JsonataTemplate | None = None
    item_selector: Template | JsonataTemplate | None = None
    max_concurrency: Dynamic | None = None
    tolerated_failure_percentage: Dynamic | None = None
    tolerated_failure_count: Dynamic | None = None
    label: str | None = None
    item_reader: Any = None
    item_batcher: Batcher | None = None
    result_writer: Any = None

    type: ClassVar[str] = "Map"
    entered_event: ClassVar[str] = "MapStateEntered"
    exited_event: ClassVar[str] = "MapStateExited"


State = (
    TaskState
    | PassState
    | ChoiceState
    | WaitState
    | SucceedState
    | FailState
    | ParallelState
    | MapState
)


class StateMachine(msgspec.Struct, frozen=True):
    """A whole, validated state machine."""

    scope: Scope
    query_language: QueryLanguage = "JSONPath"
    timeout_seconds: int | None = None
    version: str | None = None
    comment: str | None = None

    @property
    def start_at(self) -> str:
        return self.scope.start_at

    @property
    def states(self) -> dict[str, State]:
        return self.scope.states

    def find_state(self, name: str) -> State | None:
        """The state called `name` anywhere in the machine (names are unique machine-wide)."""
        return _find(self.scope, name)


def _find(scope: Scope, name: str) -> State | None:
    if name in scope.states:
        return scope.states[name]
    for state in scope.states.values():
        inner: tuple[Scope, ...] = ()
        if isinstance(state, ParallelState):
            inner = state.branches
        elif isinstance(state, MapState):
            inner = (state.processor,)
        for sub in inner:
            found = _find(sub, name)
            if found is not None:
                return found
    return None
