"""Spans built from real histories: tree shape, timing, errors, determinism, crash splits."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Event, ExecutionRecord
from engine.telemetry import (
    PayloadPolicy,
    SpanRecord,
    TraceBuilder,
    build_spans,
    span_id_for,
    task_span_id,
    traceparent_for,
)
from tests.telemetry import FAIL_STATE, FAILING, RICH, SECRET, run


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExecutionRecord, list[Event]]:
    path = tmp_path_factory.mktemp("rich") / "stepwise.db"
    return run(f"sqlite:///{path}", RICH)


def by_name(spans: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    found: dict[str, list[SpanRecord]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def test_tree_shape_names_and_parents(rich: tuple[ExecutionRecord, list[Event]]) -> None:
    record, events = rich
    spans = build_spans(record, events)
    assert len(spans) == 20
    names = by_name(spans)
    ids = {span.span_id: span for span in spans}
    (root,) = names[f"execution {record.machine}"]
    assert root.parent_span_id is None
    assert root.start_event_id == 1 and root.end_event_id == events[-1].event_id

    def parent(span: SpanRecord) -> SpanRecord:
        assert span.parent_span_id is not None
        return ids[span.parent_span_id]

    for name in ("Prep", "Fan", "Each", "Done"):
        (span,) = names[name]
        assert parent(span) is root
        assert span.kind == "state"
    assert names["Fan"][0].attributes["stepwise.state.type"] == "Parallel"
    assert [parent(b).name for b in names["branch 0"] + names["branch 1"]] == ["Fan", "Fan"]
    assert parent(names["A1"][0]).name == "branch 0"
    assert parent(names["A2"][0]).name == "branch 0"
    assert parent(names["B1"][0]).name == "branch 1"
    assert parent(names["B2"][0]).name == "branch 1"
    assert sorted(
        s.attributes["stepwise.map.index"] for s in names["iteration 0"] + names["iteration 1"]
    ) == [0, 1]
    for state in names["E"]:
        assert parent(state).kind == "iteration"
    flaky = sorted(names["task flaky"], key=lambda s: s.start)
    assert [s.attributes["stepwise.task.attempt"] for s in flaky] == [0, 1]
    assert all(parent(s).name == "A1" for s in flaky)
    assert flaky[0].attributes["stepwise.task.resource"] == "flaky"
    assert root.attributes["stepwise.machine.name"] == record.machine
    assert root.attributes["stepwise.machine.version"] == record.version
    assert root.attributes["stepwise.execution.id"] == record.execution_id
    assert {s.trace_id for s in spans} == {record.trace_id}


def test_timestamps_come_from_events_and_nest(rich: tuple[ExecutionRecord, list[Event]]) -> None:
    record, events = rich
    spans = build_spans(record, events)
    times = {e.event_id: e.timestamp for e in events}
    ids = {span.span_id: span for span in spans}
    for span in spans:
        assert span.end is not None and span.start <= span.end
        assert span.start == times[span.start_event_id]
        if span.kind != "branch":  # a branch ends with its last event, not its end event
            assert span.end == times[span.end_event_id or 0]
        if span.parent_span_id is not None:
            outer = ids[span.parent_span_id]
            assert outer.start <= span.start and span.end <= outer.end  # type: ignore[operator]


def test_retry_caught_and_error_status(rich: tuple[ExecutionRecord, list[Event]]) -> None:
    record, events = rich
    names = by_name(build_spans(record, events))
    (a1,) = names["A1"]
    assert [(e.name, e.attributes["error.type"]) for e in a1.events] == [
        ("stepwise.retry", "Custom.Flaky")
    ]
    assert a1.error is None
    first, second = sorted(names["task flaky"], key=lambda s: s.start)
    assert first.error == "Custom.Flaky" and first.status_message == "Custom.Flaky"
    assert second.error is None
    (b1,) = names["B1"]
    assert [(e.name, e.attributes["error.type"]) for e in b1.events] == [
        ("stepwise.caught", "Custom.Boom")
    ]
    assert b1.error is None
    assert names["task boom"][0].error == "Custom.Boom"
    assert all(s.error is None for s in names["Fan"] + names["branch 1"])


def test_no_payload_in_any_attribute_by_default(rich: tuple[ExecutionRecord, list[Event]]) -> None:
    record, events = rich
    for span in build_spans(record, events):
        values = [*span.attributes.values()] + [
            v for e in span.events for v in e.attributes.values()
        ]
        assert not any(SECRET in str(v) or "items" in str(v) or "nope" in str(v) for v in values)
        assert not {"stepwise.input", "stepwise.output", "stepwise.error.cause"} & set(
            span.attributes
        )


def test_payloads_opt_in_are_redacted_and_capped(rich: tuple[ExecutionRecord, list[Event]]) -> None:
    record, events = rich
    spans = build_spans(record, events, payloads=PayloadPolicy(enabled=True, max_bytes=64))
    root = by_name(spans)[f"execution {record.machine}"][0]
    assert root.attributes["stepwise.input"] == '{"password":"[REDACTED]","a":1}'
    output = str(root.attributes["stepwise.output"])
    assert output.endswith("…[truncated]") and len(output.encode()) <= 64 + len(
        "…[truncated]".encode()
    )
    assert all(SECRET not in str(v) for s in spans for v in s.attributes.values())


def test_failed_execution_marks_state_and_root(tmp_path: pytest.TempPathFactory) -> None:
    record, events = run(f"sqlite:///{tmp_path}/f.db", FAILING)
    assert record.status == "FAILED"
    names = by_name(build_spans(record, events))
    root = names[f"execution {record.machine}"][0]
    assert root.error == "Custom.Boom"
    assert root.attributes["stepwise.execution.status"] == "FAILED"
    assert names["Work"][0].error == "Custom.Boom"
    assert names["task boom"][0].error == "Custom.Boom"
    assert "Never" not in names


def test_fail_state_gets_the_execution_error(tmp_path: pytest.TempPathFactory) -> None:
    record, events = run(f"sqlite:///{tmp_path}/f.db", FAIL_STATE)
    names = by_name(build_spans(record, events))
    assert names["Stop"][0].error == "Custom.Rejected"
    assert names["Check"][0].error is None
    assert names[f"execution {record.machine}"][0].error == "Custom.Rejected"


def test_same_history_same_span_ids(rich: tuple[ExecutionRecord, list[Event]]) -> None:
    record, events = rich
    first = build_spans(record, events)
    second = build_spans(record, list(reversed(events)))
    assert [(s.span_id, s.parent_span_id, s.name) for s in first] == [
        (s.span_id, s.parent_span_id, s.name) for s in second
    ]
    assert len({s.span_id for s in first}) == len(first)
    scheduled = [e.event_id for e in events if e.type == "TaskScheduled"]
    tasks = {s.span_id for s in first if s.kind == "task"}
    assert {task_span_id(record.trace_id, i) for i in scheduled} == tasks


def test_open_spans_of_a_running_execution(rich: tuple[ExecutionRecord, list[Event]]) -> None:
    record, events = rich
    cut = next(e.event_id for e in events if e.type == "MapIterationStarted")
    builder = TraceBuilder(record)
    done = builder.feed(e for e in events if e.event_id <= cut)
    running = builder.open_spans()
    assert [s.name for s in running] == [f"execution {record.machine}", "Each", "iteration 0"]
    assert all(s.end is None for s in running)
    assert {s.name for s in done} >= {"Prep", "Fan", "branch 0", "branch 1"}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_split_into_commits_gives_each_span_once(
    rich: tuple[ExecutionRecord, list[Event]], data: st.DataObject
) -> None:
    """Fed commit by commit (as workers commit, a crash anywhere in between), the spans
    emitted are exactly the spans of the whole history, each once."""
    record, events = rich
    cuts = sorted(data.draw(st.sets(st.integers(1, len(events) - 1), max_size=8)))
    slices = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    crash = data.draw(st.integers(0, len(slices) - 1))
    emitted: list[SpanRecord] = []
    builder = TraceBuilder(record)
    for index, chunk in enumerate(slices):
        if index == crash and index > 0:
            # The successor worker starts from the stored history, emitting nothing for it.
            builder = TraceBuilder(record)
            builder.feed(e for e in events if e.event_id < chunk[0].event_id)
        emitted.extend(builder.feed(chunk))
    whole = build_spans(record, events)
    assert Counter(s.span_id for s in emitted) == Counter(s.span_id for s in whole)
    assert {s.span_id: (s.start, s.end, s.error) for s in emitted} == {
        s.span_id: (s.start, s.end, s.error) for s in whole
    }


def test_traceparent_and_span_ids() -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    assert traceparent_for(trace_id, "b7ad6b7169203331") == f"00-{trace_id}-b7ad6b7169203331-01"
    with pytest.raises(ValueError):
        traceparent_for(trace_id, "xyz")
    with pytest.raises(ValueError):
        traceparent_for("zz" * 16, "b7ad6b7169203331")
    assert traceparent_for(trace_id.upper(), "B7AD6B7169203331") == (
        f"00-{trace_id}-b7ad6b7169203331-01"
    )
    # What int(…, 16) would take but a traceparent may not carry: a 0x
    # prefix, underscores, a sign, spaces; and the spec's invalid all-zero ids.
    for bad_trace, bad_span in [
        ("0x" + trace_id[2:], "b7ad6b7169203331"),
        (trace_id, "0x" + "b7ad6b7169203331"[2:]),
        (trace_id[:30] + "_1", "b7ad6b7169203331"),
        (trace_id, "+b7ad6b716920333"),
        (trace_id, " b7ad6b716920333"),
        ("0" * 32, "b7ad6b7169203331"),
        (trace_id, "0" * 16),
    ]:
        with pytest.raises(ValueError):
            traceparent_for(bad_trace, bad_span)
    first = span_id_for(trace_id, 7, "task")
    assert len(first) == 16 and int(first, 16) != 0
    assert first == span_id_for(trace_id, 7, "task") != span_id_for(trace_id, 7, "state")
