"""Redaction: secret fields hidden in logs, in error causes inside traces, and with --redact.

The rules live in engine/redact.py; these tests pin what an operator sees:
a password in an execution's input or in an error cause does not appear in
`history --redact`, `describe --redact`, a trace with payloads, or a log
line — while the callback task token, which the engine needs shown, does.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import cli
from engine.redact import REDACTED, RedactingFilter, Redactor, redactor_from_environment

SECRET = "hunter2-Zq9xV7"
CREDS = {"user": "bob", "password": SECRET, "apiKey": SECRET, "taskToken": "tok-visible"}
LEAKY_FAIL = {
    "StartAt": "Boom",
    "States": {
        "Boom": {"Type": "Fail", "Error": "Leak", "CausePath": "States.JsonToString($.creds)"}
    },
}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('{"password":"x","a":1}', '{"password":"[REDACTED]","a":1}'),
        ("login failed: password=x at db", "login failed: password=[REDACTED] at db"),
        ("Authorization: Bearer abc.def next", "Authorization: [REDACTED] next"),
        ("{'X-Api-Key': 'zzz', 'n': 1}", "{'X-Api-Key': '[REDACTED]', 'n': 1}"),
        ('accessToken="q" tokenCount=3', 'accessToken="[REDACTED]" tokenCount=3'),
        ("DB_PASSWORD=x passwordHint=y", "DB_PASSWORD=[REDACTED] passwordHint=y"),
        ("taskToken=abc", "taskToken=abc"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_free_text_and_json_are_redacted(text: str, shown: str) -> None:
    assert Redactor().text(text) == shown


def test_nested_values_details_and_the_task_token() -> None:
    redactor = Redactor()
    value = {"a": [{"clientSecret": 1, "taskToken": "t"}], "Authorization": "Basic x"}
    assert redactor.value(value) == {
        "a": [{"clientSecret": REDACTED, "taskToken": "t"}],
        "Authorization": REDACTED,
    }
    details = {"input": json.dumps({"creds": CREDS}), "cause": f"password: {SECRET}"}
    shown = redactor.details(details)
    assert SECRET not in json.dumps(shown) and "tok-visible" in shown["input"]


def test_secret_field_names_are_configurable() -> None:
    redactor = redactor_from_environment({"STEPWISE_SECRET_FIELDS": "ssn, cardNumber"})
    assert redactor.value({"ssn": 1, "card_number": 2, "password": 3, "name": 4}) == {
        "ssn": REDACTED,
        "card_number": REDACTED,
        "password": REDACTED,
        "name": 4,
    }


def test_log_records_and_their_tracebacks_are_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Redactor()))
    log = logging.getLogger("stepwise.test-redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("request failed with %s", json.dumps({"password": SECRET}))
        try:
            raise RuntimeError(f"connect failed: password={SECRET}")
        except RuntimeError:
            log.exception("activation failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count(REDACTED) >= 2 and "RuntimeError: connect failed" in text


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, env={"STEPWISE_SECRET_FIELDS": ""})


@pytest.fixture
def failed(tmp_path: Path, sqlite_url: str) -> str:
    definition = tmp_path / "leaky.json"
    definition.write_text(json.dumps(LEAKY_FAIL))
    args = ["--db", sqlite_url, "run", str(definition), "--name", "leaky"]
    ran = invoke([*args, "--input", json.dumps({"creds": CREDS})])
    assert ran.exit_code == 1, ran.output
    return sqlite_url


@pytest.mark.parametrize("output", ["json", "text"])
def test_describe_and_history_with_redact_hide_secrets(failed: str, output: str) -> None:
    for command in ("describe", "history"):
        plain = invoke(["--db", failed, "-o", output, command, "leaky"])
        assert plain.exit_code == 0 and SECRET in plain.output
        redacted = invoke(["--db", failed, "-o", output, command, "leaky", "--redact"])
        assert redacted.exit_code == 0, redacted.output
        assert SECRET not in redacted.output and REDACTED in redacted.output
        assert "tok-visible" in redacted.output
    described = json.loads(
        invoke(["--db", failed, "-o", "json", "describe", "leaky", "--redact"]).output
    )
    assert json.loads(described["cause"])["user"] == "bob"


def test_error_causes_in_traces_are_redacted(failed: str) -> None:
    traced = invoke(["--db", failed, "trace", "leaky", "--format", "json", "--trace-payloads"])
    assert traced.exit_code == 0, traced.output
    assert SECRET not in traced.output
    assert "stepwise.error.cause" in traced.output and REDACTED in traced.output
