"""Step Functions' request shapes as botocore's service model gives them (data only).

Generated from botocore's ``stepfunctions`` model by ``python -m
tests.http.aws_model`` (see there); `tests/http/test_validation.py` checks
it against the installed model (fully when that is `BOTOCORE_VERSION`,
the botocore it was generated from), so do not edit it by hand. `INPUTS` names
each served operation's input shape; `SHAPES` holds every shape those
reach, with the model's ``min``, ``max``, ``pattern`` (Java syntax, whole
string), ``enum``, ``required`` and ``sensitive`` (a value AWS never
repeats in an error message). `engine.http.validation` enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BOTOCORE_VERSION", "INPUTS", "SHAPES", "Shape"]


@dataclass(frozen=True)
class Shape:
    """One shape of the model: a type and its constraints (None / empty when unconstrained)."""

    type: str
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] = ()
    members: tuple[tuple[str, str], ...] = ()
    required: tuple[str, ...] = ()
    member: str | None = None
    sensitive: bool = False


BOTOCORE_VERSION = "1.44.8"

INPUTS: dict[str, str] = {
    "CreateActivity": "CreateActivityInput",
    "CreateStateMachine": "CreateStateMachineInput",
    "CreateStateMachineAlias": "CreateStateMachineAliasInput",
    "DeleteActivity": "DeleteActivityInput",
    "DeleteStateMachine": "DeleteStateMachineInput",
    "DeleteStateMachineAlias": "DeleteStateMachineAliasInput",
    "DeleteStateMachineVersion": "DeleteStateMachineVersionInput",
    "DescribeActivity": "DescribeActivityInput",
    "DescribeExecution": "DescribeExecutionInput",
    "DescribeMapRun": "DescribeMapRunInput",
    "DescribeStateMachine": "DescribeStateMachineInput",
    "DescribeStateMachineAlias": "DescribeStateMachineAliasInput",
    "DescribeStateMachineForExecution": "DescribeStateMachineForExecutionInput",
    "GetActivityTask": "GetActivityTaskInput",
    "GetExecutionHistory": "GetExecutionHistoryInput",
    "ListActivities": "ListActivitiesInput",
    "ListExecutions": "ListExecutionsInput",
    "ListMapRuns": "ListMapRunsInput",
    "ListStateMachineAliases": "ListStateMachineAliasesInput",
    "ListStateMachineVersions": "ListStateMachineVersionsInput",
    "ListStateMachines": "ListStateMachinesInput",
    "ListTagsForResource": "ListTagsForResourceInput",
    "PublishStateMachineVersion": "PublishStateMachineVersionInput",
    "RedriveExecution": "RedriveExecutionInput",
    "SendTaskFailure": "SendTaskFailureInput",
    "SendTaskHeartbeat": "SendTaskHeartbeatInput",
    "SendTaskSuccess": "SendTaskSuccessInput",
    "StartExecution": "StartExecutionInput",
    "StartSyncExecution": "StartSyncExecutionInput",
    "StopExecution": "StopExecutionInput",
    "TagResource": "TagResourceInput",
    "TestState": "TestStateInput",
    "UntagResource": "UntagResourceInput",
    "UpdateMapRun": "UpdateMapRunInput",
    "UpdateStateMachine": "UpdateStateMachineInput",
    "UpdateStateMachineAlias": "UpdateStateMachineAliasInput",
    "ValidateStateMachineDefinition": "ValidateStateMachineDefinitionInput",
}

SHAPES: dict[str, Shape] = {
    "AliasDescription": Shape("string", max=256, sensitive=True),
    "Arn": Shape("string", min=1, max=256),
    "CharacterRestrictedName": Shape(
        "string", min=1, max=80, pattern="^(?=.*[a-zA-Z_\\-\\.])[a-zA-Z0-9_\\-\\.]+$"
    ),
    "ClientToken": Shape("string", min=1, max=64, pattern="[!-~]+"),
    "CloudWatchLogsLogGroup": Shape("structure", members=(("logGroupArn", "Arn"),)),
    "CreateActivityInput": Shape(
        "structure",
        members=(
            ("name", "Name"),
            ("tags", "TagList"),
            ("encryptionConfiguration", "EncryptionConfiguration"),
        ),
        required=("name",),
    ),
    "CreateStateMachineAliasInput": Shape(
        "structure",
        members=(
            ("description", "AliasDescription"),
            ("name", "CharacterRestrictedName"),
            ("routingConfiguration", "RoutingConfigurationList"),
        ),
        required=("name", "routingConfiguration"),
    ),
    "CreateStateMachineInput": Shape(
        "structure",
        members=(
            ("name", "Name"),
            ("definition", "Definition"),
            ("roleArn", "Arn"),
            ("type", "StateMachineType"),
            ("loggingConfiguration", "LoggingConfiguration"),
            ("tags", "TagList"),
            ("tracingConfiguration", "TracingConfiguration"),
            ("publish", "Publish"),
            ("versionDescription", "VersionDescription"),
            ("encryptionConfiguration", "EncryptionConfiguration"),
        ),
        required=("name", "definition", "roleArn"),
    ),
    "Definition": Shape("string", min=1, max=1048576, sensitive=True),
    "DeleteActivityInput": Shape(
        "structure", members=(("activityArn", "Arn"),), required=("activityArn",)
    ),
    "DeleteStateMachineAliasInput": Shape(
        "structure", members=(("stateMachineAliasArn", "Arn"),), required=("stateMachineAliasArn",)
    ),
    "DeleteStateMachineInput": Shape(
        "structure", members=(("stateMachineArn", "Arn"),), required=("stateMachineArn",)
    ),
    "DeleteStateMachineVersionInput": Shape(
        "structure",
        members=(("stateMachineVersionArn", "LongArn"),),
        required=("stateMachineVersionArn",),
    ),
    "DescribeActivityInput": Shape(
        "structure", members=(("activityArn", "Arn"),), required=("activityArn",)
    ),
    "DescribeExecutionInput": Shape(
        "structure",
        members=(("executionArn", "Arn"), ("includedData", "IncludedData")),
        required=("executionArn",),
    ),
    "DescribeMapRunInput": Shape(
        "structure", members=(("mapRunArn", "LongArn"),), required=("mapRunArn",)
    ),
    "DescribeStateMachineAliasInput": Shape(
        "structure", members=(("stateMachineAliasArn", "Arn"),), required=("stateMachineAliasArn",)
    ),
    "DescribeStateMachineForExecutionInput": Shape(
        "structure",
        members=(("executionArn", "Arn"), ("includedData", "IncludedData")),
        required=("executionArn",),
    ),
    "DescribeStateMachineInput": Shape(
        "structure",
        members=(("stateMachineArn", "Arn"), ("includedData", "IncludedData")),
        required=("stateMachineArn",),
    ),
    "Enabled": Shape("boolean"),
    "EncryptionConfiguration": Shape(
        "structure",
        members=(
            ("kmsKeyId", "KmsKeyId"),
            ("kmsDataKeyReusePeriodSeconds", "KmsDataKeyReusePeriodSeconds"),
            ("type", "EncryptionType"),
        ),
        required=("type",),
    ),
    "EncryptionType": Shape("string", enum=("AWS_OWNED_KEY", "CUSTOMER_MANAGED_KMS_KEY")),
    "ExecutionRedriveFilter": Shape("string", enum=("REDRIVEN", "NOT_REDRIVEN")),
    "ExecutionStatus": Shape(
        "string", enum=("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
    ),
    "GetActivityTaskInput": Shape(
        "structure",
        members=(("activityArn", "Arn"), ("workerName", "Name")),
        required=("activityArn",),
    ),
    "GetExecutionHistoryInput": Shape(
        "structure",
        members=(
            ("executionArn", "Arn"),
            ("maxResults", "PageSize"),
            ("reverseOrder", "ReverseOrder"),
            ("nextToken", "PageToken"),
            ("includeExecutionData", "IncludeExecutionDataGetExecutionHistory"),
        ),
        required=("executionArn",),
    ),
    "IncludeExecutionData": Shape("boolean"),
    "IncludeExecutionDataGetExecutionHistory": Shape("boolean"),
    "IncludedData": Shape("string", enum=("ALL_DATA", "METADATA_ONLY")),
    "InspectionLevel": Shape("string", enum=("INFO", "DEBUG", "TRACE")),
    "KmsDataKeyReusePeriodSeconds": Shape("integer", min=60, max=900),
    "KmsKeyId": Shape("string", min=1, max=2048),
    "ListActivitiesInput": Shape(
        "structure", members=(("maxResults", "PageSize"), ("nextToken", "PageToken"))
    ),
    "ListExecutionsInput": Shape(
        "structure",
        members=(
            ("stateMachineArn", "Arn"),
            ("statusFilter", "ExecutionStatus"),
            ("maxResults", "PageSize"),
            ("nextToken", "ListExecutionsPageToken"),
            ("mapRunArn", "LongArn"),
            ("redriveFilter", "ExecutionRedriveFilter"),
        ),
    ),
    "ListExecutionsPageToken": Shape("string", min=1, max=3096),
    "ListMapRunsInput": Shape(
        "structure",
        members=(("executionArn", "Arn"), ("maxResults", "PageSize"), ("nextToken", "PageToken")),
        required=("executionArn",),
    ),
    "ListStateMachineAliasesInput": Shape(
        "structure",
        members=(
            ("stateMachineArn", "Arn"),
            ("nextToken", "PageToken"),
            ("maxResults", "PageSize"),
        ),
        required=("stateMachineArn",),
    ),
    "ListStateMachineVersionsInput": Shape(
        "structure",
        members=(
            ("stateMachineArn", "Arn"),
            ("nextToken", "PageToken"),
            ("maxResults", "PageSize"),
        ),
        required=("stateMachineArn",),
    ),
    "ListStateMachinesInput": Shape(
        "structure", members=(("maxResults", "PageSize"), ("nextToken", "PageToken"))
    ),
    "ListTagsForResourceInput": Shape(
        "structure", members=(("resourceArn", "Arn"),), required=("resourceArn",)
    ),
    "LogDestination": Shape(
        "structure", members=(("cloudWatchLogsLogGroup", "CloudWatchLogsLogGroup"),)
    ),
    "LogDestinationList": Shape("list", member="LogDestination"),
    "LogLevel": Shape("string", enum=("ALL", "ERROR", "FATAL", "OFF")),
    "LoggingConfiguration": Shape(
        "structure",
        members=(
            ("level", "LogLevel"),
            ("includeExecutionData", "IncludeExecutionData"),
            ("destinations", "LogDestinationList"),
        ),
    ),
    "LongArn": Shape("string", min=1, max=2000),
    "MapIterationFailureCount": Shape("integer", min=0),
    "MaxConcurrency": Shape("integer", min=0),
    "MockErrorOutput": Shape(
        "structure", members=(("error", "SensitiveError"), ("cause", "SensitiveCause"))
    ),
    "MockInput": Shape(
        "structure",
        members=(
            ("result", "SensitiveData"),
            ("errorOutput", "MockErrorOutput"),
            ("fieldValidationMode", "MockResponseValidationMode"),
        ),
    ),
    "MockResponseValidationMode": Shape("string", enum=("STRICT", "PRESENT", "NONE")),
    "Name": Shape("string", min=1, max=80),
    "PageSize": Shape("integer", min=0, max=1000),
    "PageToken": Shape("string", min=1, max=1024),
    "Publish": Shape("boolean"),
    "PublishStateMachineVersionInput": Shape(
        "structure",
        members=(
            ("stateMachineArn", "Arn"),
            ("revisionId", "RevisionId"),
            ("description", "VersionDescription"),
        ),
        required=("stateMachineArn",),
    ),
    "RedriveExecutionInput": Shape(
        "structure",
        members=(("executionArn", "Arn"), ("clientToken", "ClientToken")),
        required=("executionArn",),
    ),
    "RetrierRetryCount": Shape("integer", min=0),
    "RevealSecrets": Shape("boolean"),
    "ReverseOrder": Shape("boolean"),
    "RevisionId": Shape("string"),
    "RoutingConfigurationList": Shape("list", min=1, max=2, member="RoutingConfigurationListItem"),
    "RoutingConfigurationListItem": Shape(
        "structure",
        members=(("stateMachineVersionArn", "Arn"), ("weight", "VersionWeight")),
        required=("stateMachineVersionArn", "weight"),
    ),
    "SendTaskFailureInput": Shape(
        "structure",
        members=(
            ("taskToken", "TaskToken"),
            ("error", "SensitiveError"),
            ("cause", "SensitiveCause"),
        ),
        required=("taskToken",),
    ),
    "SendTaskHeartbeatInput": Shape(
        "structure", members=(("taskToken", "TaskToken"),), required=("taskToken",)
    ),
    "SendTaskSuccessInput": Shape(
        "structure",
        members=(("taskToken", "TaskToken"), ("output", "SensitiveData")),
        required=("taskToken", "output"),
    ),
    "SensitiveCause": Shape("string", min=0, max=32768, sensitive=True),
    "SensitiveData": Shape("string", max=262144, sensitive=True),
    "SensitiveError": Shape("string", min=0, max=256, sensitive=True),
    "StartExecutionInput": Shape(
        "structure",
        members=(
            ("stateMachineArn", "Arn"),
            ("name", "Name"),
            ("input", "SensitiveData"),
            ("traceHeader", "TraceHeader"),
        ),
        required=("stateMachineArn",),
    ),
    "StartSyncExecutionInput": Shape(
        "structure",
        members=(
            ("stateMachineArn", "Arn"),
            ("name", "Name"),
            ("input", "SensitiveData"),
            ("traceHeader", "TraceHeader"),
            ("includedData", "IncludedData"),
        ),
        required=("stateMachineArn",),
    ),
    "StateMachineType": Shape("string", enum=("STANDARD", "EXPRESS")),
    "StopExecutionInput": Shape(
        "structure",
        members=(("executionArn", "Arn"), ("error", "SensitiveError"), ("cause", "SensitiveCause")),
        required=("executionArn",),
    ),
    "Tag": Shape("structure", members=(("key", "TagKey"), ("value", "TagValue"))),
    "TagKey": Shape("string", min=1, max=128),
    "TagKeyList": Shape("list", member="TagKey"),
    "TagList": Shape("list", member="Tag"),
    "TagResourceInput": Shape(
        "structure",
        members=(("resourceArn", "Arn"), ("tags", "TagList")),
        required=("resourceArn", "tags"),
    ),
    "TagValue": Shape("string", min=0, max=256),
    "TaskToken": Shape("string", min=1, max=2048, sensitive=True),
    "TestStateConfiguration": Shape(
        "structure",
        members=(
            ("retrierRetryCount", "RetrierRetryCount"),
            ("errorCausedByState", "TestStateStateName"),
            ("mapIterationFailureCount", "MapIterationFailureCount"),
            ("mapItemReaderData", "SensitiveData"),
        ),
    ),
    "TestStateInput": Shape(
        "structure",
        members=(
            ("definition", "Definition"),
            ("roleArn", "Arn"),
            ("input", "SensitiveData"),
            ("inspectionLevel", "InspectionLevel"),
            ("revealSecrets", "RevealSecrets"),
            ("variables", "SensitiveData"),
            ("stateName", "TestStateStateName"),
            ("mock", "MockInput"),
            ("context", "SensitiveData"),
            ("stateConfiguration", "TestStateConfiguration"),
        ),
        required=("definition",),
    ),
    "TestStateStateName": Shape("string", min=1, max=80, sensitive=True),
    "ToleratedFailureCount": Shape("long", min=0),
    "ToleratedFailurePercentage": Shape("float", min=0, max=100),
    "TraceHeader": Shape("string", min=0, max=256, pattern="\\p{ASCII}*"),
    "TracingConfiguration": Shape("structure", members=(("enabled", "Enabled"),)),
    "UntagResourceInput": Shape(
        "structure",
        members=(("resourceArn", "Arn"), ("tagKeys", "TagKeyList")),
        required=("resourceArn", "tagKeys"),
    ),
    "UpdateMapRunInput": Shape(
        "structure",
        members=(
            ("mapRunArn", "LongArn"),
            ("maxConcurrency", "MaxConcurrency"),
            ("toleratedFailurePercentage", "ToleratedFailurePercentage"),
            ("toleratedFailureCount", "ToleratedFailureCount"),
        ),
        required=("mapRunArn",),
    ),
    "UpdateStateMachineAliasInput": Shape(
        "structure",
        members=(
            ("stateMachineAliasArn", "Arn"),
            ("description", "AliasDescription"),
            ("routingConfiguration", "RoutingConfigurationList"),
        ),
        required=("stateMachineAliasArn",),
    ),
    "UpdateStateMachineInput": Shape(
        "structure",
        members=(
            ("stateMachineArn", "Arn"),
            ("definition", "Definition"),
            ("roleArn", "Arn"),
            ("loggingConfiguration", "LoggingConfiguration"),
            ("tracingConfiguration", "TracingConfiguration"),
            ("publish", "Publish"),
            ("versionDescription", "VersionDescription"),
            ("encryptionConfiguration", "EncryptionConfiguration"),
        ),
        required=("stateMachineArn",),
    ),
    "ValidateStateMachineDefinitionInput": Shape(
        "structure",
        members=(
            ("definition", "Definition"),
            ("type", "StateMachineType"),
            ("severity", "ValidateStateMachineDefinitionSeverity"),
            ("maxResults", "ValidateStateMachineDefinitionMaxResult"),
        ),
        required=("definition",),
    ),
    "ValidateStateMachineDefinitionMaxResult": Shape("integer", min=0, max=100),
    "ValidateStateMachineDefinitionSeverity": Shape("string", enum=("ERROR", "WARNING")),
    "VersionDescription": Shape("string", max=256, sensitive=True),
    "VersionWeight": Shape("integer", min=0, max=100),
}
