"""The development conformance set replayed through boto3 against `stepwise serve`.

Every local case that does not wait on real time (the same selection as
tests/conformance/test_cli_cases.py) is created as a state machine with
CreateStateMachine, started with StartExecution, awaited through
DescribeExecution, and compared with what AWS recorded; its history read
through botocore's paginator in pages of 7 must equal the unpaged history.
On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.conformance.support import load_case, mismatches
from tests.conformance.test_cli_cases import CASES
from tests.http.support import Server

ROLE = "arn:aws:iam::000000000000:role/conformance"


def test_conformance_cases_through_boto3(server: Server) -> None:
    client = server.client(max_pool_connections=4)
    started: list[tuple[str, dict[str, Any], str]] = []
    for index, path in enumerate(CASES):
        case = load_case(path)
        machine = client.create_state_machine(
            name=f"case-{index}",
            definition=json.dumps(case["definition"]),
            roleArn=ROLE,
            type=case.get("state_machine_type") or "STANDARD",
        )["stateMachineArn"]
        execution = client.start_execution(
            stateMachineArn=machine, name="run", input=json.dumps(case["input"])
        )["executionArn"]
        started.append((path.stem, case, execution))

    problems: list[str] = []
    deadline = time.monotonic() + 120
    for stem, case, execution in started:
        described = client.describe_execution(executionArn=execution)
        while described["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.05)
            described = client.describe_execution(executionArn=execution)
        found = mismatches(
            case,
            described["status"],
            described.get("output"),
            described.get("error"),
            described.get("cause"),
        )
        if found:
            problems.append(f"{stem[:100]}: {found}")
            continue
        whole = client.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        paged = [
            event
            for page in client.get_paginator("get_execution_history").paginate(
                executionArn=execution, PaginationConfig={"PageSize": 7}
            )
            for event in page["events"]
        ]
        if paged != whole:
            problems.append(f"{stem[:100]}: paged history differs from the unpaged one")
    assert problems == [], "\n".join(problems)
