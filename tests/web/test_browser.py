"""The web view in a real headless Chromium against a real `stepwise serve`, on both stores.

A user opens the home page, finds an execution, opens it, sees every state
of the graph coloured by what happened to it, clicks a state to see its
input and output, stops a running execution, redrives a failed one (when
the lifecycle can), starts one again with edited input, and a hostile
payload stays text.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from engine.lifecycle import Lifecycle
from engine.runner import machine_arn
from tests.http.support import ROOT, Server

HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>"

TOUR = {
    "StartAt": "Fetch",
    "States": {
        "Fetch": {
            "Type": "Task",
            "Resource": "flaky",
            "ResultPath": "$.fetched",
            "Retry": [
                {"ErrorEquals": ["Oops"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 1}
            ],
            "Next": "Fan",
        },
        "Fan": {
            "Type": "Parallel",
            "ResultPath": "$.fan",
            "Branches": [
                {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": True}}},
                {"StartAt": "Right", "States": {"Right": {"Type": "Pass", "End": True}}},
            ],
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ResultPath": "$.each",
            "ItemProcessor": {"StartAt": "Item", "States": {"Item": {"Type": "Pass", "End": True}}},
            "Next": "Route",
        },
        "Route": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.size", "NumericGreaterThan": 10, "Next": "Never"}],
            "Default": "Risky",
        },
        "Never": {"Type": "Pass", "End": True},
        "Risky": {
            "Type": "Task",
            "Resource": "explode",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Done"}],
            "End": True,
        },
        "Done": {"Type": "Succeed"},
    },
}

EXPECTED = {
    "Fetch": "retried",
    "Fan": "succeeded",
    "Left": "succeeded",
    "Right": "succeeded",
    "Each": "succeeded",
    "Item": "succeeded",
    "Route": "succeeded",
    "Never": "not-reached",
    "Risky": "caught",
    "Done": "succeeded",
}

WAITS = {"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 3600, "End": True}}}
FAILS = {
    "StartAt": "Boom",
    "States": {"Boom": {"Type": "Task", "Resource": "explode", "End": True}},
}


def _machine(server: Server, name: str, definition: dict[str, Any]) -> str:
    client = server.client()
    answer = client.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/x"
    )
    return str(answer["stateMachineArn"])


def _start(server: Server, machine: str, value: Any, name: str) -> str:
    arn = machine_arn(machine) if not machine.startswith("arn:") else machine
    answer = server.client().start_execution(
        stateMachineArn=arn, name=name, input=json.dumps(value)
    )
    return str(answer["executionArn"])


def _status(server: Server, execution: str) -> str:
    return str(server.client().describe_execution(executionArn=execution)["status"])


def _wait_closed(server: Server, execution: str, deadline: float = 120) -> str:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        status = _status(server, execution)
        if status != "RUNNING":
            return status
        time.sleep(0.2)
    raise AssertionError(f"{execution} still running after {deadline} s")


def _open_from_home(page: Any, server: Server, name: str) -> None:
    """Open the home page, find the execution by name with the filter, and open it."""
    page.goto(server.url + "/")
    page.fill('input[name="name"]', name)
    page.click('form.filters button[type="submit"]')
    page.click(f'table.executions a:text-is("{name}")')
    page.wait_for_selector(".graph-svg g.node")


def test_execution_page_shows_graph_outcomes_state_data_and_payloads_as_text(
    server: Server, page: Any
) -> None:
    machine = _machine(server, "tour", TOUR)
    execution = _start(server, machine, {"items": [1, 2, 3], "size": 1, "note": HOSTILE}, "tour-1")
    assert _wait_closed(server, execution) == "SUCCEEDED"

    _open_from_home(page, server, "tour-1")
    assert page.text_content("#status") == "SUCCEEDED"
    outcomes = page.eval_on_selector_all(
        ".graph-svg g.node:not(.join)",
        "nodes => nodes.map(n => [n.dataset.state, n.dataset.outcome])",
    )
    assert dict(outcomes) == EXPECTED
    # Choice edges carry their rule; Catch edges are drawn as such.
    labels = page.eval_on_selector_all(".graph-svg g.edge text", "ts => ts.map(t => t.textContent)")
    assert "$.size NumericGreaterThan 10" in labels
    assert page.locator(".graph-svg g.edge.catch").count() == 1
    assert "Each: 3 started, 3 succeeded" in page.inner_text("main")

    page.click('g.node[data-state="Fetch"]')
    panel = page.locator("#state-panel")
    panel.get_by_text("retried").wait_for()
    text = panel.inner_text()
    assert "State input" in text and "State output" in text
    assert "Oops: the first attempt fails" in text
    assert '"ok": true' in text
    # The hostile payload shows as text, in the panel and in the input section, and never ran.
    assert HOSTILE in text
    assert HOSTILE in page.inner_text("main")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img").count() == 0

    # The event table has AWS's columns and filters by type.
    headers = page.eval_on_selector_all("table.events th", "hs => hs.map(h => h.textContent)")
    assert headers[:6] == ["ID", "Type", "Step", "Resource", "Elapsed", "Timestamp"]
    page.fill('#events input[name="type"]', "TaskFailed")
    page.click('#events button[type="submit"]')
    page.wait_for_url("**type=TaskFailed**")
    types = page.eval_on_selector_all(
        "table.events tbody tr td:nth-child(2)", "ds => ds.map(d => d.textContent)"
    )
    assert types and set(types) == {"TaskFailed"}
    if os.environ.get("STEPWISE_UPDATE_SCREENSHOT") and "sqlite" in server.db_url:
        page.set_viewport_size({"width": 1400, "height": 1250})
        page.goto(page.url.split("?")[0])
        page.click('g.node[data-state="Risky"]')
        page.screenshot(path=str(Path(ROOT) / "docs" / "execution.png"))


def test_stop_a_running_execution_from_its_button(server: Server, page: Any) -> None:
    machine = _machine(server, "napper", WAITS)
    execution = _start(server, machine, {}, "nap-1")
    _open_from_home(page, server, "nap-1")
    assert page.text_content("#status") == "RUNNING"
    assert page.get_attribute('g.node[data-state="Nap"]', "data-outcome") == "running"
    page.click("#stop")
    page.wait_for_selector("#status.aborted", timeout=60_000)
    assert _status(server, execution) == "ABORTED"
    assert page.get_attribute('g.node[data-state="Nap"]', "data-outcome") == "aborted"
    assert page.locator("#stop").count() == 0


def test_redrive_a_failed_execution_from_its_button(server: Server, page: Any) -> None:
    machine = _machine(server, "fails", FAILS)
    execution = _start(server, machine, {}, "fails-1")
    assert _wait_closed(server, execution) == "FAILED"
    _open_from_home(page, server, "fails-1")
    assert page.get_attribute('g.node[data-state="Boom"]', "data-outcome") == "failed"
    assert "Boom" in page.inner_text("main")
    assert callable(getattr(Lifecycle, "redrive", None))
    page.click("#redrive")
    # The redrive is recorded (ExecutionRedriven), and the Task that failed runs again.
    end = time.monotonic() + 60
    described = server.client().describe_execution(executionArn=execution)
    while described.get("redriveCount", 0) < 1 and time.monotonic() < end:
        time.sleep(0.2)
        described = server.client().describe_execution(executionArn=execution)
    assert described["redriveCount"] == 1
    assert _wait_closed(server, execution) == "FAILED"  # `explode` fails again
    events = server.client().get_execution_history(executionArn=execution)["events"]
    types = [event["type"] for event in events]
    assert types.count("ExecutionRedriven") == 1
    assert types.count("TaskScheduled") == 2
    # The page follows the redriven run by itself (its live poll reloads it
    # when the status or last event changes): a reload from here could race
    # with the page's own, so wait for it to show the run's final event.
    last = max(event["id"] for event in events)
    page.wait_for_selector(
        f'#live[data-status="FAILED"][data-last-event="{last}"]', state="attached", timeout=60_000
    )
    assert page.text_content("#status") == "FAILED"


def test_start_again_with_edited_input(server: Server, page: Any) -> None:
    machine = _machine(
        server, "echo", {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    )
    execution = _start(server, machine, {"n": 1}, "echo-1")
    assert _wait_closed(server, execution) == "SUCCEEDED"
    _open_from_home(page, server, "echo-1")
    page.click("details.inline summary")
    page.fill('textarea[name="input"]', '{"n": 2, "edited": "<b>yes</b>"}')
    page.click("#start-edited")
    page.wait_for_url(lambda url: "echo-1" not in url)
    page.wait_for_selector(".graph-svg g.node")
    assert '"edited": "<b>yes</b>"' in page.inner_text("main")
    assert page.locator("main b:text('yes')").count() == 0


def test_actions_without_the_csrf_token_are_refused(server: Server, page: Any) -> None:
    machine = _machine(server, "napper2", WAITS)
    execution = _start(server, machine, {}, "nap-2")
    _open_from_home(page, server, "nap-2")
    action = page.get_attribute("form:has(#stop)", "action")
    refused = page.request.post(server.url + action, form={"csrf": "forged"})
    assert refused.status == 403
    assert page.request.post(server.url + action, form={}).status == 403
    assert _status(server, execution) == "RUNNING"
    server.client().stop_execution(executionArn=execution)


def test_home_page_lists_newest_first_and_updates_live(server: Server, page: Any) -> None:
    machine = _machine(
        server, "live", {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    )
    page.goto(server.url + "/?machine=live")
    _start(server, machine, {}, "live-1")
    # No reload: the rows poll the server.
    page.wait_for_selector('table.executions a:text-is("live-1")', timeout=60_000)
    _start(server, machine, {}, "live-2")
    page.wait_for_selector('table.executions a:text-is("live-2")', timeout=60_000)
    names = page.eval_on_selector_all(
        "table.executions tbody td:first-child a", "as => as.map(a => a.textContent)"
    )
    assert names[:2] == ["live-2", "live-1"]


def test_state_machine_page_shows_definition_graph_and_recent_executions(
    server: Server, page: Any
) -> None:
    _machine(server, "shown", TOUR)
    page.goto(server.url + "/ui/machines")
    page.click('a:text-is("shown")')
    page.wait_for_selector(".graph-svg g.node")
    states = page.eval_on_selector_all(
        ".graph-svg g.node:not(.join)", "ns => ns.map(n => n.dataset.state)"
    )
    assert set(states) == set(EXPECTED)
    assert '"StartAt": "Fetch"' in page.inner_text("main")
    assert "none published" in page.inner_text("section.published")


def test_state_machine_page_shows_published_versions_and_alias_routes(
    server: Server, page: Any
) -> None:
    client = server.client()
    arn = _machine(server, "routed", WAITS)
    first = client.publish_state_machine_version(stateMachineArn=arn, description="first")
    client.update_state_machine(stateMachineArn=arn, definition=json.dumps(FAILS))
    second = client.publish_state_machine_version(stateMachineArn=arn)
    client.create_state_machine_alias(
        name="live",
        description="canary <b>10%</b>",
        routingConfiguration=[
            {"stateMachineVersionArn": first["stateMachineVersionArn"], "weight": 90},
            {"stateMachineVersionArn": second["stateMachineVersionArn"], "weight": 10},
        ],
    )
    page.goto(server.url + "/ui/machines/routed")
    published = page.locator("section.published")
    assert published.locator("tr[data-version]").count() == 2
    routes = published.locator('tr[data-alias="live"]').inner_text()
    assert "version 1: 90%" in routes and "version 2: 10%" in routes
    assert "canary <b>10%</b>" in routes  # a description is text, never markup
    published.locator('tr[data-version="1"] a').click()
    page.wait_for_selector(".graph-svg g.node")
    assert '"Seconds": 3600' in page.inner_text("main")


def test_a_large_execution_opens_with_paged_events_and_folded_iterations(
    server: Server, page: Any
) -> None:
    machine = _machine(
        server,
        "wide",
        {
            "StartAt": "All",
            "States": {
                "All": {
                    "Type": "Map",
                    "ItemProcessor": {
                        "StartAt": "One",
                        "States": {"One": {"Type": "Pass", "End": True}},
                    },
                    "ResultPath": None,
                    "End": True,
                }
            },
        },
    )
    execution = _start(server, machine, list(range(1000)), "wide-1")
    assert _wait_closed(server, execution, deadline=280) == "SUCCEEDED"
    _open_from_home(page, server, "wide-1")
    total = int(page.inner_text("#events h2 small"))
    assert total > 4000
    # One page of events is rendered, the rest a click away.
    assert page.locator("table.events tbody tr").count() == 200
    assert f"Page 1 of {-(-total // 200)}" in page.inner_text("#events .pager")
    # The iterations draw as one state with counts, not a thousand nodes.
    assert page.locator('.graph-svg g.node[data-state="One"]').count() == 1
    page.click('g.node[data-state="One"]')
    assert "entered 1000 · exited 1000" in page.inner_text("#state-panel")
    assert "All: 1000 started, 1000 succeeded" in page.inner_text("main")


def test_home_page_filters_by_machine_and_status(server: Server, page: Any) -> None:
    sleeper = _machine(server, "filtered", WAITS)
    running = _start(server, sleeper, {}, "filtered-running")
    stopped = _start(server, sleeper, {}, "filtered-stopped")
    server.client().stop_execution(executionArn=stopped)
    assert _wait_closed(server, stopped) == "ABORTED"
    page.goto(server.url + "/")
    page.select_option('select[name="machine"]', "filtered")
    page.select_option('select[name="status"]', "RUNNING")
    page.click('form.filters button[type="submit"]')
    page.wait_for_url("**status=RUNNING**")
    names = page.eval_on_selector_all(
        "table.executions tbody td:first-child a", "as => as.map(a => a.textContent)"
    )
    assert names == ["filtered-running"]
    page.select_option('select[name="status"]', "ABORTED")
    page.click('form.filters button[type="submit"]')
    page.wait_for_url("**status=ABORTED**")
    page.wait_for_selector('table.executions a:text-is("filtered-stopped")')
    assert page.locator('table.executions a:text-is("filtered-running")').count() == 0
    server.client().stop_execution(executionArn=running)


DISTRIBUTED = {
    "StartAt": "Each",
    "States": {
        "Each": {
            "Type": "Map",
            "Label": "rows",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Row",
                "States": {"Row": {"Type": "Pass", "End": True}},
            },
            "End": True,
        }
    },
}


def test_a_distributed_map_shows_its_map_run_and_child_executions(
    server: Server, page: Any
) -> None:
    arn = _machine(server, "fanned", DISTRIBUTED)
    execution = _start(server, arn, [{"row": n} for n in range(3)], "fan-1")
    assert _wait_closed(server, execution) == "SUCCEEDED"
    _open_from_home(page, server, "fan-1")
    run = page.locator("table.map-runs tr[data-map-run]")
    assert run.count() == 1
    assert "SUCCEEDED" in run.inner_text()
    run.locator("a").click()
    page.wait_for_selector("table.executions")
    assert page.inner_text('table.counts td[data-count="total"]') == "3"
    assert page.inner_text('table.counts td[data-count="succeeded"]') == "3"
    children = page.locator("table.executions tbody tr")
    assert children.count() == 3
    assert children.first.inner_text().count("SUCCEEDED") == 1
    children.first.locator("a").first.click()
    page.wait_for_selector(".graph-svg g.node")
    assert "A child execution of" in page.inner_text("main")
    # The child's state machine is the hidden <machine>/<label> one, and its page opens.
    page.click('p.meta a:text-is("fanned/rows")')
    page.wait_for_selector(".graph-svg g.node")
    assert '"Row"' in page.inner_text("main")
