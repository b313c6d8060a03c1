"""No poison executions: hostile input fails its own execution, never the worker.

Each case runs a hostile execution on a real in-process worker beside a
sentinel execution holding a 1-second Wait, on both stores. The hostile
execution must end (FAILED with AWS's error, or caught by its Catch), the
sentinel's Wait, entered before the hostile execution started, must fire
and its execution succeed, and the same worker must still run a fresh
execution afterwards. No lateness is measured: every hostile input here is
bounded by a limit (depth, a lone surrogate, the regex engine's timeout),
not by the wall clock, and pytest's timeout is the hang guard. That the
loop stays free while a hostile input is evaluated is shown by an order of
events: beside an input costing minutes of evaluation, the sentinel's Wait
fires and its execution succeeds while the hostile one is still RUNNING.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from activities import Registry
from engine import Engine
from statemachine.jsonata import Limits
from tests.engine.processes import wait_until
from tests.engine.test_evaluation_off_loop import SELECTOR_MAP, _leased

SENTINEL = {
    "StartAt": "Pause",
    "States": {
        "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
        "Done": {"Type": "Pass", "Result": "on time", "End": True},
    },
}

QUICK = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}

DEEP_TEXT = "[" * 10_000 + "]" * 10_000


def _pass(parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "StartAt": "Hostile",
        "States": {"Hostile": {"Type": "Pass", "Parameters": parameters, "End": True, **extra}},
    }


def _task(resource: str, **extra: Any) -> dict[str, Any]:
    return {
        "StartAt": "Hostile",
        "States": {"Hostile": {"Type": "Task", "Resource": resource, "End": True, **extra}},
    }


def _caught(state: dict[str, Any]) -> dict[str, Any]:
    """`state` (one Task named Hostile) with a Catch of every error into Recovered."""
    definition = json.loads(json.dumps(state))
    hostile = definition["States"]["Hostile"]
    hostile["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "Recovered"}]
    definition["States"]["Recovered"] = {"Type": "Pass", "End": True}
    return definition


def hostile_registry() -> Registry:
    registry = Registry()

    def deep(value: Any) -> Any:
        result: Any = "bottom"
        for _ in range(10_000):
            result = [result]
        return result

    registry.register("echo", lambda value: value)
    registry.register("surrogate_result", lambda value: {"a": "\ud800"})
    registry.register("deep_result", deep)

    def surrogate_message(value: Any) -> Any:
        raise ValueError("bad byte \udcff in the message")

    registry.register("surrogate_message", surrogate_message)
    return registry


# name → (definition, input, expected status, expected error, text the cause holds)
CASES: dict[str, tuple[dict[str, Any], Any, str, str | None, str]] = {
    "StringToJson of text nested 10,000 deep": (
        _pass({"v.$": "States.StringToJson($.text)"}),
        {"text": DEEP_TEXT},
        "FAILED",
        "States.IntrinsicFailure",
        "nests deeper than 500 levels",
    ),
    "StringToJson of a lone surrogate escape": (
        _pass({"v.$": "States.StringToJson($.text)"}),
        {"text": '"\\ud800"'},
        "FAILED",
        "States.IntrinsicFailure",
        "lone surrogate",
    ),
    "StringToJson failure is catchable": (
        _caught(_task("echo", Parameters={"v.$": "States.StringToJson($.text)"})),
        {"text": DEEP_TEXT},
        "SUCCEEDED",
        None,
        "",
    ),
    "a task result holding a lone surrogate": (
        _task("surrogate_result"),
        {},
        "FAILED",
        "States.Runtime",
        "lone surrogate",
    ),
    "a task result nested 10,000 deep": (
        _task("deep_result"),
        {},
        "FAILED",
        "States.Runtime",
        "nests deeper than 500 levels",
    ),
    "a handler error whose message holds a lone surrogate": (
        _task("surrogate_message"),
        {},
        "FAILED",
        "ValueError",
        "bad byte \\udcff in the message",
    ),
    "a catastrophic =~ regex in a JSONPath filter": (
        _pass({"v.$": "$.items[?(@.s =~ /^(a|aa)+$/)]"}),
        {"items": [{"s": "a" * 60 + "b"}]},
        "FAILED",
        "States.Runtime",
        "catastrophic backtracking",
    ),
    "JSONata building a lone surrogate": (
        {
            "QueryLanguage": "JSONata",
            "StartAt": "Hostile",
            "States": {"Hostile": {"Type": "Pass", "Output": "{% '\\ud800' %}", "End": True}},
        },
        {},
        "FAILED",
        "States.QueryEvaluationError",
        "lone surrogate",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_execution_fails_alone_and_the_worker_lives(db_url: str, case: str) -> None:
    definition, payload, status, error, cause = CASES[case]
    with Engine(db_url, registry=hostile_registry()) as engine:
        engine.create_state_machine_sync("sentinel", SENTINEL)
        engine.create_state_machine_sync("hostile", definition)
        engine.create_state_machine_sync("quick", QUICK)
        sentinel = engine.start_sync("sentinel", {})
        wait_until(lambda: "WaitStateEntered" in [e.type for e in engine.history_sync(sentinel)])
        hostile = engine.start_sync("hostile", payload)
        ended = engine.wait_sync(hostile, timeout=60)
        fired = engine.wait_sync(sentinel, timeout=60)
        after = engine.wait_sync(engine.start_sync("quick", {"still": "alive"}), timeout=60)
    assert (ended.status, ended.error) == (status, error), ended.cause
    assert cause in (ended.cause or "")
    assert (fired.status, json.loads(fired.output or "")) == ("SUCCEEDED", "on time")
    assert after.status == "SUCCEEDED" and json.loads(after.output or "") == {"still": "alive"}


def _explode_in(state_name: str, error: BaseException) -> Any:
    """A Pass evaluator that raises `error` in the state named `state_name` (an engine bug)."""
    from engine.states import pass_

    original = pass_.payload_template

    def payload_template(frame: Any, *args: Any, **kwargs: Any) -> Any:
        if frame.state.name == state_name:
            raise error
        return original(frame, *args, **kwargs)

    return payload_template


UNEXPECTED = {
    "StartAt": "Before",
    "States": {
        "Before": {"Type": "Pass", "Next": "Fan"},
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Poison",
                    "States": {"Poison": {"Type": "Pass", "Parameters": {"a": 1}, "End": True}},
                }
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
            "End": True,
        },
        "Caught": {"Type": "Pass", "End": True},
    },
}


@pytest.mark.parametrize(
    "error", [RecursionError("maximum recursion depth exceeded"), MemoryError(), KeyError("x")]
)
def test_an_unexpected_exception_in_a_state_fails_that_execution_with_states_runtime(
    db_url: str, error: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine bug inside a state (here injected) fails the execution once, uncatchably.

    AWS's States.Runtime is beyond Retry and Catch (States.ALL does not match
    it): the Parallel's Catch must not swallow it, and the execution must not
    be re-activated in a loop.
    """
    from engine.states import pass_

    monkeypatch.setattr(pass_, "payload_template", _explode_in("Poison", error))
    with Engine(db_url) as engine:
        engine.create_state_machine_sync("sentinel", SENTINEL)
        engine.create_state_machine_sync("unexpected", UNEXPECTED)
        engine.create_state_machine_sync("quick", QUICK)
        sentinel = engine.start_sync("sentinel", {})
        ended = engine.wait_sync(engine.start_sync("unexpected", {}), timeout=60)
        on_time = engine.wait_sync(sentinel, timeout=60)
        after = engine.wait_sync(engine.start_sync("quick", {}), timeout=60)
        events = engine.history_sync(ended)
    assert (ended.status, ended.error) == ("FAILED", "States.Runtime")
    assert "An error occurred while executing the state 'Poison'" in (ended.cause or "")
    assert type(error).__name__ in (ended.cause or "")
    assert [e.type for e in events].count("PassStateEntered") == 2  # one activation's walk
    # States.Runtime ends the execution without the enclosing state's failure
    # event, as AWS's recorded Map histories show (issue 18's rule).
    assert "ParallelStateFailed" not in [e.type for e in events]
    assert [e.type for e in events][-1] == "ExecutionFailed"
    assert on_time.status == "SUCCEEDED" and after.status == "SUCCEEDED"


