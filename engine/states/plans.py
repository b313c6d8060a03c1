"""Per-state plans: what a Pass, Choice or Task does on each visit, worked out once.

A state's model says what it does; its plan says which data-flow steps are
no-ops for it (InputPath and OutputPath ``$``, no ResultPath, no Assign),
whether a Choice's paths read the context object or the variables (when
not, neither is built for a visit; a payload template knows it itself,
`Template.reads_context`), and a Choice's rules as compiled tests
(`statemachine.choice.compile_rule_test`). A plan is made the first time its
state is visited in the process and kept by the state object's identity, so
every execution of a loaded definition (the runner keeps its machines)
reuses it, and a state of another definition, even one equal to it, gets
its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from statemachine.dataflow import Template
from statemachine.model import ChoiceState, PassState, State, TaskState
from statemachine.paths import Path

if TYPE_CHECKING:  # loaded with the first Choice built (statemachine.parts)
    from statemachine.choice import RuleTest

__all__ = [
    "ChoicePlan",
    "PassPlan",
    "Plans",
    "TaskPlan",
    "choice_plan",
    "pass_plan",
    "task_plan",
]

_S = TypeVar("_S", bound=State)
_P = TypeVar("_P")


class Plans(Generic[_S, _P]):
    """The plans of one state type, made by `make` once per state object.

    Kept by the state's identity (the state is held with its plan, so its id
    is not reused while the plan is kept), the least recently visited
    forgotten first, in generations: plans visited
    since the cache last turned over are kept in `_recent`, the others in
    `_older`. When `_recent` holds `remembered` the cache turns over:
    `_older`, the plans not visited since the previous turn-over, is
    forgotten and `_recent` becomes `_older`; a plan visited there comes back
    to `_recent` unmade. So up to twice `remembered` plans are kept, a set
    of up to `remembered` states visited in turn is never made again, and a
    process that loads many definitions keeps the plans of the ones it
    runs. A visit costs one dict lookup, as with no eviction at all (an
    exact LRU's reordering cost ~70 ns a visit, benchmarks/PROFILE.md s20b).
    """

    __slots__ = ("_make", "_older", "_recent", "_remembered")

    def __init__(self, make: Callable[[_S], _P], remembered: int = 4096) -> None:
        self._make = make
        self._recent: dict[int, tuple[_S, _P]] = {}
        self._older: dict[int, tuple[_S, _P]] = {}
        self._remembered = max(1, remembered)

    def of(self, state: _S) -> _P:
        """The plan of `state`, made now if it has none yet."""
        entry = self._recent.get(id(state))
        if entry is not None and entry[0] is state:
            return entry[1]
        return self._missed(state)

    def _missed(self, state: _S) -> _P:
        """`state`'s plan from the older half, else made; kept in the recent half."""
        key = id(state)
        entry = self._older.pop(key, None)
        if entry is None or entry[0] is not state:
            entry = (state, self._make(state))
        if len(self._recent) >= self._remembered:
            self._older, self._recent = self._recent, {}
        self._recent[key] = entry
        return entry[1]


def _reads(paths: Iterable[Path]) -> tuple[bool, bool]:
    """Whether any of `paths` reads the context object, and whether any reads a variable."""
    roots = {path.root for path in paths}
    return "context" in roots, "variable" in roots


@dataclass(frozen=True, slots=True)
class PassPlan:
    """A Pass's visit: `direct` when its output is its Result, its Parameters or its input.

    Direct means JSONPath with no InputPath, ResultPath, OutputPath or
    Assign step to apply; `template` is then its Parameters (None for a
    Result or no Parameters), `next` where it goes (None: the scope ends).
    """

    direct: bool
    template: Template | None
    next: str | None


def pass_plan(state: PassState) -> PassPlan:
    direct = (
        not state.jsonata
        and state.assign is None
        and state.input_path is None
        and not state.input_path_null
        and state.result_path is None
        and not state.result_path_null
        and state.output_path is None
        and not state.output_path_null
    )
    template = None if state.has_result else state.parameters
    return PassPlan(direct, template, None if state.end else state.next)


@dataclass(frozen=True, slots=True)
class ChoicePlan:
    """A JSONPath Choice's visit: each rule's test, where it goes and its Assign.

    `whole_input`/`whole_output`: no InputPath/OutputPath step to apply.
    `reads_context`/`reads_variables`: whether any rule's path reads them.
    A JSONata Choice has no plan's `rules` (empty) and is evaluated as written.
    """

    rules: tuple[tuple[RuleTest, str, Any], ...]
    whole_input: bool
    whole_output: bool
    reads_context: bool
    reads_variables: bool


def choice_plan(state: ChoiceState) -> ChoicePlan:
    if state.jsonata:
        return ChoicePlan((), False, False, True, True)
    from statemachine.choice import compile_rule_test, rule_paths

    rules = tuple(
        (compile_rule_test(rule), cast("str", rule.next), state.rule_assigns[index])
        for index, rule in enumerate(state.choices)
    )
    reads_context, reads_variables = _reads(
        path for rule in state.choices for path in rule_paths(rule)
    )
    return ChoicePlan(
        rules,
        state.input_path is None and not state.input_path_null,
        state.output_path is None and not state.output_path_null,
        reads_context,
        reads_variables,
    )


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """A Task's visit: which of its data-flow steps are no-ops.

    `whole_input`: JSONPath with no InputPath, Parameters, TimeoutSeconds or
    HeartbeatSeconds to evaluate: the handler gets the raw input as is.
    `whole_result`: JSONPath with no ResultSelector, ResultPath, OutputPath
    or Assign: the output is the handler's result as is.
    """

    whole_input: bool
    whole_result: bool


def task_plan(state: TaskState) -> TaskPlan:
    jsonpath = not state.jsonata
    return TaskPlan(
        whole_input=jsonpath
        and state.input_path is None
        and not state.input_path_null
        and state.parameters is None
        and state.timeout is None
        and state.heartbeat is None,
        whole_result=jsonpath
        and state.assign is None
        and state.result_selector is None
        and state.result_path is None
        and not state.result_path_null
        and state.output_path is None
        and not state.output_path_null,
    )
