"""JSONPath forms the public AWS sample workflows use, which AWS's Jayway dialect accepts.

Jayway reads a dot before a bracket (`$.[0]`, `$.Snapshots.[0].State`,
`$.[?(@.OU > 0)]`, `$.[*].['bucket', 'key']`) as the bracket alone; the
sample collection deploys such paths, so the validator must accept them and
the engine must resolve them as the bracket form. `check_aws_samples.py`
checks a fetched copy of the whole collection.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import Engine
from statemachine.paths import compile_path, find
from statemachine.validate import is_valid, validate

DATA: dict[str, Any] = {
    "Snapshots": [{"State": "completed"}, {"State": "pending"}],
    "units": [{"OU": 1, "bucket": "b1", "key": "k1"}, {"OU": 0, "bucket": "b2", "key": "k2"}],
}


@pytest.mark.parametrize(
    ("dotted", "bracketed", "data"),
    [
        ("$.[0]", "$[0]", [7, 8]),
        ("$.Snapshots.[0].State", "$.Snapshots[0].State", DATA),
        ("$.units.[?(@.OU > 0)]", "$.units[?(@.OU > 0)]", DATA),
        ("$.[?(@.OU > 0)]", "$[?(@.OU > 0)]", DATA["units"]),
        ("$.[*].['bucket', 'key']", "$[*]['bucket', 'key']", DATA["units"]),
        ("$.units.[1:]", "$.units[1:]", DATA),
    ],
)
def test_dot_before_bracket_reads_as_the_bracket(dotted: str, bracketed: str, data: Any) -> None:
    path = compile_path(dotted)
    assert path.definite == compile_path(bracketed).definite
    assert find(path, data, {}, {}) == find(compile_path(bracketed), data, {}, {})


def test_a_sample_shaped_definition_validates_and_runs(sqlite_url: str) -> None:
    definition = {
        "StartAt": "Pick",
        "States": {
            "Pick": {
                "Type": "Pass",
                "Parameters": {
                    "first.$": "$.Snapshots.[0].State",
                    "active.$": "$.units.[?(@.OU > 0)]",
                },
                "Next": "Check",
            },
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.active.[0].OU", "NumericEquals": 1, "Next": "Done"}],
                "Default": "Done",
            },
            "Done": {"Type": "Pass", "OutputPath": "$.active.[0]", "End": True},
        },
    }
    assert is_valid(validate(definition))
    with Engine(sqlite_url) as engine:
        record = engine.run_sync(definition, DATA)
    assert record.status == "SUCCEEDED"
    assert record.output is not None
    assert '"bucket":"b1"' in record.output


def test_sample_placeholders_become_valid_values() -> None:
    """The collection checker's stand-ins for template placeholders make AWS-valid definitions."""
    from tests.conformance.check_aws_samples import substitute

    text = """{"StartAt": "Call", "States": {"Call": {"Type": "Task",
      "Resource": "${ProcessFunctionArn}",
      "Parameters": {"Table": "${TableName}", "Url": "https://${ApiId}.execute-api.${AWS::Region}.amazonaws.com"},
      "TimeoutSeconds": ${Timeout}, "End": true}}}"""
    definition = json.loads(substitute(text))
    assert definition["States"]["Call"]["Resource"].startswith("arn:aws:lambda:us-east-1:")
    assert "${" not in json.dumps(definition)
    assert is_valid(validate(definition))