def test_an_unexpected_exception_outside_the_states_fails_after_a_few_activations(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception outside any state is retried POISON_STRIKES times, with backoff, then fails."""
    from engine import runner

    def load_fails(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    with Engine(sqlite_url) as engine:
        engine.create_state_machine_sync("quick", QUICK)
        engine.runtime._machines.clear()  # creation keeps the built machine: build it again
        monkeypatch.setattr(runner, "load", load_fails)
        ended = engine.wait_sync(engine.start_sync("quick", {}), timeout=60)
        monkeypatch.undo()
        engine.runtime._machines.clear()
        after = engine.wait_sync(engine.start_sync("quick", {"n": 2}), timeout=60)
    assert (ended.status, ended.error) == ("FAILED", "States.Runtime")
    assert "MemoryError" in (ended.cause or "")
    strikes = [r for r in caplog.records if "outside its states" in r.getMessage()]
    assert len(strikes) == runner.POISON_STRIKES
    assert after.status == "SUCCEEDED"


def test_the_loop_stays_responsive_while_a_hostile_input_is_evaluated(sqlite_url: str) -> None:
    # 6,000 evaluations of ~0.2 s each in a Map's ItemSelector: minutes of
    # evaluation, each under its deadline. Held on the loop, they would hold
    # the sentinel's Wait until the Map was done.
    with Engine(sqlite_url, registry=hostile_registry()) as engine:
        engine.runtime.jsonata_limits = Limits(timeout_seconds=60)
        engine.create_state_machine_sync("hostile", SELECTOR_MAP)
        engine.create_state_machine_sync("sentinel", SENTINEL)
        hostile = engine.start_sync("hostile", {})
        wait_until(lambda: _leased(sqlite_url))  # claimed: its evaluations under way
        sentinel = engine.start_sync("sentinel", {})
        fired = engine.wait_sync(sentinel, timeout=120)  # a hang guard, not a measure
        meanwhile = engine.describe_sync(hostile)
        events = [e.type for e in engine.history_sync(hostile)]
    assert (fired.status, json.loads(fired.output or "")) == ("SUCCEEDED", "on time")
    # The sentinel ended first: the hostile input was still being evaluated.
    assert meanwhile.status == "RUNNING"
    assert "MapIterationStarted" not in events
