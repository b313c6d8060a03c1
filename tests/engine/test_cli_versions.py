"""`stepwise machines update|publish|versions|delete` and `stepwise aliases …`, end to end.

The CLI on both stores: publish versions, route an alias, start through
NAME:VERSION and NAME:ALIAS, see the version and alias in ``describe``,
filter ``list`` by them, and be refused with AWS's errors (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.test_cli import ACCOUNT, invoke, invoke_json

BASE = f"{ACCOUNT}:stateMachine:orders"


def write(tmp_path: Path, label: str) -> str:
    path = tmp_path / f"{label}.json"
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": label, "End": True}}}
    path.write_text(json.dumps(definition))
    return str(path)


def test_versions_and_aliases_from_the_command_line(db_url: str, tmp_path: Path) -> None:
    db = ["--db", db_url]
    invoke_json(["machines", "create", "orders", write(tmp_path, "v1"), *db])
    published = invoke_json(["machines", "publish", "orders", "--description", "first", *db])
    assert published["stateMachineVersionArn"] == f"{BASE}:1"
    assert set(published) == {"stateMachineVersionArn", "creationDate"}
    updated = invoke_json(["machines", "update", "orders", write(tmp_path, "v2"), "--publish", *db])
    assert updated["stateMachineVersionArn"] == f"{BASE}:2"
    versions = invoke_json(["machines", "versions", "orders", *db])["stateMachineVersions"]
    assert [v["stateMachineVersionArn"] for v in versions] == [f"{BASE}:2", f"{BASE}:1"]

    created = invoke_json(
        ["aliases", "create", "live", "--machine", "orders", "--route", "1=100", *db]
    )
    assert created["stateMachineAliasArn"] == f"{BASE}:live"
    routes = ["--route", "1=90", "--route", "2=10"]
    invoke_json(["aliases", "update", "live", "--machine", "orders", *routes, *db])
    described = invoke_json(["aliases", "describe", "live", "--machine", "orders", *db])
    assert described["routingConfiguration"] == [
        {"stateMachineVersionArn": f"{BASE}:1", "weight": 90},
        {"stateMachineVersionArn": f"{BASE}:2", "weight": 10},
    ]
    listed = invoke_json(["aliases", "list", "--machine", "orders", *db])["stateMachineAliases"]
    assert [a["stateMachineAliasArn"] for a in listed] == [f"{BASE}:live"]

    invoke_json(["start", "orders:live", "--name", "via-alias", *db])
    invoke_json(["start", f"{BASE}:2", "--name", "via-version", *db])
    invoke_json(["start", "orders", "--name", "plain", *db])
    via_alias = invoke_json(["describe", "via-alias", *db])
    assert via_alias["stateMachineAliasArn"] == f"{BASE}:live"
    assert via_alias["stateMachineVersionArn"] in (f"{BASE}:1", f"{BASE}:2")
    assert via_alias["stateMachineArn"] == BASE
    via_version = invoke_json(["describe", "via-version", *db])
    assert via_version["stateMachineVersionArn"] == f"{BASE}:2"
    assert "stateMachineAliasArn" not in via_version
    plain = invoke_json(["describe", "plain", *db])
    assert "stateMachineVersionArn" not in plain and "stateMachineAliasArn" not in plain
    names = invoke_json(["list", "--machine", "orders:live", *db])["executions"]
    assert [e["name"] for e in names] == ["via-alias"]
    names = invoke_json(["list", "--machine", "orders:2", *db])["executions"]
    assert "via-version" in [e["name"] for e in names]

    conflict = invoke(["machines", "delete", "orders", "--version", "2", *db])
    assert conflict.exit_code == 2
    assert conflict.stderr.startswith("stepwise: error: ConflictException:")
    bad = invoke(["aliases", "create", "half", "--machine", "orders", "--route", "1=50", *db])
    assert bad.exit_code == 2 and "INVALID_ROUTING_CONFIGURATION" in bad.stderr
    missing = invoke(["start", "orders:nope", *db])
    assert missing.exit_code == 2 and "ResourceNotFound" in missing.stderr

    invoke_json(["aliases", "delete", "live", "--machine", "orders", *db])
    invoke_json(["machines", "delete", "orders", "--version", "2", *db])
    versions = invoke_json(["machines", "versions", "orders", *db])["stateMachineVersions"]
    assert [v["stateMachineVersionArn"] for v in versions] == [f"{BASE}:1"]
