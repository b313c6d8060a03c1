"""Activities and tags outlive the server: a restarted `stepwise serve` still lists and tags them.

Each test stops its own server (SIGTERM, or SIGKILL) and starts another on
the same database, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import pg
from tests.http.support import Server
from tests.http.test_api import ROLE

PASS = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stepwise.db'}"
        return
    postgres = request.getfixturevalue("postgres_server")
    url, dropped = pg.fresh_database_url()
    yield url
    postgres.drop_database(dropped)


def test_activities_and_tags_survive_a_restart(database: str, tmp_path: Path) -> None:
    first = Server(database, tmp_path / "first.log").start()
    try:
        client = first.client()
        made = client.create_activity(name="approve", tags=[{"key": "team", "value": "ops"}])
        client.create_activity(name="review")
        client.create_activity(name="gone")
        client.delete_activity(activityArn=client.create_activity(name="gone")["activityArn"])
        machine = client.create_state_machine(
            name="tagged",
            definition=json.dumps(PASS),
            roleArn=ROLE,
            tags=[{"key": "env", "value": "prod"}],
        )["stateMachineArn"]
        client.tag_resource(resourceArn=machine, tags=[{"key": "owner", "value": "me"}])
        client.untag_resource(resourceArn=machine, tagKeys=["env"])
    finally:
        first.kill()  # nothing is flushed: what was committed is all there is

    second = Server(database, tmp_path / "second.log").start()
    try:
        client = second.client()
        listed = client.list_activities()["activities"]
        assert [a["name"] for a in listed] == ["approve", "review"]
        described = client.describe_activity(activityArn=made["activityArn"])
        assert described["creationDate"] == made["creationDate"]
        assert client.list_tags_for_resource(resourceArn=made["activityArn"])["tags"] == [
            {"key": "team", "value": "ops"}
        ]
        assert client.list_tags_for_resource(resourceArn=machine)["tags"] == [
            {"key": "owner", "value": "me"}
        ]
        # Creating it again keeps its first creation date, as AWS does.
        again = client.create_activity(name="approve")
        assert again["creationDate"] == made["creationDate"]
        with pytest.raises(client.exceptions.ActivityDoesNotExist):
            client.describe_activity(activityArn=made["activityArn"].replace("approve", "gone"))
        too_many = [{"key": f"k{i}", "value": "v"} for i in range(50)]
        with pytest.raises(client.exceptions.TooManyTags):
            client.tag_resource(resourceArn=made["activityArn"], tags=too_many)
        assert len(client.list_tags_for_resource(resourceArn=made["activityArn"])["tags"]) == 1
    finally:
        second.stop()
